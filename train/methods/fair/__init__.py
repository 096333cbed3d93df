"""FAIR: frequency-aware image restoration (Liu et al.): spec.py (declaration), model.py, trainer.py."""
