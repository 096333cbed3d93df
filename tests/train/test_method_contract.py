"""The method contract: every registered method goes train (or fit) -> export.onnx -> every installed runtime
backend with the same numbers as its torch graph, using only what the method declares (train.methods.spec).

Parametrised over `list_methods()` x the registered backends that run an .onnx on a CPU (read from their class
declarations, `runtime.backends.REGISTRY`), so a new method or backend is covered by its registry line. A method
whose optional package is not installed raises `train.errors.MissingPackage` when built and is skipped with that
reason; a backend whose library is not installed is skipped. A tiny test-only fit method (per-pixel statistics +
a colour memory bank, no width, size multiple 8, a score normalisation after the fit) proves the fit path:
train CLI -> export -> backends -> calibration.threshold.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from runtime.backends import REGISTRY, backend_class
from tests.helpers.features import needs_lite
from train.errors import ConfigError, MissingPackage
from train.methods import MethodSpec, get_method, list_methods, register_method, unregister_method
from train.methods.options import Option
from train.methods.run import Fitter, Trainer, UpdateNotSupported

#: Parity of every backend with the torch graph: max |backend - torch| <= REL * max(1, max |torch|)
#: (relative for maps in the units of a distance, absolute 1e-4 for maps below 1).
REL = 1e-4
TINY_SIDE = 64  # the tiny model's side, rounded up to the method's size multiple
TINY_WIDTH = 8  # the width of a method that has one (small, fast)


def _onnx_cpu_backends() -> list:
    """Registered backends that run an .onnx on a CPU, by their declarations (TensorRT needs an engine built on a
    GPU: tests/runtime/test_runtime_trt.py; a remote server is tested in tests/runtime/test_runtime_triton.py)."""
    out = []
    for name in REGISTRY:
        cls = backend_class(name)
        if not cls.remote and "cpu" in cls.devices and "onnx" in cls.artifact_kinds + cls.by_name_kinds:
            out.append(name)
    return out


ONNX_BACKENDS = _onnx_cpu_backends()


def _tiny_size(method: MethodSpec) -> int:
    m = method.size_multiple
    return m * math.ceil(TINY_SIDE / m)


def _width_args(method: MethodSpec) -> list:
    return ["--c", str(TINY_WIDTH)] if method.has_width else []


def _build_or_skip(method: MethodSpec, size: int) -> nn.Module:
    c = TINY_WIDTH if method.has_width else None
    try:
        return method.build_model(c, (size, size), method.options())
    except MissingPackage as e:
        pytest.skip(f"{method.name}: {e}")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A tiny demo set (MVTec layout, 64 px brick tiles): 8 good training images, test images with defects."""
    from train.demo_data import generate

    root = tmp_path_factory.mktemp("contract-data")
    generate(root, ["brick"], size=64, seed=0, n_train=8, n_test_good=2, n_test_defect=1, progress=False)
    return root


def _test_frames(demo: Path, size: int) -> np.ndarray:
    from imagesets import find_samples, load_images

    samples = find_samples(demo, "brick", "test")[:4]
    return load_images(samples, (size, size), progress=False)


def _train(argv: list) -> None:
    from train.cli import main

    assert main(argv + ["--device", "cpu", "--no-progress"]) == 0


def _export(run: Path, out: Path, *flags: str):
    from export.onnx import main
    from runtime.manifest import load_manifest

    assert main(["--run", str(run), "--out", str(out), *flags]) == 0
    return load_manifest(out)


def _reference(model_path: Path, run: Path, frames: np.ndarray, extra=None):
    """The run's torch graph on `frames`, for the artifact's frame size and channel order."""
    from runtime.manifest import load_manifest
    from train.runs import load_graph

    manifest = load_manifest(model_path)
    graph, _ = load_graph(run, "cpu", frame_size=manifest.input.size, channel_order=manifest.input.channel_order)
    with torch.no_grad():
        tensors = [torch.from_numpy(v) for v in (extra or {}).values()]
        return tuple(t.numpy() for t in graph(torch.from_numpy(frames), *tensors))


def _parity(name: str, model_path: Path, reference, frames: np.ndarray, extra=None) -> float:
    """Run `model_path` on backend `name` (skipped when its library is not installed); compare with the torch
    graph's `reference` (map, score). Returns the relative error."""
    from runtime.backends import available_backends, create_backend
    from runtime.manifest import load_manifest

    if name not in available_backends():
        pytest.skip(f"backend {name} is not installed")
    ref_map, ref_score = reference
    with create_backend(name, str(model_path), load_manifest(model_path), device="cpu") as backend:
        backend.load()
        amap, score = backend.infer(frames, extra)
    assert amap.shape == ref_map.shape and score.shape == ref_score.shape, name
    scale = max(1.0, float(np.abs(ref_map).max()), float(np.abs(ref_score).max()))
    err = max(float(np.abs(amap - ref_map).max()), float(np.abs(score - ref_score).max())) / scale
    assert err <= REL, f"{name}: relative error {err:.2e} > {REL} vs the torch graph"
    return err


def _check_manifest(manifest, method: MethodSpec, model: nn.Module) -> None:
    """What the manifest says is what the method declared."""
    assert manifest.method == method.name
    assert manifest.c == (TINY_WIDTH if method.has_width else None)
    parts = manifest.graph_parts.to_dict()
    # a declared child that owns nodes is listed under its role (one reached through a method other than
    # `forward` is not scoped by the tracer: its nodes count under /model/*)
    owning = [child for child in method.parts if f"/model/{child}" in parts["nodes"]]
    assert owning, f"no declared part of {method.name} owns graph nodes: {parts['nodes']}"
    for child in owning:
        assert f"/model/{child}" in parts[method.parts[child]], (child, parts)
    assert parts["fp16"] == [f"/model/{p}/" for p in method.fp16_parts]
    assert parts["int8"] == [f"/model/{p}/" for p in method.int8_parts]
    declared = set(method.parts) | set(method.fp16_parts) | set(method.int8_parts)
    children = {name for name, _ in model.named_children()}
    assert declared <= children, f"declared parts {sorted(declared - children)} are not children of the model"


# ------------------------------------------------------------------------------------- every method


@pytest.mark.parametrize("name", list_methods())
def test_declarations_are_well_formed(name):
    method = get_method(name)
    method.check_declarations()
    size = _tiny_size(method)
    model = _build_or_skip(method, size)
    children = {n for n, _ in model.named_children()}
    assert set(method.parts) <= children
    assert set(method.fp16_parts) <= children and set(method.int8_parts) <= children
    assert method.label(TINY_WIDTH if method.has_width else None) == (
        f"{name}_c{TINY_WIDTH}" if method.has_width else name)
    for extra in method.extra_inputs((size, size)).values():
        assert extra.meaning and all(int(s) > 0 for s in extra.shape)
    run = method.start_run(method.options(), (size, size))  # the per-run object matches the training kind
    assert isinstance(run, Fitter if method.training == "fit" else Trainer)
    assert all(o.help for o in method.option_specs)


#: method name -> what its tiny run exported (trained once per module, shared by the backend tests)
_EXPORTED: dict = {}


def _trained_and_exported(name: str, demo: Path, tmp_root: Path) -> dict:
    if name in _EXPORTED:
        return _EXPORTED[name]
    method = get_method(name)
    size = _tiny_size(method)
    model = _build_or_skip(method, size)
    run = tmp_root / "run"
    schedule = (["--batch-size", "4"] if method.training == "fit"
                else ["--steps", "2", "--batch-size", "2", "--lr", "1e-3"])
    _train(["--method", name, *_width_args(method), "--data", str(demo), "--category", "brick",
            "--out", str(run), "--image-size", str(size), *schedule])
    manifest = _export(run, tmp_root / "model.onnx")
    frames = _test_frames(demo, size)
    out = {"method": method, "model": model, "run": run, "manifest": manifest, "frames": frames,
           "onnx": tmp_root / "model.onnx", "reference": _reference(tmp_root / "model.onnx", run, frames)}
    declared = method.extra_inputs((size, size))
    if declared:  # the optional inputs, with the meaning the method wrote
        out["extra_manifest"] = _export(run, tmp_root / "extra.onnx", "--noise-input")
        rng = np.random.default_rng(0)
        out["extra"] = {k: rng.standard_normal((len(frames),) + tuple(v.shape)).astype(np.float32)
                        for k, v in declared.items()}
        out["extra_reference"] = _reference(tmp_root / "extra.onnx", run, frames, out["extra"])
    _EXPORTED[name] = out
    return out


@pytest.mark.parametrize("name", list_methods())
def test_train_and_export_follow_the_declarations(name, demo, tmp_path_factory):
    done = _trained_and_exported(name, demo, tmp_path_factory.mktemp(name))
    method, run = done["method"], done["run"]
    config = json.loads((run / "config.json").read_text())
    assert config["c"] == (TINY_WIDTH if method.has_width else None)
    assert config["options"] == dict(method.options())  # every option, checked, in the run's config
    history = [json.loads(ln) for ln in (run / "history.jsonl").read_text().splitlines() if ln.strip()]
    if method.training == "fit":
        assert config["steps"] == 0 and history[-1]["fit"] is True and history[-1]["seconds"] >= 0
    else:
        assert config["steps"] == 2 and history[-1]["step"] == 2
    _check_manifest(done["manifest"], method, done["model"])
    assert done["manifest"].extra_inputs == []
    import onnx

    opsets = {o.domain: o.version for o in onnx.load(str(done["onnx"])).opset_import}
    assert opsets[""] == method.opset  # export.onnx's default opset is the method's
    declared = method.extra_inputs((_tiny_size(method),) * 2)
    if declared:
        assert {e.name: (tuple(e.shape), e.meaning) for e in done["extra_manifest"].extra_inputs} == {
            k: (tuple(v.shape), v.meaning) for k, v in declared.items()}


@pytest.mark.parametrize("backend", ONNX_BACKENDS)
@pytest.mark.parametrize("name", list_methods())
def test_every_backend_matches_torch(name, backend, demo, tmp_path_factory):
    done = _trained_and_exported(name, demo, tmp_path_factory.mktemp(name))
    _parity(backend, done["onnx"], done["reference"], done["frames"])
    if "extra" in done:
        _parity(backend, done["onnx"].with_name("extra.onnx"), done["extra_reference"], done["frames"],
                done["extra"])


def test_the_backends_that_always_install_are_in_the_matrix():
    assert "onnxruntime" in ONNX_BACKENDS and "torch" in ONNX_BACKENDS  # read from the classes, not a list here
    assert "tensorrt" not in ONNX_BACKENDS and "triton" not in ONNX_BACKENDS


@pytest.mark.parametrize("method_name", ["patchcore", "padim"])
@pytest.mark.parametrize("backbone", [
    pytest.param("efficientnet_lite1", marks=needs_lite("efficientnet_lite1")),
    pytest.param("efficientnet_lite2", marks=needs_lite("efficientnet_lite2")),
])
def test_feature_methods_on_the_larger_lite_backbones_fit_export_and_match_torch(method_name, backbone, demo,
                                                                                  tmp_path):
    """The other offline backbones go the same way: fit -> export.onnx -> every backend = the torch graph."""
    method = get_method(method_name)
    size = _tiny_size(method)
    run = tmp_path / "run"
    _train(["--method", method_name, "--data", str(demo), "--category", "brick", "--out", str(run),
            "--image-size", str(size), "--batch-size", "4", "--option", f"backbone={backbone}",
            "--option", "max_patches=200" if method_name == "patchcore" else "channels=32"])
    assert json.loads((run / "config.json").read_text())["options"]["backbone"] == backbone
    _export(run, tmp_path / "model.onnx")
    frames = _test_frames(demo, size)
    reference = _reference(tmp_path / "model.onnx", run, frames)
    for backend in ONNX_BACKENDS:
        _parity(backend, tmp_path / "model.onnx", reference, frames)


# ------------------------------------------------------------------- a test-only fitted method


class PixelMemory(nn.Module):
    """Fitted constants: per-pixel mean/std of the good images and a bank of their mean colours (rows set by the
    data: resized on load, as a memory bank's are)."""

    def __init__(self, size):
        super().__init__()
        self.register_buffer("mean", torch.zeros(1, 3, *size))
        self.register_buffer("std", torch.ones(1, 3, *size))
        self.register_buffer("bank", torch.zeros(1, 3))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "bank"
        if key in state_dict and state_dict[key].ndim == 2 and state_dict[key].shape[1] == 3:
            self.bank = torch.empty_like(state_dict[key])  # the fitted number of rows
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x):
        z = ((x - self.mean) / self.std).abs().mean(dim=1, keepdim=True)
        n, _, h, w = x.shape
        pixels = x.permute(0, 2, 3, 1).reshape(n, h * w, 3)
        d2 = (pixels * pixels).sum(-1, keepdim=True) - 2.0 * pixels @ self.bank.t() + (self.bank * self.bank).sum(-1)
        nearest = torch.sqrt(torch.clamp(torch.amin(d2, dim=-1), min=0.0)).reshape(n, 1, h, w)
        return z + nearest


class PixelStatsModel(nn.Module):
    def __init__(self, size):
        super().__init__()
        self.memory = PixelMemory(size)
        self.register_buffer("score_scale", torch.ones(1))  # set after the fit: good images score <= 1

    def forward(self, x):
        amap = self.memory(x)
        return amap, torch.amax(amap, dim=(1, 2, 3)) / self.score_scale


class PixelStatsFitter(Fitter):
    def fit(self, model, batches, device, progress):
        total = total_sq = colours = None
        n = 0
        for x in batches:  # one streaming pass: sums, not the images
            s, sq, col = x.sum(0, keepdim=True), (x * x).sum(0, keepdim=True), x.mean(dim=(2, 3))
            total = s if total is None else total + s
            total_sq = sq if total_sq is None else total_sq + sq
            colours = col if colours is None else torch.cat([colours, col])
            n += len(x)
        mean = total / n
        std = torch.sqrt(torch.clamp(total_sq / n - mean * mean, min=0.0)) + self.options["eps"]
        keep = torch.randperm(n)[: self.options["bank_rows"]]  # seeded by the run (train.loop)
        model.memory.mean.copy_(mean)
        model.memory.std.copy_(std)
        model.memory.bank = colours[keep].clone()
        return {"bank_rows": int(len(keep)), "batches": len(batches)}

    def after_training(self, model, batches, device, progress):
        """The score normalisation hook: the largest good-image score becomes 1."""
        top = max(float(model(x)[1].max()) for x in batches)
        model.score_scale.fill_(top)
        return {"score_scale": round(top, 6)}


class PixelStats(MethodSpec):
    name = "test_pixelstats"
    option_specs = (Option("eps", 1e-3, "float", "added to the per-pixel std", minimum=0.0),
                    Option("bank_rows", 5, "int", "rows of the colour memory bank", minimum=1))
    has_width = False
    size_multiple = 8
    parts = {"memory": "memory"}
    fp16_parts = ()
    int8_parts = ()
    training = "fit"
    run_class = PixelStatsFitter

    def build_model(self, c, image_size, options):
        return PixelStatsModel(image_size)


@pytest.fixture
def pixelstats():
    register_method(PixelStats)
    try:
        yield get_method(PixelStats.name)
    finally:
        unregister_method(PixelStats.name)
    assert PixelStats.name not in list_methods()


def test_fit_method_through_cli_export_backends_and_threshold(pixelstats, demo, tmp_path, capsys):
    from train.cli import main as train_main

    run = tmp_path / "run"

    def argv(size="40"):
        return ["--method", pixelstats.name, "--data", str(demo), "--category", "brick", "--out", str(run),
                "--image-size", size, "--device", "cpu", "--no-progress"]

    base = argv()
    # what a width-less, fitted method refuses, each with one line
    assert train_main(base + ["--c", "32"]) == 2
    assert "has no width: drop --c" in capsys.readouterr().err
    assert train_main(base + ["--steps", "10"]) == 2
    assert "fitted in one pass" in capsys.readouterr().err
    assert train_main(argv("36")) == 2
    assert "multiples of 8" in capsys.readouterr().err
    assert not run.exists()

    assert train_main(base + ["--batch-size", "3", "--holdout", "0.25"]) == 0  # 6 of 8 good images
    config = json.loads((run / "config.json").read_text())
    assert config["c"] is None and config["steps"] == 0 and config["image_size"] == [40, 40]
    (record,) = [json.loads(ln) for ln in (run / "history.jsonl").read_text().splitlines()]
    assert record["fit"] is True and record["images"] == 6 and record["batches"] == 2 and record["bank_rows"] == 5
    assert record["after_training"]["score_scale"] > 0  # the hook ran after the fit, its facts logged
    assert record["peak_rss_mib"] > 0 and record["seconds"] >= 0
    weights = (run / "model.safetensors").read_bytes()
    assert train_main(base + ["--resume"]) == 0
    assert "already fitted" in capsys.readouterr().out
    assert (run / "model.safetensors").read_bytes() == weights  # nothing refitted

    from train.runs import load_model

    model, cfg = load_model(run)
    assert cfg.c is None and model.memory.bank.shape == (5, 3)  # resized from the file by the model itself
    assert float(model.score_scale) == pytest.approx(record["after_training"]["score_scale"], rel=1e-5)  # saved

    manifest = _export(run, tmp_path / "ps.onnx")
    _check_manifest(manifest, pixelstats, model)
    assert manifest.c is None and manifest.graph_parts.memory == ["/model/memory"]
    assert manifest.graph_parts.fp16 == [] and manifest.graph_parts.int8 == []
    frames = _test_frames(demo, 40)
    reference = _reference(tmp_path / "ps.onnx", run, frames)
    from runtime.backends import available_backends

    for backend in ONNX_BACKENDS:
        if backend in available_backends():
            _parity(backend, tmp_path / "ps.onnx", reference, frames)

    from calibration.threshold import main as threshold_main
    from runtime.manifest import load_manifest

    # the 2 good images the fit held out (the run's --holdout, found through the manifest's source_run)
    assert threshold_main(["--model", str(tmp_path / "ps.onnx"), "--data", str(demo), "--category", "brick",
                           "--target-fpr", "0.25", "--no-progress"]) == 0
    calibrated = load_manifest(tmp_path / "ps.onnx")
    assert calibrated.threshold is not None and math.isfinite(calibrated.threshold.value)
    assert calibrated.threshold.images == 2
    assert calibrated.c is None


def test_trt_and_latency_command_lines_follow_the_width_declaration(pixelstats, tmp_path, capsys):
    """export.trt and benchmarks/latency.py: --c is refused for a width-less method and not needed; files are
    named by the model label."""
    from benchmarks.latency import main as latency_main
    from export.trt import EXIT_NO_TENSORRT
    from export.trt import main as trt_main
    from runtime import trt_version

    assert trt_main(["--method", pixelstats.name, "--c", "8", "--random-weights", "--out", str(tmp_path)]) == 2
    assert "has no width: drop --c" in capsys.readouterr().err
    assert latency_main(["--method", pixelstats.name, "--c", "8", "--no-progress"]) == 2
    assert "has no width: drop --c" in capsys.readouterr().err
    assert latency_main(["--method", pixelstats.name, "--image-size", "36", "--no-progress"]) == 2
    assert "multiples of 8" in capsys.readouterr().err

    rc = trt_main(["--method", pixelstats.name, "--random-weights", "--image-size", "40", "--out", str(tmp_path)])
    assert rc == (0 if trt_version.installed_version() else EXIT_NO_TENSORRT)
    from runtime.manifest import load_manifest

    m = load_manifest(tmp_path / f"{pixelstats.name}.onnx")  # named by the label: no _cNone
    assert m.c is None and m.input.model_size == (40, 40)
    assert not list(tmp_path.glob("*_c*"))


def test_fit_without_the_hook_and_gradient_without_a_loss_say_so():
    class NoFit(MethodSpec):
        name = "nofit"
        training = "fit"
        run_class = Fitter

    class NoLoss(MethodSpec):
        name = "noloss"
        run_class = Trainer

    with pytest.raises(NotImplementedError, match="has no fit"):
        NoFit().start_run({}, (8, 8)).fit(None, [], torch.device("cpu"), False)
    with pytest.raises(NotImplementedError, match="has no loss"):
        NoLoss().start_run({}, (8, 8)).loss(None, None, None, 0)


@pytest.mark.parametrize("name", list_methods())
def test_update_hook_says_when_a_method_cannot_update(name):
    """The incremental-update hook exists for every method; one that does not implement it says so in one line."""
    method = get_method(name)
    run = method.start_run(method.options(), (_tiny_size(method),) * 2)
    if type(run).update is Fitter.update:  # not overridden: the default refuses
        with pytest.raises(UpdateNotSupported, match=f"method '{name}' cannot take new good images"):
            run.update(None, [], torch.device("cpu"), False, {})


def test_options_are_typed_and_checked_with_one_line(demo, tmp_path, capsys):
    from train.cli import main as train_main

    fair = get_method("fair")
    assert fair.options({"d0": 20})["d0"] == 20.0 and isinstance(fair.options({"d0": 20})["d0"], float)
    assert fair.options({"mean_filter": "7"}).mean_filter == 7  # text from the command line, read as the type
    with pytest.raises(ConfigError, match="has no option 'colour'; its options: filter, d0"):
        fair.options({"colour": 1})
    with pytest.raises(ConfigError, match="option mean_filter=2.5 of method 'fair': expected an integer"):
        fair.options({"mean_filter": 2.5})
    with pytest.raises(ConfigError, match="option score='mean' of method 'patchcore': use one of max, reweight"):
        get_method("patchcore").options({"score": "mean"})
    with pytest.raises(TypeError, match="read-only"):
        fair.options()["d0"] = 1.0
    base = ["--method", "fair", "--c", "8", "--data", str(demo), "--category", "brick", "--out", str(tmp_path / "r"),
            "--image-size", "64", "--steps", "1", "--device", "cpu", "--no-progress"]
    for option, message in (("d0=abc", "option d0='abc' of method 'fair': expected a number >= 0.0"),
                            ("order=0", "option order=0 of method 'fair': must be >= 1"),
                            ("gamma=2", "method 'fair' has no option 'gamma'")):
        assert train_main(base + ["--option", option]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "r").exists()


def test_f2pad_refines_only_the_methods_that_declare_it():
    from train.refine.feature_loss import feature_score

    able = [n for n in list_methods() if get_method(n).refine_score]
    assert {"patchcore", "padim"} <= set(able)
    with pytest.raises(ConfigError, match="F2PAD refines the maps of .*patchcore.* runs; this run is 'fair'"):
        feature_score("fair", None, None, None, (0, 0), (64, 64), 10)


def test_malformed_declarations_are_refused_at_registration():
    class BadRole(MethodSpec):
        name = "test_badrole"
        parts = {"net": "backbone"}

    class BadTraining(MethodSpec):
        name = "test_badtraining"
        training = "evolve"

    class BadOption(MethodSpec):
        name = "test_badoption"
        option_specs = (Option("k", "many", "int", "a count"),)

    for cls in (BadRole, BadTraining, BadOption):
        with pytest.raises(ValueError):
            register_method(cls)
        assert cls.name not in list_methods()


def test_width_follows_the_declaration():
    fair = get_method("fair")
    assert fair.width(None) == fair.default_width and fair.width(64) == 64
    with pytest.raises(ConfigError, match="positive integer"):
        fair.width(0)
    assert PixelStats().width(None) is None
    with pytest.raises(ConfigError, match="has no width"):
        PixelStats().width(32)
    assert fair.label(32) == "fair_c32" and PixelStats().label(None) == "test_pixelstats"


def test_after_training_hook_of_a_gradient_method_is_logged_and_saved(demo, tmp_path, monkeypatch):
    """After the last step the run's `after_training` sees the model and the good images; what it changes is
    saved and its facts are logged. An interrupted run (stop_at) does not call it."""
    from safetensors.torch import load_file

    from train.config import RunConfig
    from train.loop import train
    from train.methods.fair.trainer import FairTrainer

    def normalise(self, model, batches, device, progress):
        with torch.no_grad():
            model.net.head.bias.fill_(0.25)  # stands for a fitted normalisation constant
        return {"images_seen": sum(len(x) for x in batches)}

    monkeypatch.setattr(FairTrainer, "after_training", normalise)
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    config = RunConfig(method="fair", c=8, image_size=(32, 32), steps=2, batch_size=2)
    train(config, tmp_path / "stopped", images, device="cpu", progress=False, stop_at=1, log_every=1)
    assert "after_training" not in (tmp_path / "stopped" / "history.jsonl").read_text()
    train(RunConfig(method="fair", c=8, image_size=(32, 32), steps=2, batch_size=2), tmp_path / "run", images,
          device="cpu", progress=False, log_every=1)
    last = json.loads((tmp_path / "run" / "history.jsonl").read_text().splitlines()[-1])
    assert last == {"step": 2, "after_training": {"images_seen": 3}}
    weights = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert torch.all(weights["net.head.bias"] == 0.25)
