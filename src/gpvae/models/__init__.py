"""gpvae.models."""
