"""Stable Diffusion through diffusers' parts (optional extra): pipeline folders and single files."""

from studio.families.stable_diffusion.family import StableDiffusionFamily

__all__ = ["StableDiffusionFamily"]
