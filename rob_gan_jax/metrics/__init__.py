"""Inception Score and FID with the standard FID Inception-v3 (TensorFlow graph of 2015-12-05)."""
