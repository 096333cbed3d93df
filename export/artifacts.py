"""One artifact pipeline: a model's torch inspection graph -> FP32 ONNX -> FP16 / Q/DQ INT8 ONNX -> TensorRT
engine, each written with its manifest beside it, made on first use and kept for the object's life.

`python -m export.trt` (one model, the files it leaves in --out) and `benchmarks/latency.py` (every artifact a
row needs, in a work folder) both make their artifacts here, so an engine measured by the benchmark is built
the way the export command builds it.

Files in `out_dir`, NAME = the stem given (e.g. `fair_c32`):
- `NAME.onnx` the FP32 graph (`export.onnx`), `NAME_fp16.onnx` (`export.fp16`), `NAME_int8.onnx` (Q/DQ,
  `calibration.int8`, TensorRT placement) and `NAME_int8_PLACEMENT.onnx` for another placement;
- `NAME_PRECISION[TAG].engine` (TensorRT, `export.trt_build`), with the timing cache `timing.cache` keyed by
  TensorRT version and GPU (`export.trt_timing_cache`).
A failure is remembered: asking again for the same artifact raises the same error without redoing the work.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

from export.errors import ExportError

#: the Q/DQ placement `calibration.int8` uses when none is named (inputs of weighted ops only; every backend
#: that runs INT8 runs it)
DEFAULT_PLACEMENT = "tensorrt"
ONNX_PRECISIONS = ("fp32", "fp16", "int8")


class ArtifactUnavailable(ExportError):
    """This artifact cannot be made here (no calibration data, a library missing); the message says what is
    missing."""


@dataclass(frozen=True)
class Calibration:
    """What `calibration.int8.quantize_onnx` needs for a Q/DQ INT8 graph: good training images, how many, and
    whether to search for blocks to keep in FP32 (pointless with random weights: no accuracy to protect)."""
    data: str
    category: Optional[str] = None
    images: int = 64
    auto_keep: bool = True
    progress: bool = True


@dataclass(frozen=True)
class GraphSource:
    """Where a model's torch inspection graph comes from: a trained run, else seeded random weights of
    (method, c, image size, options). `frame_size` / `channel_order`: what the graph takes from the camera."""
    method: Optional[str] = None
    c: Optional[int] = None
    image_size: Any = 256
    run: Optional[str] = None
    options: Dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    frame_size: Any = None
    channel_order: str = "RGB"

    def build(self):
        """(graph (CPU, eval), RunConfig)."""
        if self.run:
            from export.graph import graph_from_run

            return graph_from_run(self.run, self.frame_size, self.channel_order)
        from export.graph import graph_random

        graph, config = graph_random(self.method, self.c, self.image_size, options=self.options or None,
                                     seed=self.seed, frame_size=self.frame_size, channel_order=self.channel_order)
        return graph.eval(), config

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-able copy (a child process rebuilds the graph from it)."""
        return {"method": self.method, "c": self.c, "image_size": list(self.image_size)
                if isinstance(self.image_size, (tuple, list)) else self.image_size, "run": self.run,
                "options": dict(self.options), "seed": self.seed, "frame_size": self.frame_size,
                "channel_order": self.channel_order}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "GraphSource":
        return cls(**d)


def int8_key(placement: Optional[str]) -> str:
    """The artifact key of a Q/DQ INT8 graph with this placement: "int8" (the default placement) or
    "int8:PLACEMENT"."""
    return "int8" if placement in (None, DEFAULT_PLACEMENT) else f"int8:{placement}"


class ModelArtifacts:
    """The artifacts of one model in `out_dir`, made on first use and cached.

    `onnx(key)`: key "fp32", "fp16", "int8" or "int8:PLACEMENT". `engine(key, profile)`: a TensorRT engine of
    that graph. `calibration` is needed for INT8 (ArtifactUnavailable without it). `export_options` go to
    `export.onnx.export_onnx` (opset, noise_input, profile, notes)."""

    def __init__(self, out_dir, stem: str, source: GraphSource, *, calibration: Optional[Calibration] = None,
                 export_options: Optional[Dict[str, Any]] = None):
        self.dir = Path(out_dir)
        self.stem = stem
        self.source = source
        self.calibration = calibration
        self.export_options = dict(export_options or {})
        self._graph: Optional[Tuple[Any, Any]] = None
        self._made: Dict[Any, Any] = {}
        self._failed: Dict[Any, BaseException] = {}

    # -- torch side --
    def graph_and_config(self):
        """The torch inspection graph (CPU, eval) and its RunConfig."""
        if self._graph is None:
            self._graph = self.source.build()
        return self._graph

    def release(self) -> None:
        """Drop the torch graph (the files stay)."""
        self._graph = None

    # -- files --
    def onnx(self, key: str = "fp32") -> Path:
        """The ONNX graph `key` ("fp32", "fp16", "int8", "int8:PLACEMENT") with its manifest."""
        precision, _, placement = key.partition(":")
        if precision not in ONNX_PRECISIONS or (placement and precision != "int8"):
            raise ExportError(f"unknown graph {key!r}; known: fp32, fp16, int8, int8:PLACEMENT")
        return self._once(int8_key(placement) if precision == "int8" else precision, lambda: self._make_onnx(key))

    def engine(self, key: str, profile: Tuple[int, int, int], *, tag: str = "", workspace_mb: Optional[int] = None,
               verbose: bool = False):
        """(engine path, export.trt_build.BuildResult) of a TensorRT engine built from `onnx(key)` with the
        batch profile (min, opt, max), written as NAME_PRECISION[TAG].engine with its manifest. Needs TensorRT
        and a GPU (BackendUnavailable / ExportError saying which is missing)."""
        profile = tuple(int(b) for b in profile)
        return self._once(("engine", key, profile, tag),
                          lambda: self._make_engine(key, profile, tag, workspace_mb, verbose))

    def manifest(self, key: str = "fp32"):
        from runtime.manifest import load_manifest

        return load_manifest(self.onnx(key))

    def path_of(self, key: str) -> Path:
        """Where `onnx(key)` is (or will be) written."""
        precision, _, placement = key.partition(":")
        suffix = {"fp32": "", "fp16": "_fp16"}.get(precision)
        if suffix is None:
            suffix = "_int8" if placement in ("", DEFAULT_PLACEMENT) else f"_int8_{placement}"
        return self.dir / f"{self.stem}{suffix}.onnx"

    # -- the steps --
    def _once(self, key: Any, make: Callable[[], Any]) -> Any:
        if key in self._failed:
            raise self._failed[key]
        if key not in self._made:
            try:
                self._made[key] = make()
            except Exception as e:
                self._failed[key] = e
                raise
        return self._made[key]

    def _make_onnx(self, key: str) -> Path:
        precision, _, placement = key.partition(":")
        out = self.path_of(key)
        if precision == "fp32":
            try:
                from export.onnx import export_onnx
            except ImportError as e:
                raise ArtifactUnavailable(f"ONNX export is not available ({e})") from None
            graph, config = self.graph_and_config()
            return export_onnx(graph, config, out, batch="dynamic", source_run=self.source.run,
                               **self.export_options)
        fp32 = self.onnx("fp32")
        if precision == "fp16":
            from export.onnx import fp16_variant

            return Path(fp16_variant(fp32, out))
        return self._quantize(fp32, out, placement or DEFAULT_PLACEMENT)

    def _quantize(self, fp32: Path, out: Path, placement: str) -> Path:
        cal = self.calibration
        if cal is None:
            raise ArtifactUnavailable("int8 needs calibration images: give the data root and category of good "
                                      "training images")
        try:
            from calibration.int8 import quantize_onnx
        except ImportError as e:
            raise ArtifactUnavailable(f"INT8 calibration is not available ({e}); use fp16 or fp32") from None
        quantize_onnx(fp32, out, cal.data, cal.category, cal.images, placement=placement, auto_keep=cal.auto_keep,
                      progress=cal.progress)
        if not out.is_file():
            raise ExportError(f"calibration.int8.quantize_onnx did not write {out}")
        from runtime.manifest import manifest_path_for

        if not Path(manifest_path_for(out)).is_file():  # the calibrator writes its own (with its details)
            from export.manifest import derive, write
            from runtime.manifest import load_manifest

            src = load_manifest(fp32)
            write(out, derive(src, precision="int8", notes=list(src.notes) + [
                f"Q/DQ INT8 variant of {fp32.name} (calibration.int8, placement {placement})"]))
        return out

    def _make_engine(self, key: str, profile: Tuple[int, int, int], tag: str, workspace_mb: Optional[int],
                     verbose: bool):
        from export.trt_build import build_engine_with_manifest

        precision = key.partition(":")[0]
        engine = self.dir / f"{self.stem}_{precision}{tag}.engine"
        res = build_engine_with_manifest(self.onnx(key), engine, precision=precision, batch=profile,
                                         workspace_mb=workspace_mb, timing_cache=self.dir / "timing.cache",
                                         verbose=verbose)
        return engine, res


__all__ = ["ModelArtifacts", "GraphSource", "Calibration", "ArtifactUnavailable", "int8_key", "DEFAULT_PLACEMENT"]
