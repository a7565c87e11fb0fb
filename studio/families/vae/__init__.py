"""The VAE family: a set-encoder VAE over pictures (glyphs), with an optional class condition."""

from studio.families.vae.family import VAEFamily

__all__ = ["VAEFamily"]
