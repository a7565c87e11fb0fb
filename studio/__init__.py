"""Latent Studio: an offline studio for local generative models."""

__version__ = "0.1.0"
