"""The diffusion family: a small class-conditional ε-UNet walked by the app's samplers, with image-to-image."""

from studio.families.diffusion.family import DiffusionFamily

__all__ = ["DiffusionFamily"]
