"""gpvae.report."""
