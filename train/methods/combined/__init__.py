"""Feature heads combined in one graph: one backbone pass, PatchCore's and PaDiM's heads (or two of either), each
head's map standardised on good images, a weighted sum, one score: spec.py, model.py, fitter.py; `python -m
train.combine` builds a run from fitted runs."""
