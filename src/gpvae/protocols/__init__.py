"""Evaluation protocols that train and evaluate together (above train/ and evaluate/)."""
