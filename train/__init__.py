"""Training side of the toolkit: methods, networks, ops, anomaly synthesis, datasets, the training loop.

The torch modules here are the single source of every formula: the module a run evaluates with is the one
`export` turns into the inspection graph.
"""
