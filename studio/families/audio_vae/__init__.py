"""The audio VAE family: sounds of a class from a spectrogram VAE, heard through Griffin-Lim."""

from studio.families.audio_vae.family import AudioVAEFamily

__all__ = ["AudioVAEFamily"]
