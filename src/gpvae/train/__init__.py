"""gpvae.train."""
