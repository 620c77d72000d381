"""gpvae.evaluate."""
