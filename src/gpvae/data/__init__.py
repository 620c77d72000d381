"""gpvae.data: what training and evaluation share (pixel dataset access, series
compaction, normalisation, checkpoints)."""
