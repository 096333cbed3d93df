"""PyTorch backend: runs the inspection graph in PyTorch, for comparison and for measuring a trained run.

Two ways in:
- `create_backend("torch", MODEL.onnx, manifest)`: the training run the artifact was exported from (the
  manifest's `source_run`, or option `run_dir=RUN`), loaded with `train.runs.load_graph` at the manifest's
  frame size and channel order: "the same thing in PyTorch" next to an exported artifact.
- `TorchBackend.from_graph(graph, manifest, device, autocast, threads)`: an inspection graph already in memory
  (`train.graph.InspectionGraph`; `benchmarks.accuracy --run`, the latency benchmark's torch rows). The manifest
  describes it as for an export (`export.manifest.graph_manifest`): input size, channel order, outputs, extra
  inputs.

Why this one backend reaches into `train`: the other backends run the exported artifact, which needs nothing
of ours; running the graph in PyTorch needs the method's code and the run's weights, which only the training
package has. That is a deliberate exception to runtime's "imports nothing of ours" rule, kept to this file and
to load time: torch and train are imported in `_load`, so `import runtime` stays torch-free. `auto` never
chooses it.

Compute modes: fp32, or `autocast` "bf16" (CPU or CUDA) / "fp16" (CUDA only: torch's CPU fp16 kernels are a
slow path, not a deployment). Threads: `torch.set_num_threads` is process-wide, so a CPU backend sets it at
load (option `threads`, default `default_threads()`) and it stays set for the process.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
from typing import Any, Dict, Optional, Tuple

import numpy as np

from runtime.backends.base import Backend
from runtime.backends.selection import BackendChoice
from runtime.errors import BackendUnavailable, ManifestError, RuntimeInspectError
from runtime.manifest import Manifest

TORCH_PACKAGE = "torch==2.13.0"  # the version the toolkit is tested with; the CPU wheel is enough
AUTOCAST = ("fp16", "bf16")


class TorchBackend(Backend):
    name = "torch"
    option_names = ("run_dir", "autocast", "threads")
    option_choices = {"autocast": AUTOCAST}
    package = TORCH_PACKAGE
    artifact_kinds = ("graph",)  # given an exported artifact, it runs the graph of the artifact's source run
    precisions = ("fp32",)
    compute_modes = ("fp32", "fp16", "bf16")  # fp16: CUDA only
    compute_mode_options = {"fp16": {"autocast": "fp16"}, "bf16": {"autocast": "bf16"}}
    devices = ("cpu", "cuda")
    by_name_kinds = ("onnx",)  # asked for by name it runs an .onnx's source run (comparison); never by auto

    @classmethod
    def choose_by_name(cls, artifact_kind: str, device: str) -> BackendChoice:
        cls.probe()
        return BackendChoice(cls.name, "cpu" if device == "auto" else device, "asked for by name (comparison)")
    _given_graph: Any = None
    _in_memory = False

    @classmethod
    def from_graph(cls, graph: Any, manifest: Manifest, device: str = "cpu", autocast: Optional[str] = None,
                   threads: Optional[int] = None) -> "TorchBackend":
        """A backend over an inspection graph in memory (moved to `device` and set to eval at load). `manifest`
        describes it (`export.manifest.graph_manifest(graph, config)`)."""
        backend = cls(f"<in-memory {manifest.method} graph>", manifest, device=device, autocast=autocast,
                      threads=threads)
        backend._given_graph = graph
        backend._in_memory = True
        return backend

    @classmethod
    def _probe(cls) -> None:
        # find_spec, not import: importing torch costs seconds and this backend is never chosen by `auto`.
        if importlib.util.find_spec("torch") is None:
            raise BackendUnavailable("torch", TORCH_PACKAGE, detail="torch is not installed")
        if importlib.util.find_spec("train") is None:
            raise BackendUnavailable("torch", None, detail="the toolkit's `train` package is not importable",
                                     hint="run from a checkout of the toolkit (PYTHONPATH=.) to compare with PyTorch")

    def _check_options(self) -> None:
        super()._check_options()
        if self.device not in ("auto", "cpu", "cuda"):
            raise RuntimeInspectError(f"backend torch device must be auto, cpu or cuda, got {self.device!r}")

    def _run_dir(self) -> str:
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
        return run_dir

    def _pick_device(self, torch: Any) -> str:
        cuda = torch.cuda.is_available()
        if self.device == "cuda" and not cuda:
            raise BackendUnavailable("torch", None, detail="device 'cuda' asked but torch sees no CUDA GPU",
                                     hint="use device 'cpu' (or install a CUDA build of torch)")
        device = "cuda" if self.device == "cuda" or (self.device == "auto" and cuda) else "cpu"
        if device == "cpu" and self.options.get("autocast") == "fp16":
            raise RuntimeInspectError("backend torch: autocast fp16 runs on CUDA; on the CPU use autocast bf16 or "
                                      "none")
        return device

    def _load(self) -> None:
        self._probe()
        given = getattr(self, "_given_graph", None)
        run_dir = None if given is not None else self._run_dir()
        try:
            import torch  # noqa: PLC0415 - lazy by design
        except ImportError as e:
            raise BackendUnavailable("torch", TORCH_PACKAGE, detail=str(e)) from None
        self._torch = torch
        device = self._device = self._pick_device(torch)
        self.device = device  # "auto" resolved: callers report where it ran
        if device == "cpu":
            torch.set_num_threads(int(self.options.get("threads") or self.default_threads()))
        if given is not None:
            graph = given.to(device)
        else:
            from train.runs import load_graph  # noqa: PLC0415 - lazy by design

            # the graph the artifact was exported from: same frame size, channel order and map standardisation
            graph, _config = load_graph(run_dir, device=device, frame_size=self.manifest.input.size,
                                        channel_order=self.manifest.input.channel_order,
                                        map_stats=self.manifest.map_standardization is not None)
        self._graph = graph.eval()
        self._run = run_dir
        autocast = self.options.get("autocast")
        self._autocast_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(autocast) if autocast else None

    def _autocast(self) -> Any:
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return self._torch.autocast(self._device, dtype=self._autocast_dtype)

    def _infer_impl(self, frames: np.ndarray, extra: Dict[str, np.ndarray]) -> Tuple[Any, Any]:
        torch = self._torch
        x = torch.from_numpy(frames).to(self._device)
        extras = [torch.from_numpy(extra[e.name]).to(self._device)
                  for e in self.manifest.extra_inputs if e.name in extra]
        with torch.inference_mode(), self._autocast():
            amap, score = self._graph(x, *extras)
        return amap.float().cpu().numpy(), score.float().cpu().numpy()

    def synchronize(self) -> None:
        if getattr(self, "_device", "cpu") == "cuda":
            self._torch.cuda.synchronize()

    def _close(self) -> None:
        self._graph = self._given_graph = None
        if getattr(self, "_device", "cpu") == "cuda":
            self._torch.cuda.empty_cache()

    def describe(self) -> str:
        device = getattr(self, "_device", self.device)
        what = f"torch ({device}"
        if getattr(self, "_in_memory", False):
            what += ", in-memory graph"
        else:
            what += f", run {getattr(self, '_run', None) or self.options.get('run_dir') or self.manifest.source_run}"
        if self.options.get("autocast"):
            what += f", autocast {self.options['autocast']}"
        if device == "cpu" and self.is_loaded:
            what += f", {self._torch.get_num_threads()} threads"
        return what + ")"
