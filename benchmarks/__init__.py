"""Benchmarks: accuracy metrics and evaluation of any backend (`metrics`, `evaluate`, `accuracy`), reports, and
latency. `python -m benchmarks.accuracy --help` evaluates a trained run or its ONNX on a test split."""
