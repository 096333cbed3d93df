"""Reading the inspection graph's outputs from DeepStream's tensor meta: map, score and verdict per frame.

nvinfer with `network-type=100` and `output-tensor-meta=1` (the config `python -m export.deepstream` writes)
attaches to each frame an `NvDsInferTensorMeta` holding that frame's output layers: `anomaly_map` (1, h, w)
and `score` (1,), float32, without the batch axis. In a pad probe downstream of nvinfer:

    parser = TensorMetaParser.from_file("DIR/NAME_ds.json")
    ...for each frame_meta, for each user_meta of frame_meta.frame_user_meta_list with
       user_meta.base_meta.meta_type == pyds.NvDsMetaType.NVDSINFER_TENSOR_OUTPUT_META:
        tensor_meta = pyds.NvDsInferTensorMeta.cast(user_meta.user_meta_data)
        verdict = parser.parse(layers_from_tensor_meta(tensor_meta))

`parse` takes plain numpy arrays (tested on the CPU); `layers_from_tensor_meta` is the only code that touches
pyds (DeepStream's Python bindings; it needs a DeepStream install and is not exercised here). The verdict
follows the Inspector's rule from the manifest: anomalous when score >= threshold, normalised score
(score - good_mean) / (threshold - good_mean) (`runtime.manifest.Threshold.normalize`). numpy and stdlib only.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from runtime.errors import ManifestError, RuntimeInspectError
from runtime.manifest import Manifest, Threshold

FORMAT = "edge-inspect-deepstream"


class FrameVerdict:
    """One frame's result: `anomaly_map` (h, w) float32 at the model size, `score`, `threshold`,
    `is_anomalous` (None without a threshold), `normalized_score` (None without a normalisation)."""

    __slots__ = ("anomaly_map", "score", "threshold", "is_anomalous", "normalized_score")

    def __init__(self, anomaly_map: np.ndarray, score: float, threshold: Optional[float],
                 normalized_score: Optional[float]):
        self.anomaly_map = anomaly_map
        self.score = float(score)
        self.threshold = threshold
        self.is_anomalous: Optional[bool] = None if threshold is None else bool(self.score >= threshold)
        self.normalized_score = normalized_score

    @property
    def verdict(self) -> str:
        return "unknown" if self.is_anomalous is None else ("anomalous" if self.is_anomalous else "good")

    def to_dict(self) -> Dict[str, Any]:
        return {"score": self.score, "normalized_score": self.normalized_score, "threshold": self.threshold,
                "is_anomalous": self.is_anomalous, "verdict": self.verdict}


class TensorMetaParser:
    """Turns one frame's output layers into a `FrameVerdict`, with the threshold of the exported model."""

    def __init__(self, manifest: Manifest, map_size: Sequence[int], outputs: Sequence[str] = ("anomaly_map", "score"),
                 threshold: Optional[float] = None):
        self.manifest = manifest
        self.map_size = (int(map_size[0]), int(map_size[1]))
        self.map_name, self.score_name = outputs[0], outputs[1]
        self._rule: Optional[Threshold] = manifest.verdict_rule(threshold)  # a threshold given here wins
        self.threshold: Optional[float] = self._rule.value if self._rule is not None else None

    @classmethod
    def from_file(cls, path: str, threshold: Optional[float] = None) -> "TensorMetaParser":
        """Read DIR/NAME_ds.json written by `python -m export.deepstream`."""
        try:
            with open(os.fspath(path), "r") as f:
                d = json.load(f)
        except (OSError, ValueError) as e:
            raise ManifestError(f"cannot read the DeepStream parser file {path} ({e}): write it with "
                                f"`python -m export.deepstream`") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ManifestError(f"{path} is not a {FORMAT} file: write it with `python -m export.deepstream`")
        manifest = Manifest.from_dict(d["manifest"], where=os.fspath(path))
        return cls(manifest, d["map_size"], d.get("outputs", ("anomaly_map", "score")), threshold)

    def normalize(self, score: float) -> Optional[float]:
        return self._rule.normalize(score) if self._rule is not None else None

    def parse(self, layers: Mapping[str, np.ndarray]) -> FrameVerdict:
        """`layers`: output name -> array of ONE frame (tensor meta has no batch axis; a leading 1 is fine)."""
        missing = [n for n in (self.map_name, self.score_name) if n not in layers]
        if missing:
            raise RuntimeInspectError(f"tensor meta lacks layer(s) {missing} (has {sorted(layers)}): is nvinfer "
                                      f"running the NAME_ds.onnx with output-tensor-meta=1?")
        amap = np.asarray(layers[self.map_name], dtype=np.float32)
        score = np.asarray(layers[self.score_name], dtype=np.float32)
        h, w = self.map_size
        if amap.size != h * w or score.size != 1:
            raise RuntimeInspectError(f"one frame's layers are {self.map_name} {amap.shape} and {self.score_name} "
                                      f"{score.shape}; expected {h * w} map values ({h}x{w}) and one score: is "
                                      f"this the model of the parser file?")
        s = float(score.reshape(()))
        return FrameVerdict(amap.reshape(h, w), s, self.threshold, self.normalize(s))

    def parse_batch(self, layers: Mapping[str, np.ndarray]) -> List[FrameVerdict]:
        """The same for batched arrays (N, 1, h, w) and (N,) or (N, 1), e.g. from a TensorRT/ONNX run."""
        amap, score = np.asarray(layers[self.map_name]), np.asarray(layers[self.score_name]).reshape(-1)
        return [self.parse({self.map_name: amap[i], self.score_name: score[i:i + 1]}) for i in range(score.shape[0])]


def layers_from_tensor_meta(tensor_meta: Any) -> Dict[str, np.ndarray]:
    """Copy the float output layers of a pyds.NvDsInferTensorMeta into numpy arrays, by layer name.

    Needs DeepStream's Python bindings (pyds); not exercised by the tests here (no DeepStream on CPU)."""
    import ctypes

    try:
        import pyds  # noqa: PLC0415 - DeepStream's bindings, present only inside a DeepStream install
    except ImportError:
        raise RuntimeInspectError("pyds (DeepStream's Python bindings) is not installed: run this inside a "
                                  "DeepStream install") from None
    out: Dict[str, np.ndarray] = {}
    for i in range(int(tensor_meta.num_output_layers)):
        layer = pyds.get_nvds_LayerInfo(tensor_meta, i)
        dims = layer.inferDims
        shape = tuple(int(d) for d in list(dims.d)[: int(dims.numDims)])
        count = int(np.prod(shape)) if shape else 1
        ptr = ctypes.cast(pyds.get_ptr(layer.buffer), ctypes.POINTER(ctypes.c_float))
        out[str(layer.layerName)] = np.ctypeslib.as_array(ptr, shape=(count,)).reshape(shape).copy()
    return out


__all__ = ["TensorMetaParser", "FrameVerdict", "layers_from_tensor_meta", "FORMAT"]
