"""Noise-to-norm: reconstruct a clean image from a noise-blended one: spec.py, model.py, trainer.py."""
