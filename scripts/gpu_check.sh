#!/usr/bin/env bash
# Prove the GPU path on this machine in one command (about 10 minutes on one data-centre GPU): GPU/TensorRT
# tests, FP32/FP16/INT8 engines of FAIR c=32/64/128, PatchCore and PaDiM with parity against ONNX Runtime, and
# the tensorrt / torch-CUDA latency rows; everything into one folder (default gpu_check_DATE), with SKIPPED.md.
# Without a GPU (or with --cpu-only) it runs what it can and says what it skipped. Options: python -m
# benchmarks.gpu_check --help.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec python -m benchmarks.gpu_check "$@"
