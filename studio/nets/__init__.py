"""The networks the families render with and the trainers train (as diffusers keeps models apart from pipelines):
StyleGAN-like generator, set VAE, ε-UNet, spectrogram VAE, and the diffusion samplers they are walked with."""
