"""gpvae.io."""
