"""PatchCore: a coreset memory bank of backbone patch features: spec.py, model.py, fitter.py, f2pad.py."""
