"""gpvae.scene."""
