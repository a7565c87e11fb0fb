"""Measuring trained models: glyph models by a glyph classifier (glyphs), sound models by a sound classifier and
spectral distances (sounds)."""
