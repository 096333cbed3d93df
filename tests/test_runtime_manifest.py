"""The manifest schema: round trip, validation with actionable messages, sha256 checks, atomic writes."""
from __future__ import annotations

import copy
import json
import os

import pytest

from runtime.errors import ArtifactMismatch, ManifestError
from runtime.manifest import (BatchSpec, ExtraInput, InputSpec, Manifest, Normalization, TensorRTInfo, Threshold,
                              load_manifest, manifest_path_for, rebuild_command, sha256_file, verify_artifact,
                              write_manifest)


def _manifest(**kw) -> Manifest:
    base = dict(artifact="", artifact_kind="onnx", sha256="", method="fair", c=32,
                input=InputSpec(height=256, width=320, channel_order="BGR", resizes_in_graph=True,
                                model_size=(256, 256)),
                extra_inputs=[ExtraInput("noise", [1, 256, 256], "float32", True, "fresh noise")],
                batch=BatchSpec(True, 1, 4, 32), options={"filter": "bhpf"}, source_run="runs/fair-c32",
                threshold=Threshold(2.5, "target_fpr", 40, "demo/brick", "2026-11-23", target_fpr=0.01,
                                    normalization=Normalization(1.5, 0.25)),
                versions={"toolkit": "0.1.0", "onnx": "1.23"}, notes=["a note"])
    base.update(kw)
    return Manifest(**base)


@pytest.fixture
def artifact(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not really onnx, but bytes to hash")
    return path


def test_round_trip_keeps_every_field(artifact):
    m = _manifest()
    mpath = write_manifest(artifact, m)
    assert mpath == str(artifact.with_suffix(".json"))
    assert m.artifact == "model.onnx" and m.sha256 == sha256_file(artifact)
    back = load_manifest(artifact)
    assert back == m
    assert back.to_dict() == m.to_dict()
    d = json.loads(open(mpath).read())
    assert d["format"] == "edge-inspect-manifest" and d["schema_version"] == 1
    assert d["input"]["model_size"] == [256, 256] and d["outputs"]["anomaly_map"]["shape"] == [-1, 1, 256, 256]
    assert d["outputs"]["score"] == {"name": "score", "shape": [-1], "meaning": m.outputs.score.meaning}
    # the manifest path itself loads too
    assert load_manifest(mpath) == m


def test_normalized_score_is_one_at_the_threshold():
    t = Threshold(2.5, normalization=Normalization(1.5, 0.25))
    assert t.normalize(2.5) == pytest.approx(1.0)
    assert t.normalize(1.5) == pytest.approx(0.0)
    assert t.normalize(3.0) == pytest.approx(1.5)
    assert Threshold(2.5).normalize(2.0) is None


def test_unknown_keys_survive_a_round_trip(artifact):
    write_manifest(artifact, _manifest())
    mpath = manifest_path_for(artifact)
    d = json.load(open(mpath))
    d["graph_parts"] = {"nodes": 12}
    json.dump(d, open(mpath, "w"))
    m = load_manifest(artifact)
    assert m.extra == {"graph_parts": {"nodes": 12}}
    assert m.to_dict()["graph_parts"] == {"nodes": 12}


def test_write_is_atomic_and_leaves_no_temporary_files(artifact):
    write_manifest(artifact, _manifest())
    write_manifest(artifact, _manifest(notes=["second"]))
    assert sorted(os.listdir(artifact.parent)) == ["model.json", "model.onnx"]
    assert load_manifest(artifact).notes == ["second"]


def test_write_refuses_an_invalid_manifest_and_keeps_the_old_file(artifact):
    write_manifest(artifact, _manifest())
    before = open(manifest_path_for(artifact)).read()
    with pytest.raises(ManifestError, match="precision"):
        write_manifest(artifact, _manifest(precision="fp8"))
    assert open(manifest_path_for(artifact)).read() == before


def test_write_refuses_a_different_artifact_name(artifact):
    with pytest.raises(ManifestError, match="same file name"):
        write_manifest(artifact, _manifest(artifact="other.onnx"))


def _valid_dict(artifact) -> dict:
    write_manifest(artifact, _manifest())
    return json.load(open(manifest_path_for(artifact)))


def _set(d, dotted, value):
    keys = dotted.split(".")
    for k in keys[:-1]:
        d = d[k]
    if value is _DELETE:
        del d[keys[-1]]
    else:
        d[keys[-1]] = value


_DELETE = object()

CASES = [
    ("format", "onnx-metadata", "not an edge-inspect manifest"),
    ("schema_version", 2, "upgrade the edge-inspect runtime"),
    ("schema_version", "1", "schema_version"),
    ("sha256", _DELETE, "missing field 'sha256'"),
    ("input.height", _DELETE, "input.height"),
    ("artifact", "dir/model.onnx", "file name"),
    ("artifact_kind", "tflite", "allowed: onnx, tensorrt-engine, openvino-ir"),
    ("artifact", "model.engine", "extension"),
    ("sha256", "abc", "64 lower-case hex"),
    ("c", 0, "'c' must be a positive integer"),
    ("c", True, "'c' must be a positive integer"),
    ("input.width", -4, "input.width"),
    ("input.channels", 1, "3-channel"),
    ("input.dtype", "float32", "input.dtype"),
    ("input.layout", "NCHW", "NHWC"),
    ("input.channel_order", "RGBA", "allowed: RGB, BGR"),
    ("input.model_size", [256], "model_size"),
    ("outputs.anomaly_map.shape", [-1, 3, 8, 8], "[N, 1, h, w]"),
    ("outputs.score.shape", [-1, 1], "[N]"),
    ("outputs.score", _DELETE, "outputs.score"),
    ("extra_inputs", [{"name": "frame", "shape": [1]}], "unique"),
    ("extra_inputs", [{"name": "noise", "shape": [0, 4]}], "positive sizes"),
    ("precision", "bf16", "allowed: fp32, fp16, int8"),
    ("batch", {"dynamic": True, "min": 4, "opt": 2, "max": 8}, "min <= opt <= max"),
    ("threshold.rule", "magic", "threshold.rule"),
    ("threshold.target_fpr", 5.0, "target_fpr"),
    ("threshold.value", 1.0, "above 'normalization.good_mean'"),
    ("threshold.value", _DELETE, "threshold.value"),
    ("input", "256x256", "'input' must be an object"),
]


@pytest.mark.parametrize("field, value, message", CASES, ids=[(f"{c[0]}=" + ("DELETED" if c[1] is _DELETE else repr(c[1])))[:40] for c in CASES])
def test_validation_names_the_field_and_what_to_do(artifact, field, value, message):
    d = _valid_dict(artifact)
    _set(d, field, value if value is _DELETE else copy.deepcopy(value))
    json.dump(d, open(manifest_path_for(artifact), "w"))
    with pytest.raises(ManifestError) as e:
        load_manifest(artifact)
    text = str(e.value)
    assert message in text
    assert "\n" not in text and str(manifest_path_for(artifact)) in text  # one line, says which file


def test_engine_manifest_needs_its_tensorrt_block(tmp_path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"engine bytes")
    with pytest.raises(ManifestError, match="python -m export.trt"):
        write_manifest(engine, _manifest(artifact_kind="tensorrt-engine"))
    info = TensorRTInfo("10.3.0", "Orin", "8.7", {"min": [1, 256, 320, 3], "opt": [4, 256, 320, 3],
                                                  "max": [32, 256, 320, 3]})
    write_manifest(engine, _manifest(artifact_kind="tensorrt-engine", precision="fp16", tensorrt=info))
    m = load_manifest(engine)
    assert m.tensorrt == info
    cmd = rebuild_command(m, str(engine))
    assert cmd.startswith("python -m export.trt --method fair --c 32") and "--precision fp16" in cmd
    assert "--batch 1:4:32" in cmd and "--run runs/fair-c32" in cmd
    with pytest.raises(ManifestError, match="tensorrt.compute_capability"):
        write_manifest(engine, _manifest(artifact_kind="tensorrt-engine",
                                         tensorrt=TensorRTInfo("10.3.0", "Orin", "sm87")))


def test_missing_and_broken_manifest_files(tmp_path, artifact):
    with pytest.raises(ManifestError, match="python -m export.onnx"):
        load_manifest(artifact)
    open(manifest_path_for(artifact), "w").write("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_manifest(artifact)
    open(manifest_path_for(artifact), "w").write("[1, 2]")
    with pytest.raises(ManifestError, match="JSON object"):
        load_manifest(artifact)


def test_sha256_mismatch_says_what_to_rebuild(artifact):
    write_manifest(artifact, _manifest())
    m = load_manifest(artifact)
    verify_artifact(str(artifact), m)  # unchanged: fine
    artifact.write_bytes(b"a different model")
    with pytest.raises(ArtifactMismatch) as e:
        verify_artifact(str(artifact), m)
    assert "sha256" in str(e.value) and "python -m export.onnx --run runs/fair-c32" in str(e.value)
    os.remove(artifact)
    with pytest.raises(ArtifactMismatch, match="does not exist"):
        verify_artifact(str(artifact), m)


def test_sha256_file_matches_hashlib(tmp_path):
    import hashlib

    p = tmp_path / "blob"
    data = os.urandom(3 * (1 << 20) + 17)  # crosses the 1 MiB chunk boundary
    p.write_bytes(data)
    assert sha256_file(p) == hashlib.sha256(data).hexdigest()


def test_width_less_method_has_null_c(artifact):
    """A method without a width (e.g. PatchCore) writes c: null; a width must still be a positive integer."""
    m = _manifest(method="patchcore", c=None)
    write_manifest(artifact, m)
    back = load_manifest(artifact)
    assert back.c is None and json.load(open(manifest_path_for(artifact)))["c"] is None
    cmd = rebuild_command(derive_engine(back), "engines/patchcore_fp16.engine")
    assert "--method patchcore --run" in cmd and "--c" not in cmd
    for bad in (0, -4, 2.5, "32", True):
        d = back.to_dict()
        d["c"] = bad
        with pytest.raises(ManifestError, match="'c' must be a positive integer or null"):
            Manifest.from_dict(d)
    d = back.to_dict()
    del d["c"]
    with pytest.raises(ManifestError, match="missing field 'c'"):
        Manifest.from_dict(d)


def derive_engine(m: Manifest) -> Manifest:
    out = copy.deepcopy(m)
    out.artifact_kind = "tensorrt-engine"
    out.precision = "fp16"
    return out


def test_model_label_names_a_model_with_or_without_width():
    from runtime.manifest import model_label

    assert model_label("fair", 32) == "fair_c32"
    assert model_label("patchcore", None) == "patchcore"
