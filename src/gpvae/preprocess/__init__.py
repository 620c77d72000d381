"""gpvae.preprocess."""
