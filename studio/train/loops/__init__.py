"""One training loop per family (vae, gan, diffusion, audio), each fed by the recipe's own data or by a folder of the
user's pictures or sounds; studio.train.registry says which trainer name runs which."""
