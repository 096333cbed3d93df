"""The manifest schema: round trip, validation with actionable messages, sha256 checks, atomic writes."""
from __future__ import annotations

import copy
import json
import logging
import os

import pytest

from runtime.errors import ArtifactMismatch, ManifestError
from runtime.manifest import (BatchSpec, EngineProfile, ExtraInput, InputSpec, Manifest, Normalization, TensorRTInfo,
                              Threshold, load_manifest, manifest_path_for, rebuild_command, sha256_file, verify_artifact,
                              write_manifest)


def _manifest(**kw) -> Manifest:
    base = dict(artifact="", artifact_kind="onnx", sha256="", method="fair", c=32,
                input=InputSpec(height=256, width=320, channel_order="BGR", resizes_in_graph=True,
                                model_size=(256, 256)),
                extra_inputs=[ExtraInput("noise", [1, 256, 256], "float32", True, "fresh noise")],
                batch=BatchSpec(True, 1, 4, 32), options={"filter": "bhpf"}, source_run="runs/fair_c32",
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


def test_verdict_rule_takes_an_override_and_drops_a_normalisation_it_cannot_use():
    m = _manifest(threshold=Threshold(2.5, normalization=Normalization(1.5, 0.25)))
    assert m.verdict_rule().normalize(2.5) == pytest.approx(1.0)
    assert m.verdict_rule(3.5).value == 3.5 and m.verdict_rule(3.5).normalize(3.5) == pytest.approx(1.0)
    low = m.verdict_rule(1.0)  # at or below the good mean the formula means nothing
    assert low.value == 1.0 and low.normalization is None and low.normalize(2.0) is None
    bare = _manifest(threshold=None)
    assert bare.verdict_rule() is None and bare.verdict_rule(0.7).value == 0.7


def test_unknown_keys_are_warned_about_by_path_and_dropped(artifact, caplog):
    write_manifest(artifact, _manifest())
    mpath = manifest_path_for(artifact)
    d = json.load(open(mpath))
    d["future_key"] = {"x": 1}
    d["input"]["gamma"] = 2.2
    d["threshold"]["normalization"]["skew"] = 0.1
    json.dump(d, open(mpath, "w"))
    with caplog.at_level(logging.WARNING, logger="runtime.manifest"):
        m = load_manifest(artifact)
    said = " | ".join(r.getMessage() for r in caplog.records)
    for path in ("'future_key'", "'input.gamma'", "'threshold.normalization.skew'"):
        assert f"unknown key {path} ignored" in said
    assert m == _manifest(artifact="model.onnx", sha256=sha256_file(artifact), created=m.created)
    back = m.to_dict()
    assert "future_key" not in back and "gamma" not in back["input"]
    assert not hasattr(m, "extra")  # no unknown-keys bag


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
    info = TensorRTInfo("10.3.0", "Orin", "8.7", {"min": 1, "opt": 4, "max": 32,
                                                  "shapes": {"frame": [[1, 256, 320, 3], [4, 256, 320, 3],
                                                                       [32, 256, 320, 3]]}})
    assert isinstance(info.profile, EngineProfile)  # a writer's dict becomes the typed section
    write_manifest(engine, _manifest(artifact_kind="tensorrt-engine", precision="fp16", tensorrt=info))
    m = load_manifest(engine)
    assert m.tensorrt == info
    cmd = rebuild_command(m, str(engine))
    assert cmd.startswith("python -m export.trt --method fair --c 32") and "--precision fp16" in cmd
    assert "--profile 1:4:32" in cmd and "--run runs/fair_c32" in cmd
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
    assert "sha256" in str(e.value) and "python -m export.onnx --run runs/fair_c32" in str(e.value)
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


# -- every key our tools write is a named field; manifests of the previous version read unchanged ------------------
DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")  # tests/data


@pytest.mark.parametrize("name", ["manifest_previous_engine.json", "manifest_previous_int8.json"])
def test_manifests_of_the_previous_version_read_into_named_fields(name, caplog):
    """Written by the version that kept these keys in an untyped bag: each key lands in its typed field, nothing
    is unknown, and writing the manifest back gives the same JSON."""
    from runtime.manifest import EngineBuild, GraphParts, Quantization, SourceOnnx, ThresholdProvenance

    d = json.load(open(os.path.join(DATA, name)))
    with caplog.at_level(logging.WARNING, logger="runtime.manifest"):
        m = Manifest.from_dict(copy.deepcopy(d), where=name)
    assert not caplog.records, [r.getMessage() for r in caplog.records]
    assert m.to_dict() == d
    assert isinstance(m.graph_parts, GraphParts)
    if m.artifact_kind == "tensorrt-engine":
        assert m.map_standardization.startswith("per-pixel z-score")
        assert m.graph_parts.fp16 is None and m.graph_parts.int8 is None  # before methods declared them
        assert m.graph_parts.scoring == ["/model/scorer", "/standardizer"] and m.graph_parts.nodes["/"] == 6
        assert isinstance(m.threshold_provenance, ThresholdProvenance)
        assert m.threshold_provenance.scores["good_max"] == 0.45 and m.threshold_provenance.warnings == []
        assert isinstance(m.source_onnx, SourceOnnx) and m.source_onnx.file == "fair_c32_fp16.onnx"
        assert isinstance(m.build, EngineBuild) and m.build.tf32 is False and m.build.workspace_mb is None
        assert isinstance(m.tensorrt.profile, EngineProfile) and m.tensorrt.profile.opt == 8
    else:
        assert m.map_standardization is None and m.c is None
        assert m.graph_parts.memory == ["/model/memory"] and m.graph_parts.int8 == ["/model/backbone/"]
        assert isinstance(m.quantization, Quantization)
        assert m.quantization.source.artifact == "patchcore.onnx" and m.quantization.placement["style"] == "tensorrt"
        assert m.quantization.sensitivity is None and m.quantization.seconds == 12.5


def test_an_engine_profile_of_the_oldest_engines_reads_as_none():
    d = json.load(open(os.path.join(DATA, "manifest_previous_engine.json")))
    d["tensorrt"]["profile"] = {}
    assert Manifest.from_dict(d).tensorrt.profile is None


def test_records_are_absent_unless_set(artifact):
    write_manifest(artifact, _manifest())
    d = json.load(open(manifest_path_for(artifact)))
    for key in ("map_standardization", "graph_parts", "threshold_provenance", "quantization", "source_onnx",
                "build", "weights_sha256", "extra"):
        assert key not in d


def _engine_dict() -> dict:
    return json.load(open(os.path.join(DATA, "manifest_previous_engine.json")))


def _int8_dict() -> dict:
    return json.load(open(os.path.join(DATA, "manifest_previous_int8.json")))


SECTION_CASES = [
    (_engine_dict, "graph_parts.network", "/model/net", "'graph_parts.network' must be a list of strings"),
    (_engine_dict, "graph_parts.nodes", {"/": "six"}, "'graph_parts.nodes' must be an object"),
    (_engine_dict, "threshold_provenance.model_sha256", "abc", "'threshold_provenance.model_sha256' must be 64"),
    (_engine_dict, "threshold_provenance.warnings", "none", "'threshold_provenance.warnings' must be a list"),
    (_engine_dict, "source_onnx.sha256", _DELETE, "missing field 'source_onnx.sha256'"),
    (_engine_dict, "build.workspace_mb", 0, "'build.workspace_mb' must be a positive integer or null"),
    (_engine_dict, "build.strongly_typed", "yes", "'build.strongly_typed' must be true or false"),
    (_engine_dict, "tensorrt.profile.max", "32", "'tensorrt.profile.max' must be a positive integer"),
    (_engine_dict, "tensorrt.version", "ten", "'tensorrt.version' must look like '10.3.0'"),
    (_engine_dict, "threshold.normalization.good_std", -1.0, "'threshold.normalization.good_std' must be >= 0"),
    (_engine_dict, "threshold.value", float("nan"), "'threshold.value' must be a finite number"),
    (_engine_dict, "map_standardization", 1, "'map_standardization' must be a string or null"),
    (_int8_dict, "quantization.source", _DELETE, "missing field 'quantization.source'"),
    (_int8_dict, "quantization.source.sha256", "xyz", "'quantization.source.sha256' must be 64"),
    (_int8_dict, "quantization.placement", [], "'quantization.placement' must be an object"),
    (_int8_dict, "quantization.headroom", "1", "'quantization.headroom' must be a finite number or null"),
    (_int8_dict, "extra_inputs", [{"name": "noise", "shape": [3, 4]}, {"name": "", "shape": [1]}],
     "'extra_inputs[1].name' must be a non-empty string"),
    (_int8_dict, "extra_inputs", [{"name": "noise", "shape": [3, 4], "dtype": "bool"}], "'extra_inputs[0].dtype'"),
    (_int8_dict, "weights_sha256", "0123", "'weights_sha256' must be 64 lower-case hex digits"),
]


@pytest.mark.parametrize("make, field, value, message", SECTION_CASES,
                         ids=[f"{c[1]}={'DELETED' if c[2] is _DELETE else repr(c[2])}"[:40] for c in SECTION_CASES])
def test_each_section_names_the_key_path_of_its_error(make, field, value, message):
    d = make()
    _set(d, field, value if value is _DELETE else copy.deepcopy(value))
    with pytest.raises(ManifestError) as e:
        Manifest.from_dict(d, where="m.json")
    text = str(e.value)
    assert text.startswith("m.json: ") and message in text and "\n" not in text


def test_a_section_validates_itself_alone():
    from runtime.manifest import EngineBuild, GraphParts

    with pytest.raises(ManifestError, match="'input.model_size' must be a list of 2 positive integers"):
        InputSpec(height=8, width=8, model_size=(0, 8)).validate("x.json", "input")
    with pytest.raises(ManifestError, match="x.json: 'batch' needs 1 <= min <= opt <= max"):
        BatchSpec(True, 2, 1, 4).validate("x.json", "batch")
    with pytest.raises(ManifestError, match="'graph_parts.fp16' must be a list of strings or null"):
        GraphParts(fp16="/model/net/").validate("x.json", "graph_parts")
    with pytest.raises(ManifestError, match="missing field 'build.strongly_typed'"):
        EngineBuild.from_dict({"tf32": False}, "x.json", "build")
    assert Threshold(2.0, normalization=Normalization(1.0, 0.1)).validate() is not None


def test_our_writers_cannot_add_a_key_the_schema_lacks():
    """Building in code refuses unknown names (no bag to drop them into); `derive` says what to do."""
    from export.manifest import derive
    from runtime.manifest import Quantization

    with pytest.raises(TypeError, match="bogus"):
        Quantization(source={"artifact": "m.onnx", "sha256": "0" * 64}, bogus=1)
    with pytest.raises(TypeError, match="bogus"):
        TensorRTInfo("10.3.0", "Orin", "8.7", profile={"min": 1, "opt": 1, "max": 1, "bogus": 2})
    m = _manifest(artifact="model.onnx", sha256="0" * 64)
    with pytest.raises(ManifestError, match="no key 'extra'.*named field"):
        derive(m, extra={"source_onnx": {}})
    engine = derive(m, artifact_kind="tensorrt-engine", tensorrt=TensorRTInfo("10.3.0", "Orin", "8.7"),
                    source_onnx={"file": "model.onnx", "sha256": m.sha256},
                    build={"strongly_typed": True, "builder_flags": [], "seconds": 1.0, "workspace_mb": None,
                           "tf32": False})
    assert engine.artifact == "" and engine.build.strongly_typed and engine.source_onnx.file == "model.onnx"
    assert m.build is None  # the source manifest is untouched
