"""NVIDIA StyleGAN2 / StyleGAN2-ADA / StyleGAN3 networks, imported from network pickles without running them."""

from studio.families.stylegan.family import StyleGANFamily

__all__ = ["StyleGANFamily"]
