"""NDP-Net through the toolkit: two-phase training resumes bit-for-bit across the phase boundary, each phase
trains only its parts, the reference image is a training image stored in the run, a crop-trained run loads at
the full size, and the exported inspection graph matches torch on ONNX Runtime and parses for TensorRT."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers.features import needs_lite0
from train import runs
from train.config import RunConfig
from train.loop import train

SIZE = (64, 64)  # the smallest NDP-Net size (layer 5 holds one 4x4 patch)


def _images(n=6, size=SIZE, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 200, size=(1, *size, 3))
    return np.clip(base + rng.integers(-30, 30, size=(n, *size, 3)), 0, 255).astype(np.uint8)


def _config(steps, phase1=2, size=SIZE, crop=None):
    return RunConfig(method="ndpnet", c=4, image_size=size, seed=3, steps=steps, batch_size=2, lr=1e-3,
                     crop=crop, options={"phase1_steps": phase1, "reference_pool": 4})


def _weights(run_dir):
    from safetensors.torch import load_file

    return load_file(str(Path(run_dir) / runs.WEIGHTS))


def _same(a, b):
    return sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return train(_config(4), tmp_path_factory.mktemp("ndp") / "a", _images(), device="cpu", progress=False,
                 checkpoint_every=100)


@needs_lite0
@pytest.mark.parametrize("stop", [2, 3])  # exactly at the boundary (reference not baked yet) and after it
def test_resume_across_the_phase_boundary_equals_an_uninterrupted_run(tmp_path, uninterrupted, stop):
    images = _images()
    b = train(_config(4), tmp_path / "b", images, device="cpu", progress=False, checkpoint_every=100, stop_at=stop)
    train(_config(4), b, images, device="cpu", progress=False, checkpoint_every=100, resume=True)
    assert _same(_weights(uninterrupted), _weights(b))


@needs_lite0
def test_each_phase_trains_only_its_parts_and_the_reference_is_stored(tmp_path, uninterrupted):
    from train.methods import get_method

    images = _images()
    p1 = _weights(train(_config(2), tmp_path / "p1", images, device="cpu", progress=False))
    both = _weights(uninterrupted)
    method = get_method("ndpnet")
    torch.manual_seed(3)  # the loop seeds torch with the run's seed before building the model
    init = method.build_model(4, SIZE, method.options({"phase1_steps": 2})).state_dict()
    # Phase 2 leaves the encoder (weights and batch-norm statistics) exactly as Phase 1 left it.
    enc = [k for k in p1 if k.startswith("encoder.")]
    assert enc and all(torch.equal(p1[k], both[k]) for k in enc)
    # Phase 1 does not touch RBAM or MSDSM; Phase 2 does.
    later = [k for k in p1 if k.startswith(("rbam.", "msdsm.")) and k.endswith("weight")]
    assert later and all(torch.equal(p1[k], init[k]) for k in later)
    assert any(not torch.equal(p1[k], both[k]) for k in later)
    # The reference is one of the training images; its features are baked in at the boundary.
    ref = (both["reference_image"].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    assert any(np.array_equal(ref, img) for img in images)
    assert float(both["rbam.0.reference"].abs().sum()) > 0 and float(p1["rbam.0.reference"].abs().sum()) == 0


@needs_lite0
def test_crop_trained_run_exports_at_full_size_with_onnx_parity_and_trt_ops(tmp_path):
    import onnxruntime as ort

    from export.onnx import main as export_main
    from export.opcheck import check_onnx

    images = _images(size=(64, 96))
    run = train(_config(3, phase1=1, size=(64, 96), crop=(64, 64)), tmp_path / "r", images, device="cpu",
                progress=False)
    assert tuple(_weights(run)["reference_image"].shape) == (3, 64, 64)
    out = tmp_path / "ndpnet.onnx"
    assert export_main(["--run", str(run), "--out", str(out)]) == 0
    graph, _ = runs.load_graph(run)
    frames = _images(3, size=(64, 96), seed=5)
    with torch.no_grad():
        ref_map, ref_score = (t.numpy() for t in graph(torch.from_numpy(frames)))
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got_map, got_score = sess.run(None, {sess.get_inputs()[0].name: frames})
    scale = max(1.0, float(np.abs(ref_map).max()))
    assert float(np.abs(got_map - ref_map).max()) / scale <= 1e-4
    assert float(np.abs(got_score - ref_score).max()) / scale <= 1e-4
    report = check_onnx(str(out), targets=("8.5", "10.0", "11.0"))
    assert report.ok, report.summary()


def test_vgg16_perceptual_net_from_a_hash_named_file(tmp_path):
    from safetensors.torch import save_file

    from train.backbones.perceptual import build_perceptual
    from train.errors import ConfigError

    with pytest.raises(ConfigError, match="perceptual_weights"):
        build_perceptual("vgg16", SIZE, None)
    torch.manual_seed(0)
    cfg = [3, 64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
    state, i, cin = {}, 0, None
    for v in cfg:
        if v == "M":
            i += 1
        elif cin is None:
            cin = v
        else:
            state[f"features.{i}.weight"] = torch.randn(v, cin, 3, 3) * 0.05
            state[f"features.{i}.bias"] = torch.zeros(v)
            cin, i = v, i + 2
    tmp = tmp_path / "w.safetensors"
    save_file(state, str(tmp))
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    path = tmp_path / f"vgg16-{digest[:8]}.safetensors"
    tmp.rename(path)
    net = build_perceptual("vgg16", SIZE, str(path))
    feats = net(torch.rand(1, 3, *SIZE))
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512, 512]
    assert [f.shape[-1] for f in feats] == [64, 32, 16, 8, 4]
    assert not any(p.requires_grad for p in net.parameters())
