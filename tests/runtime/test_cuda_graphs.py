"""CUDA graph capture (runtime.cuda_graphs) and the TensorRT backend's use of it, without a GPU.

`RecordingCuda` stands in for runtime.cuda_runtime.CudaRuntime's graph methods (their ctypes side is checked in
test_cuda_runtime.py); it records the calls so the tests can check the order and the cleanup that a failed
capture needs. Nothing here claims TensorRT or CUDA ran: these are the control-flow rules around them."""
from __future__ import annotations

from typing import List

import numpy as np
import pytest

from runtime import cuda_graphs
from runtime.errors import RuntimeInspectError
from runtime.manifest import BatchSpec, InputSpec, Manifest, TensorRTInfo


class RecordingCuda:
    def __init__(self, end_code=0, graph=11, instantiate_error=False, begin_error=False):
        self.calls: List[str] = []
        self.end_code, self.graph = end_code, graph
        self.instantiate_error, self.begin_error = instantiate_error, begin_error
        self.missing_graph_functions: List[str] = []

    def stream_synchronize(self, stream):
        self.calls.append("sync")

    def begin_capture(self, stream):
        self.calls.append("begin")
        if self.begin_error:
            raise RuntimeInspectError("cudaStreamBeginCapture failed: cudaErrorIllegalState (401)")

    def end_capture(self, stream):
        self.calls.append("end")
        return self.end_code, self.graph

    def graph_instantiate(self, graph):
        self.calls.append(f"instantiate {graph}")
        if self.instantiate_error:
            raise RuntimeInspectError("cudaGraphInstantiateWithFlags failed: cudaErrorInvalidValue (1)")
        return 99

    def graph_destroy(self, graph):
        self.calls.append(f"destroy {graph}")

    def clear_error(self):
        self.calls.append("clear")
        return 0

    def error_name(self, code):
        return {901: "cudaErrorStreamCaptureInvalidated"}.get(code, f"cudaError {code}")

    def graph_launch(self, graph_exec, stream):
        self.calls.append(f"launch {graph_exec}")


def enqueues(*results):
    """An enqueue callable returning `results` in turn, recording each call."""
    log: List[bool] = []

    def enqueue():
        log.append(True)
        return results[len(log) - 1]

    return enqueue, log


def test_success_warms_up_captures_instantiates_and_destroys_the_graph():
    cuda = RecordingCuda()
    enqueue, log = enqueues(True, True)
    graph_exec, why = cuda_graphs.capture(cuda, 5, enqueue, "a batch of 2")
    assert (graph_exec, why) == (99, "") and len(log) == 2
    assert cuda.calls == ["sync", "begin", "end", "instantiate 11", "destroy 11", "clear"]


def test_failed_enqueue_during_capture_gives_no_graph_and_cleans_up():
    cuda = RecordingCuda(end_code=901, graph=12)
    enqueue, _ = enqueues(True, False)
    graph_exec, why = cuda_graphs.capture(cuda, 5, enqueue, "a batch of 2")
    assert graph_exec is None and "execute_async_v3 returned False during capture" in why
    assert "instantiate 12" not in cuda.calls
    assert cuda.calls[-3:] == ["end", "destroy 12", "clear"]


def test_enqueue_raising_inside_capture_still_ends_it():
    cuda = RecordingCuda(graph=0)

    def enqueue(state={"n": 0}):
        state["n"] += 1
        if state["n"] == 2:
            raise ValueError("boom")
        return True

    graph_exec, why = cuda_graphs.capture(cuda, 5, enqueue, "x")
    assert graph_exec is None and "boom" in why and "end" in cuda.calls and cuda.calls[-1] == "clear"


def test_failed_warm_up_raises_instead_of_capturing():
    cuda = RecordingCuda()
    enqueue, _ = enqueues(False)
    with pytest.raises(RuntimeInspectError, match="execute_async_v3 failed for a batch of 4"):
        cuda_graphs.capture(cuda, 5, enqueue, "a batch of 4")
    assert "begin" not in cuda.calls


def test_failed_end_or_instantiate_or_begin_gives_no_graph():
    cuda = RecordingCuda(end_code=901, graph=0)
    graph_exec, why = cuda_graphs.capture(cuda, 5, enqueues(True, True)[0], "x")
    assert graph_exec is None and "cudaErrorStreamCaptureInvalidated (901)" in why
    cuda = RecordingCuda(instantiate_error=True)
    graph_exec, why = cuda_graphs.capture(cuda, 5, enqueues(True, True)[0], "x")
    assert graph_exec is None and "cudaGraphInstantiateWithFlags failed" in why
    assert cuda.calls[-2:] == ["destroy 11", "clear"]
    cuda = RecordingCuda(begin_error=True)
    graph_exec, why = cuda_graphs.capture(cuda, 5, enqueues(True)[0], "x")
    assert graph_exec is None and "cudaStreamBeginCapture" in why and cuda.calls[-1] == "clear"


def test_runtime_without_graph_functions_says_which():
    cuda = RecordingCuda()
    cuda.missing_graph_functions = ["cudaGraphInstantiateWithFlags"]
    graph_exec, why = cuda_graphs.capture(cuda, 5, enqueues()[0], "x")
    assert graph_exec is None and "cudaGraphInstantiateWithFlags" in why and cuda.calls == []


class RecordingContext:
    """Stands in for IExecutionContext.execute_async_v3: returns `results` in turn."""

    def __init__(self, *results):
        self.results = list(results)
        self.calls = 0

    def execute_async_v3(self, stream):
        self.calls += 1
        return self.results.pop(0)


def _backend(context, cuda, graph=True):
    from runtime.backends.tensorrt import TensorRTBackend

    m = Manifest(artifact="m.engine", artifact_kind="tensorrt-engine", sha256="0" * 64, method="fair", c=8,
                 input=InputSpec(height=32, width=32), precision="fp32", batch=BatchSpec(True, 1, 2, 4),
                 source_run=None, tensorrt=TensorRTInfo("10.3.0", "gpu", "8.7"))
    b = TensorRTBackend("m.engine", m, device="cuda", cuda_graph=graph)
    b._cuda, b._context, b._stream, b._graphs = cuda, context, 5, {}
    b._use_graph, b._graph_off_reason = graph, ""
    return b


def test_backend_runs_the_batch_plainly_when_capture_fails(caplog):
    """Nothing executes during a capture: after a failed one, this batch must still run (the old code returned
    and the caller read the previous batch's outputs)."""
    cuda = RecordingCuda(end_code=901, graph=0)
    context = RecordingContext(True, False, True)  # warm-up, capture (fails), the plain run
    b = _backend(context, cuda)
    b._execute(2)
    assert context.calls == 3 and not b._use_graph and "returned False" in b._graph_off_reason
    assert "CUDA graph capture failed" in caplog.text and not any(c.startswith("launch") for c in cuda.calls)
    context.results = [False]
    with pytest.raises(RuntimeInspectError, match="execute_async_v3 failed for a batch of 2"):
        b._execute(2)


def test_backend_launches_the_captured_graph_and_reuses_it():
    cuda = RecordingCuda()
    context = RecordingContext(True, True)
    b = _backend(context, cuda)
    b._execute(3)
    b._execute(3)
    assert context.calls == 2 and b._graphs == {3: 99}
    assert [c for c in cuda.calls if c.startswith("launch")] == ["launch 99", "launch 99"]


def test_backend_close_destroys_graphs_even_when_a_call_fails(caplog):
    class ClosingCuda(RecordingCuda):
        def graph_exec_destroy(self, g):
            self.calls.append(f"exec_destroy {g}")

        def free(self, p):
            self.calls.append(f"free {p}")
            raise RuntimeInspectError("cudaFree failed: cudaErrorIllegalAddress (700)")

        def free_host(self, p):
            self.calls.append(f"free_host {p}")

        def stream_destroy(self, s):
            self.calls.append(f"stream_destroy {s}")

    cuda = ClosingCuda()
    b = _backend(RecordingContext(), cuda)
    b._graphs = {1: 41, 2: 42}
    b._allocs = [("host", 7), ("device", 8)]
    b._host = {"x": np.zeros(1)}
    b._close()
    assert {"exec_destroy 41", "exec_destroy 42", "free 8", "free_host 7", "stream_destroy 5"} <= set(cuda.calls)
    assert b._graphs == {} and b._stream is None and "cudaFree failed" in caplog.text
