"""The GAN family: a style-based generator with truncation, style mixing, layer-ranged directions and noise."""

from studio.families.gan.family import GANFamily

__all__ = ["GANFamily"]
