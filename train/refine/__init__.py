"""F2PAD (Tao, Xu, Du; arXiv 2407.06519): per-image pixel-level refinement of a feature method's anomaly map.

No training: for each flagged image, Y = X + A is solved by gradient descent on the pixels of X through the
run's frozen backbone (PatchCore / PaDiM), so it runs offline in PyTorch, never in an engine. The engine screens
every frame; this refines the frames the runtime flagged. One job per module:

    penalties.py     LOG sparsity, vectorial TV, valid range
    pixel_prior.py   the equal-weight Gaussian mixture over good pixels (fit, min Mahalanobis, save/load)
    feature_loss.py  L(X): PatchCore's k-candidate distance, PaDiM's Mahalanobis, on an aligned crop
    objective.py     Eq. 12 assembled, lambda1 = c / anomaly size
    adan.py          the Adan optimiser
    solver.py        gradient sharing, adaptive step, clipping, stopping rule
    init.py          M0, dilation, X0 (OpenCV inpainting or the learned inpainter), crop window
    inpaint_net.py   the learned initialiser (offline stand-in for the paper's MAE); inpainter.py trains it
    synthetic.py / select.py / selected.py   per-category settings chosen on synthetic defects, and their file
    refiner.py       one image: init -> solve -> mask -> second solve
    settings.py      every hyper-parameter and where its value comes from
    inputs.py / outputs.py / cli.py   `python -m train.refine`
"""
