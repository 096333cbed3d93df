"""NDP-Net: normal reference attention and defect-perception network: spec.py, model.py, trainer.py."""
