"""The sections of a manifest that say how to run the artifact: input, extra inputs, outputs, batch, threshold
with its score normalisation, and the TensorRT block of an engine. Each reads and checks itself (`Section`).
Stdlib only."""
from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from dataclasses import dataclass

from runtime.manifest.section import Section, fail, key_path, spec

CHANNEL_ORDERS = ("RGB", "BGR")
THRESHOLD_RULES = ("target_fpr", "f1", "user")
#: The host resize rule (`runtime.frames` applies it, `imagesets` resizes training images through it).
HOST_RESIZE = "cv2.INTER_AREA (shrink) / cv2.INTER_LINEAR (enlarge)"
INPUT_DTYPES = ("uint8",)
EXTRA_DTYPES = ("float32", "float16", "uint8", "int32", "int64")


@dataclass
class InputSpec(Section):
    """The frame input of the graph: (N, height, width, channels) uint8, NHWC, in `channel_order`."""

    height: int = spec(positive=True)
    width: int = spec(positive=True)
    name: str = spec("frame", nonempty=True, hint="the graph's input name")
    dtype: str = spec("uint8", choices=INPUT_DTYPES)
    layout: str = spec("NHWC", choices=("NHWC",), hint="the inspection graph takes NHWC frames")
    channels: int = spec(3, choices=(3,), hint="the inspection graph takes 3-channel frames")
    channel_order: str = spec("RGB", choices=CHANNEL_ORDERS)
    resizes_in_graph: bool = False
    model_size: Optional[Tuple[int, int]] = spec(None, positive=True)  # (h, w) of the model; default the input's
    host_resize: str = HOST_RESIZE

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.model_size is None:
            self.model_size = (self.height, self.width)
        elif isinstance(self.model_size, list):
            self.model_size = tuple(self.model_size)  # type: ignore[assignment]

    @property
    def size(self) -> Tuple[int, int]:
        """(height, width) that the graph accepts."""
        return int(self.height), int(self.width)


@dataclass
class ExtraInput(Section):
    """An optional extra graph input (e.g. a fresh noise field); `shape` excludes the batch axis."""

    name: str = spec(nonempty=True)
    shape: List[int] = spec(positive=True, hint="positive sizes without the batch axis")
    dtype: str = spec("float32", choices=EXTRA_DTYPES)
    optional: bool = True
    meaning: str = ""


@dataclass
class OutputSpec(Section):
    name: str = spec(nonempty=True, hint="the graph's output name")
    shape: List[int] = spec(hint="-1 = dynamic")
    meaning: str = ""


@dataclass
class Outputs(Section):
    anomaly_map: OutputSpec
    score: OutputSpec

    @classmethod
    def default(cls, map_size: Sequence[int]) -> "Outputs":
        h, w = int(map_size[0]), int(map_size[1])
        return cls(
            anomaly_map=OutputSpec("anomaly_map", [-1, 1, h, w], "per-pixel anomaly, higher = more anomalous"),
            score=OutputSpec("score", [-1], "image anomaly score (max of the map), higher = more anomalous"),
        )

    def check(self, where: str, path: str) -> None:
        shape = self.anomaly_map.shape
        if len(shape) != 4 or shape[1] != 1:
            raise fail(where, key_path(path, "anomaly_map.shape"), f"must be [N, 1, h, w], got {shape!r}")
        if len(self.score.shape) != 1:
            raise fail(where, key_path(path, "score.shape"), f"must be [N], got {self.score.shape!r}")


@dataclass
class BatchSpec(Section):
    dynamic: bool = True
    min: int = 1
    opt: int = 1
    max: int = 32

    def check(self, where: str, path: str) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise fail(where, path or "batch", f"needs 1 <= min <= opt <= max, got min={self.min!r} "
                                               f"opt={self.opt!r} max={self.max!r}")


@dataclass
class Normalization(Section):
    good_mean: float
    good_std: float = spec(hint="the standard deviation of good scores, >= 0")

    def check(self, where: str, path: str) -> None:
        if self.good_std < 0:
            raise fail(where, key_path(path, "good_std"), f"must be >= 0, got {self.good_std!r}")


@dataclass
class Threshold(Section):
    """Score threshold: a frame is anomalous when score >= value."""

    value: float = spec(hint="NaN or infinity would judge every frame the same way: recalibrate with "
                             "`python -m calibration.threshold`")
    rule: str = spec("user", choices=THRESHOLD_RULES)
    images: int = 0
    data: str = ""
    date: str = ""
    target_fpr: Optional[float] = None
    normalization: Optional[Normalization] = None

    def normalize(self, score: float) -> Optional[float]:
        """(score - good_mean) / (value - good_mean): 0 at the good mean, 1.0 at the threshold; None
        without normalisation."""
        if self.normalization is None:
            return None
        den = float(self.value) - float(self.normalization.good_mean)
        return (float(score) - float(self.normalization.good_mean)) / den

    def check(self, where: str, path: str) -> None:
        if self.rule == "target_fpr" and (self.target_fpr is None or not 0.0 <= float(self.target_fpr) <= 1.0):
            raise fail(where, key_path(path, "target_fpr"), f"must be in [0, 1] for rule 'target_fpr', got "
                                                            f"{self.target_fpr!r}")
        nm = self.normalization
        if nm is not None and not float(self.value) > float(nm.good_mean):
            raise fail(where, key_path(path, "value"), f"{self.value!r} must be above 'normalization.good_mean' "
                                                       f"{nm.good_mean!r} (normalised score = (score - mean) / "
                                                       f"(threshold - mean)); recalibrate with "
                                                       f"`python -m calibration.threshold`")


@dataclass
class EngineProfile(Section):
    """The engine's optimisation profile: batch min/opt/max and each input's (min, opt, max) shapes."""

    min: int = spec(positive=True)
    opt: int = spec(positive=True)
    max: int = spec(positive=True)
    shapes: Dict[str, List[List[int]]] = spec(factory=dict)


@dataclass
class TensorRTInfo(Section):
    version: str
    gpu: str
    compute_capability: str
    profile: Optional[EngineProfile] = None

    @classmethod
    def from_dict(cls, d: Any, where: str = "manifest", path: str = "") -> "TensorRTInfo":
        if isinstance(d, dict) and d.get("profile") == {}:  # written before engines recorded their profile
            d = dict(d, profile=None)
        return super().from_dict(d, where, path)

    def check(self, where: str, path: str) -> None:
        if not re.fullmatch(r"\d+\.\d+(\.\d+)*", self.version):
            raise fail(where, key_path(path, "version"), f"must look like '10.3.0', got {self.version!r}")
        if not re.fullmatch(r"\d+\.\d+", self.compute_capability):
            raise fail(where, key_path(path, "compute_capability"), f"must look like '8.7', got "
                                                                    f"{self.compute_capability!r}")


__all__ = ["InputSpec", "ExtraInput", "OutputSpec", "Outputs", "BatchSpec", "Normalization", "Threshold",
           "EngineProfile", "TensorRTInfo", "CHANNEL_ORDERS", "THRESHOLD_RULES", "HOST_RESIZE", "INPUT_DTYPES",
           "EXTRA_DTYPES"]
