"""Capture one inference into a CUDA graph, checked at every step, leaving nothing behind when it fails.

Why each step: TensorRT finishes shape-dependent setup in the first run after a shape change, so a warm-up run
comes before the capture; during a capture nothing executes, so a failed enqueue inside it must not be followed
by a replay (that would return the previous batch's outputs as this batch's); a failed capture leaves the stream
in a capture state and an error behind, so the capture is ended, its partial graph destroyed and the error
read off; the graph itself is destroyed once instantiated (the executable graph does not need it).
`cudaGraphInstantiateWithFlags` is the call with one signature from CUDA 11.4 to 13 (`cudaGraphInstantiate`
changed its arguments in CUDA 12).
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

from runtime.errors import RuntimeInspectError


def capture(cuda: Any, stream: int, enqueue: Callable[[], bool], what: str) -> Tuple[Optional[int], str]:
    """Warm up with `enqueue()` (True on success, as `execute_async_v3`), then capture one `enqueue()` on
    `stream`. Returns (executable graph, "") or (None, why) after cleaning up; a failed warm-up raises
    RuntimeInspectError (inference itself fails there, graph or not). `cuda` is a runtime.cuda_runtime.CudaRuntime.
    """
    if getattr(cuda, "missing_graph_functions", None):
        return None, f"this CUDA runtime lacks {', '.join(cuda.missing_graph_functions)}"
    if not enqueue():
        raise RuntimeInspectError(f"TensorRT execute_async_v3 failed for {what} (warm-up before CUDA graph "
                                  f"capture; see the TensorRT log)")
    cuda.stream_synchronize(stream)
    graph = 0
    try:
        cuda.begin_capture(stream)
    except RuntimeInspectError as e:
        cuda.clear_error()
        return None, f"cudaStreamBeginCapture failed: {e}"
    try:
        ok = enqueue()
    except Exception as e:  # the capture must be ended whatever happened inside it
        ok, why = False, f"execute_async_v3 raised during capture: {e}"
    else:
        why = "execute_async_v3 returned False during capture"
    code, graph = cuda.end_capture(stream)
    try:
        if not ok or code != 0 or not graph:
            if ok:
                why = f"cudaStreamEndCapture failed: {cuda.error_name(code)} ({code})"
            return None, why
        try:
            return cuda.graph_instantiate(graph), ""
        except RuntimeInspectError as e:
            return None, f"cudaGraphInstantiateWithFlags failed: {e}"
    finally:
        if graph:
            try:
                cuda.graph_destroy(graph)
            except RuntimeInspectError:
                pass
        cuda.clear_error()


__all__ = ["capture"]
