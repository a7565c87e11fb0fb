"""Latent math: seeds and priors (`seeds`), interpolation (`interp`, NumPy, torch only for tensors), principal
directions (`directions`) and their names (`direction_sets`, the .lsdirs format), the shared latent edits (`edits`),
keyframe paths (`paths`) and audio-reactive curves (`reactive`). Import the module you need: this package imports
none of them, so the NumPy-only ones (`interp`, `paths`, `reactive`, `direction_sets`) stay free of torch for the
project and the panels."""
