"""Manifest files: where a manifest lives beside its artifact, reading (`load_manifest`), atomic writing
(`write_manifest`), the sha256 check (`verify_artifact`) and the command that rebuilds an artifact. Stdlib only."""
from __future__ import annotations

import hashlib
import json
import os
from typing import Optional, Union

from runtime.errors import ArtifactMismatch, ManifestError
from runtime.files import atomic_write
from runtime.manifest.document import Manifest

PathLike = Union[str, "os.PathLike[str]"]
#: the largest manifest read: the toolkit's are kilobytes (an INT8 report with its calibration cache: well under 1 MiB)
MAX_MANIFEST_BYTES = 16 * 1024 * 1024


def manifest_path_for(artifact_path: PathLike) -> str:
    """NAME.onnx / NAME.engine / NAME.plan / NAME.xml -> NAME.json (a .json path is returned as is)."""
    p = os.fspath(artifact_path)
    root, ext = os.path.splitext(p)
    return p if ext.lower() == ".json" else root + ".json"


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def load_manifest(artifact_path: PathLike) -> Manifest:
    """Read and validate the manifest of `artifact_path` (NAME.onnx etc. or NAME.json itself)."""
    mpath = manifest_path_for(artifact_path)
    if not os.path.isfile(mpath):
        raise ManifestError(f"no manifest {mpath} beside {os.fspath(artifact_path)}: export the model with "
                            f"`python -m export.onnx --run RUN --out MODEL.onnx` (it writes MODEL.json beside it)")
    try:
        size = os.path.getsize(mpath)
        if size > MAX_MANIFEST_BYTES:  # parsing a huge one would stall the start for minutes
            raise ManifestError(f"manifest {mpath} is {size} bytes, above the cap of {MAX_MANIFEST_BYTES}: it is "
                                f"not a manifest the toolkit wrote; re-export the model")
        with open(mpath, "r", encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"cannot read manifest {mpath}: {e}") from None
    except json.JSONDecodeError as e:
        raise ManifestError(f"manifest {mpath} is not valid JSON ({e.msg} at line {e.lineno}): re-export the model "
                            f"or fix the file") from None
    except RecursionError:
        raise ManifestError(f"manifest {mpath} is nested too deeply to be a manifest: re-export the model or fix "
                            f"the file") from None
    return Manifest.from_dict(d, where=mpath)


def write_manifest(artifact_path: PathLike, manifest: Manifest) -> str:
    """Validate `manifest` and write it atomically as NAME.json beside `artifact_path`; returns its path.

    An empty `manifest.artifact` is filled with the artifact's file name, an empty `sha256` with the hash of
    the artifact file (which must then exist)."""
    apath = os.fspath(artifact_path)
    name = os.path.basename(apath)
    if not manifest.artifact:
        manifest.artifact = name
    elif manifest.artifact != name:
        raise ManifestError(f"manifest.artifact is {manifest.artifact!r} but it is written beside {name!r}: "
                            f"give both the same file name")
    if not manifest.sha256:
        if not os.path.isfile(apath):
            raise ManifestError(f"manifest.sha256 is empty and {apath} does not exist to hash: write the artifact "
                                f"first or pass its sha256")
        manifest.sha256 = sha256_file(apath)
    mpath = manifest_path_for(apath)
    manifest.validate(where=mpath)
    atomic_write(mpath, manifest.to_json() + "\n")
    return mpath


def artifact_path_for(manifest_or_artifact: PathLike, manifest: Manifest) -> str:
    """The artifact a manifest describes: its `artifact` file name in the manifest's folder."""
    folder = os.path.dirname(os.path.abspath(os.fspath(manifest_or_artifact)))
    return os.path.join(folder, manifest.artifact)


def model_label(method: str, c: Optional[int]) -> str:
    """A model's short name for files, tables and logs: 'fair_c32' for a method with a width, 'patchcore' for one
    without (c None). The one place that spells it (train.methods.Method.label uses it too)."""
    return f"{method}_c{int(c)}" if c is not None else str(method)


def rebuild_command(manifest: Manifest, artifact_path: Optional[PathLike] = None) -> str:
    """The command that re-creates this artifact (for error messages)."""
    run = manifest.source_run or "RUN"
    out = os.fspath(artifact_path) if artifact_path is not None else manifest.artifact
    if manifest.artifact_kind == "tensorrt-engine":
        b = manifest.batch
        folder = os.path.dirname(out) or "."
        width = f" --c {manifest.c}" if manifest.c is not None else ""
        return (f"python -m export.trt --method {manifest.method}{width} --run {run} "
                f"--precision {manifest.precision} --profile {b.min}:{b.opt}:{b.max} --out {folder}")
    onnx_out = os.path.splitext(out)[0] + ".onnx"
    return f"python -m export.onnx --run {run} --out {onnx_out}"


def verify_artifact(artifact_path: PathLike, manifest: Manifest) -> None:
    """Raise ArtifactMismatch when the artifact's sha256 differs from the manifest's."""
    apath = os.fspath(artifact_path)
    if not os.path.isfile(apath):
        raise ArtifactMismatch(f"artifact {apath} named by its manifest does not exist",
                               rebuild_command(manifest, apath))
    digest = sha256_file(apath)
    if digest != manifest.sha256:
        raise ArtifactMismatch(f"{apath} has sha256 {digest[:12]}… but its manifest says {manifest.sha256[:12]}…: "
                               f"the file was changed or replaced after export",
                               rebuild_command(manifest, apath))


__all__ = ["MAX_MANIFEST_BYTES", "load_manifest", "write_manifest", "sha256_file", "manifest_path_for", "artifact_path_for", "model_label",
           "rebuild_command", "verify_artifact"]
