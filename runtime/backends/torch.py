"""PyTorch backend: runs the training run's own inspection graph, for comparison on a development machine.

Why this one backend reaches into `train`: the other backends run the exported artifact, which needs nothing
of ours; running "the same thing in PyTorch" needs the method's code and the run's weights, which only the
training package has (`train.runs.load_graph`). That is a deliberate exception to runtime's "imports nothing
of ours" rule, kept to this file and to import time: torch and train are imported in `_load`, so
`import runtime` stays torch-free. `auto` never chooses it; ask for it with backend="torch". It uses the
manifest's `source_run`; pass `run_dir=` to override.
"""
from __future__ import annotations

import importlib.util
import os
from typing import Any, Dict, Tuple

import numpy as np

from runtime.backends.base import Backend
from runtime.errors import BackendUnavailable, ManifestError

TORCH_PACKAGE = "torch==2.13.0"  # the version the toolkit is tested with; the CPU wheel is enough


class TorchBackend(Backend):
    name = "torch"
    option_names = ("run_dir",)
    package = TORCH_PACKAGE

    @classmethod
    def _probe(cls) -> None:
        # find_spec, not import: importing torch costs seconds and this backend is never chosen by `auto`.
        if importlib.util.find_spec("torch") is None:
            raise BackendUnavailable("torch", TORCH_PACKAGE, detail="torch is not installed")
        if importlib.util.find_spec("train") is None:
            raise BackendUnavailable("torch", None, detail="the toolkit's `train` package is not importable",
                                     hint="run from a checkout of the toolkit (PYTHONPATH=.) to compare with PyTorch")

    def _load(self) -> None:
        self._probe()
        run_dir = self.options.get("run_dir") or self.manifest.source_run
        if not run_dir:
            raise ManifestError(f"the torch backend needs the training run: the manifest of {self.artifact_path} "
                                f"has no 'source_run'; pass run_dir=RUN")
        if not os.path.isabs(run_dir) and not os.path.isdir(run_dir):
            beside = os.path.join(os.path.dirname(os.path.abspath(self.artifact_path)), run_dir)
            if os.path.isdir(beside):
                run_dir = beside
        if not os.path.isdir(run_dir):
            raise ManifestError(f"training run {run_dir!r} (manifest 'source_run') does not exist here: the torch "
                                f"backend compares with the run on a development machine; pass run_dir=RUN")
        try:
            import torch  # noqa: PLC0415 - lazy by design
            from train.runs import load_graph  # noqa: PLC0415
        except ImportError as e:
            raise BackendUnavailable("torch", TORCH_PACKAGE, detail=str(e)) from None
        device = "cuda" if self.device == "cuda" else "cpu"
        self._torch = torch
        self._device = device
        # the graph the artifact was exported from: same frame size, channel order and map standardisation
        graph, _config = load_graph(run_dir, device=device, frame_size=self.manifest.input.size,
                                    channel_order=self.manifest.input.channel_order,
                                    map_stats=self.manifest.map_standardization is not None)
        self._graph = graph.eval()
        self._run_dir = run_dir

    def _infer_impl(self, frames: np.ndarray, extra: Dict[str, np.ndarray]) -> Tuple[Any, Any]:
        torch = self._torch
        x = torch.from_numpy(frames).to(self._device)
        extras = [torch.from_numpy(extra[e.name]).to(self._device)
                  for e in self.manifest.extra_inputs if e.name in extra]
        with torch.inference_mode():
            amap, score = self._graph(x, *extras)
        return amap.float().cpu().numpy(), score.float().cpu().numpy()

    def _close(self) -> None:
        self._graph = None

    def describe(self) -> str:
        return f"torch ({getattr(self, '_device', self.device)}, run {getattr(self, '_run_dir', self.manifest.source_run)})"
