"""PaDiM: a Gaussian per feature position of the good images: spec.py, model.py, fitter.py, f2pad.py."""
