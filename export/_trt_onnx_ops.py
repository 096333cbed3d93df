"""Operator tables of the TensorRT ONNX parser (onnx-tensorrt), one per parser generation: data, no logic.

Source: `docs/operators.md` of github.com/onnx/onnx-tensorrt on each release branch (Apache-2.0), read 2026-11:
- `OPS_TRT85`: branch `release/8.5-GA` ("TensorRT 8.5 supports operators up to Opset 17"). Used for 8.5 and 8.6
  (JetPack 5.1 ships 8.5.2, JetPack 6.0 8.6.2).
- `OPS_TRT10`: branch `release/10.1-GA` (identical on `main` at the 10.x series, except a wording change; "TensorRT
  10.0 supports operators in the inclusive range of opset 9 to opset 20"). Used for every 10.x.
- TensorRT 11: no operators.md of an 11 branch was available to us; the 11.x parser is taken as the 10.x table plus
  what the release notes add: ONNX DFT through a cuFFT plugin from 11.2 (NVIDIA/TensorRT release v11.2, "Added
  support for the DFT operator"), opsets up to 25 (runtime.trt_version). Recheck against the 11 branch's
  operators.md when it can be read.

Each entry maps a *supported* operator to the data types its "Supported Types" column lists (TensorRT's names:
FP32, FP16, BF16, INT32, INT64, INT8, UINT8, BOOL). Operators absent from a table are unsupported by that parser
(the documents list them with "N", e.g. DFT, STFT, LayerNormalization on 8.5). Restrictions that matter for our
graphs are checked in `export.opcheck` and cited there.
"""
from __future__ import annotations

from typing import Dict

OPS_TRT85: Dict[str, str] = {
    "Abs": "FP32 FP16 INT32", "Acos": "FP32 FP16", "Acosh": "FP32 FP16", "Add": "FP32 FP16 INT32", "And": "BOOL",
    "ArgMax": "FP32 FP16", "ArgMin": "FP32 FP16", "Asin": "FP32 FP16", "Asinh": "FP32 FP16", "Atan": "FP32 FP16",
    "Atanh": "FP32 FP16", "AveragePool": "FP32 FP16 INT8 INT32", "BatchNormalization": "FP32 FP16",
    "Cast": "FP32 FP16 INT32 INT8 BOOL", "Ceil": "FP32 FP16", "Celu": "FP32 FP16", "Clip": "FP32 FP16 INT8",
    "Concat": "FP32 FP16 INT32 INT8 BOOL", "Constant": "FP32 FP16 INT32 INT8 BOOL", "ConstantOfShape": "FP32",
    "Conv": "FP32 FP16 INT8", "ConvTranspose": "FP32 FP16 INT8", "Cos": "FP32 FP16", "Cosh": "FP32 FP16",
    "CumSum": "FP32 FP16", "DepthToSpace": "FP32 FP16 INT32", "DequantizeLinear": "INT8", "Div": "FP32 FP16 INT32",
    "Dropout": "FP32 FP16", "Einsum": "FP32 FP16", "Elu": "FP32 FP16 INT8", "Equal": "FP32 FP16 INT32",
    "Erf": "FP32 FP16", "Exp": "FP32 FP16", "Expand": "FP32 FP16 INT32 BOOL", "EyeLike": "FP32 FP16 INT32 BOOL",
    "Flatten": "FP32 FP16 INT32 BOOL", "Floor": "FP32 FP16", "GRU": "FP32 FP16",
    "Gather": "FP32 FP16 INT8 INT32 BOOL", "GatherElements": "FP32 FP16 INT8 INT32 BOOL",
    "GatherND": "FP32 FP16 INT8 INT32 BOOL", "Gemm": "FP32 FP16 INT8", "GlobalAveragePool": "FP32 FP16 INT8",
    "GlobalLpPool": "FP32 FP16 INT8", "GlobalMaxPool": "FP32 FP16 INT8", "Greater": "FP32 FP16 INT32",
    "GreaterOrEqual": "FP32 FP16 INT32", "GridSample": "FP32 FP16", "HardSigmoid": "FP32 FP16 INT8",
    "HardSwish": "FP32 FP16 INT8", "Identity": "FP32 FP16 INT32 INT8 BOOL", "If": "FP32 FP16 INT32 BOOL",
    "ImageScaler": "FP32 FP16", "InstanceNormalization": "FP32 FP16", "IsNaN": "FP32 FP16 INT32",
    "LRN": "FP32 FP16", "LSTM": "FP32 FP16", "LeakyRelu": "FP32 FP16 INT8", "Less": "FP32 FP16 INT32",
    "LessOrEqual": "FP32 FP16 INT32", "Log": "FP32 FP16", "LogSoftmax": "FP32 FP16",
    "Loop": "FP32 FP16 INT32 BOOL", "LpNormalization": "FP32 FP16", "LpPool": "FP32 FP16 INT8",
    "MatMul": "FP32 FP16", "Max": "FP32 FP16 INT32", "MaxPool": "FP32 FP16 INT8", "Mean": "FP32 FP16 INT32",
    "MeanVarianceNormalization": "FP32 FP16", "Min": "FP32 FP16 INT32", "Mod": "FP32 FP16 INT32",
    "Mul": "FP32 FP16 INT32", "Neg": "FP32 FP16 INT32", "NonMaxSuppression": "FP32 FP16", "NonZero": "FP32 FP16",
    "Not": "BOOL", "OneHot": "FP32 FP16 INT32 BOOL", "Or": "BOOL", "PRelu": "FP32 FP16 INT8",
    "Pad": "FP32 FP16 INT8 INT32", "ParametricSoftplus": "FP32 FP16 INT8", "Pow": "FP32 FP16",
    "QuantizeLinear": "FP32 FP16", "RNN": "FP32 FP16", "RandomNormal": "FP32 FP16",
    "RandomNormalLike": "FP32 FP16", "RandomUniform": "FP32 FP16", "RandomUniformLike": "FP32 FP16",
    "Range": "FP32 FP16 INT32", "Reciprocal": "FP32 FP16", "ReduceL1": "FP32 FP16", "ReduceL2": "FP32 FP16",
    "ReduceLogSum": "FP32 FP16", "ReduceLogSumExp": "FP32 FP16", "ReduceMax": "FP32 FP16",
    "ReduceMean": "FP32 FP16", "ReduceMin": "FP32 FP16", "ReduceProd": "FP32 FP16", "ReduceSum": "FP32 FP16",
    "ReduceSumSquare": "FP32 FP16", "Relu": "FP32 FP16 INT8", "Reshape": "FP32 FP16 INT32 INT8 BOOL",
    "Resize": "FP32 FP16", "ReverseSequence": "FP32 FP16", "RoiAlign": "FP32 FP16", "Round": "FP32 FP16 INT8",
    "ScaledTanh": "FP32 FP16 INT8", "Scan": "FP32 FP16", "Scatter": "FP32 FP16 INT8 INT32",
    "ScatterElements": "FP32 FP16 INT8 INT32", "ScatterND": "FP32 FP16 INT8 INT32", "Selu": "FP32 FP16 INT8",
    "Shape": "FP32 FP16 INT32 INT8 BOOL", "Shrink": "FP32 FP16 INT32", "Sigmoid": "FP32 FP16 INT8",
    "Sign": "FP32 FP16 INT8 INT32", "Sin": "FP32 FP16", "Sinh": "FP32 FP16", "Size": "FP32 FP16 INT32 INT8 BOOL",
    "Slice": "FP32 FP16 INT32 INT8 BOOL", "Softmax": "FP32 FP16", "Softplus": "FP32 FP16 INT8",
    "Softsign": "FP32 FP16 INT8", "SpaceToDepth": "FP32 FP16 INT32", "Split": "FP32 FP16 INT32 BOOL",
    "Sqrt": "FP32 FP16", "Squeeze": "FP32 FP16 INT32 INT8 BOOL", "Sub": "FP32 FP16 INT32",
    "Sum": "FP32 FP16 INT32", "Tan": "FP32 FP16", "Tanh": "FP32 FP16 INT8", "ThresholdedRelu": "FP32 FP16 INT8",
    "Tile": "FP32 FP16 INT32 BOOL", "TopK": "FP32 FP16", "Transpose": "FP32 FP16 INT32 INT8 BOOL",
    "Trilu": "FP32 FP16 INT32 INT8 BOOL", "Unsqueeze": "FP32 FP16 INT32 INT8 BOOL", "Upsample": "FP32 FP16",
    "Where": "FP32 FP16 INT32 BOOL", "Xor": "BOOL",
}

OPS_TRT10: Dict[str, str] = {
    "Abs": "FP32 FP16 BF16 INT32 INT64", "Acos": "FP32 FP16 BF16", "Acosh": "FP32 FP16 BF16",
    "Add": "FP32 FP16 BF16 INT32 INT64", "And": "BOOL", "ArgMax": "FP32 FP16 BF16 INT32 INT64",
    "ArgMin": "FP32 FP16 BF16 INT32 INT64", "Asin": "FP32 FP16 BF16", "Asinh": "FP32 FP16 BF16",
    "Atan": "FP32 FP16 BF16", "Atanh": "FP32 FP16 BF16", "AveragePool": "FP32 FP16 BF16",
    "BatchNormalization": "FP32 FP16 BF16", "Cast": "FP32 FP16 BF16 INT32 INT64 UINT8 BOOL",
    "CastLike": "FP32 FP16 BF16 INT32 INT64 UINT8 BOOL", "Ceil": "FP32 FP16 BF16", "Celu": "FP32 FP16 BF16",
    "Clip": "FP32 FP16 BF16", "Concat": "FP32 FP16 BF16 INT32 INT64 BOOL",
    "Constant": "FP32 FP16 BF16 INT32 INT64 BOOL", "ConstantOfShape": "FP32 FP16 BF16 INT32 INT64 BOOL",
    "Conv": "FP32 FP16 BF16", "ConvTranspose": "FP32 FP16 BF16", "Cos": "FP32 FP16 BF16", "Cosh": "FP32 FP16 BF16",
    "CumSum": "FP32 FP16 BF16", "DeformConv": "FP32 FP16", "DepthToSpace": "FP32 FP16 BF16 INT32 INT64",
    "DequantizeLinear": "INT8 FP8 INT4", "Div": "FP32 FP16 BF16 INT32 INT64", "Dropout": "FP32 FP16 BF16",
    "Einsum": "FP32 FP16 BF16", "Elu": "FP32 FP16 BF16", "Equal": "FP32 FP16 BF16 INT32 INT64",
    "Erf": "FP32 FP16 BF16", "Exp": "FP32 FP16 BF16", "Expand": "FP32 FP16 BF16 INT32 INT64 BOOL",
    "EyeLike": "FP32 FP16 BF16 INT32 INT64 BOOL", "Flatten": "FP32 FP16 BF16 INT32 INT64 BOOL",
    "Floor": "FP32 FP16 BF16", "GRU": "FP32 FP16 BF16", "Gather": "FP32 FP16 BF16 INT32 INT64 BOOL",
    "GatherElements": "FP32 FP16 BF16 INT32 INT64 BOOL", "GatherND": "FP32 FP16 BF16 INT32 INT64 BOOL",
    "Gelu": "FP32 FP16 BF16 INT8 INT32 INT64", "Gemm": "FP32 FP16 BF16", "GlobalAveragePool": "FP32 FP16 BF16",
    "GlobalLpPool": "FP32 FP16 BF16", "GlobalMaxPool": "FP32 FP16 BF16", "Greater": "FP32 FP16 BF16 INT32 INT64",
    "GreaterOrEqual": "FP32 FP16 BF16 INT32 INT64", "GridSample": "FP32 FP16",
    "GroupNormalization": "FP32 FP16 BF16", "HardSigmoid": "FP32 FP16 BF16", "HardSwish": "FP32 FP16 BF16",
    "Hardmax": "FP32 FP16 BF16", "Identity": "FP32 FP16 BF16 INT32 INT64 BOOL",
    "If": "FP32 FP16 BF16 INT32 INT64 BOOL", "ImageScaler": "FP32 FP16 BF16",
    "InstanceNormalization": "FP32 FP16 BF16", "IsInf": "FP32 FP16 BF16", "IsNaN": "FP32 FP16 BF16 INT32 INT64",
    "LRN": "FP32 FP16 BF16", "LSTM": "FP32 FP16 BF16", "LayerNormalization": "FP32 FP16 BF16",
    "LeakyRelu": "FP32 FP16 BF16", "Less": "FP32 FP16 BF16 INT32 INT64",
    "LessOrEqual": "FP32 FP16 BF16 INT32 INT64", "Log": "FP32 FP16 BF16", "LogSoftmax": "FP32 FP16 BF16",
    "Loop": "FP32 FP16 BF16 INT32 INT64 BOOL", "LpNormalization": "FP32 FP16 BF16", "LpPool": "FP32 FP16 BF16",
    "MatMul": "FP32 FP16 BF16", "Max": "FP32 FP16 BF16 INT32 INT64", "MaxPool": "FP32 FP16 BF16",
    "Mean": "FP32 FP16 BF16 FP8 INT32 INT64", "MeanVarianceNormalization": "FP32 FP16 BF16",
    "Min": "FP32 FP16 BF16 INT32 INT64", "Mish": "FP32 FP16", "Mod": "FP32 FP16 BF16 INT32 INT64",
    "Mul": "FP32 FP16 BF16 INT32 INT64", "Neg": "FP32 FP16 BF16 INT32 INT64", "NonMaxSuppression": "FP32 FP16",
    "NonZero": "FP32 FP16", "Not": "BOOL", "OneHot": "FP32 FP16 BF16 INT32 INT64 BOOL", "Or": "BOOL",
    "PRelu": "FP32 FP16 BF16", "Pad": "FP32 FP16 BF16 INT32 INT64", "ParametricSoftplus": "FP32 FP16 BF16",
    "Pow": "FP32 FP16 BF16", "QuantizeLinear": "FP32 FP16 BF16", "RNN": "FP32 FP16 BF16",
    "RandomNormal": "FP32 FP16 BF16", "RandomNormalLike": "FP32 FP16 BF16", "RandomUniform": "FP32 FP16 BF16",
    "RandomUniformLike": "FP32 FP16 BF16", "Range": "FP32 FP16 BF16 INT32 INT64", "Reciprocal": "FP32 FP16 BF16",
    "ReduceL1": "FP32 FP16 BF16 INT32 INT64", "ReduceL2": "FP32 FP16 BF16 INT32 INT64",
    "ReduceLogSum": "FP32 FP16 BF16 INT32 INT64", "ReduceLogSumExp": "FP32 FP16 BF16 INT32 INT64",
    "ReduceMax": "FP32 FP16 BF16 INT32 INT64", "ReduceMean": "FP32 FP16 BF16 INT32 INT64",
    "ReduceMin": "FP32 FP16 BF16 INT32 INT64", "ReduceProd": "FP32 FP16 BF16 INT32 INT64",
    "ReduceSum": "FP32 FP16 BF16 INT32 INT64", "ReduceSumSquare": "FP32 FP16 BF16 INT32 INT64",
    "Relu": "FP32 FP16 BF16 INT32 INT64", "Reshape": "FP32 FP16 BF16 INT32 INT64 BOOL", "Resize": "FP32 FP16 BF16",
    "ReverseSequence": "FP32 FP16 BF16 INT32 INT64 BOOL", "RoiAlign": "FP32 FP16", "Round": "FP32 FP16 BF16",
    "ScaledTanh": "FP32 FP16 BF16", "Scan": "FP32 FP16 BF16", "Scatter": "FP32 FP16 BF16 INT32 INT64",
    "ScatterElements": "FP32 FP16 BF16 INT32 INT64", "ScatterND": "FP32 FP16 BF16 INT32 INT64",
    "Selu": "FP32 FP16 BF16", "Shape": "FP32 FP16 BF16 INT32 INT64 BOOL", "Shrink": "FP32 FP16 BF16 INT32 INT64",
    "Sigmoid": "FP32 FP16 BF16", "Sign": "FP32 FP16 BF16 INT32 INT64", "Sin": "FP32 FP16 BF16",
    "Sinh": "FP32 FP16 BF16", "Size": "FP32 FP16 BF16 INT32 INT64 BOOL",
    "Slice": "FP32 FP16 BF16 INT32 INT64 BOOL", "Softmax": "FP32 FP16 BF16", "Softplus": "FP32 FP16 BF16",
    "Softsign": "FP32 FP16 BF16", "SpaceToDepth": "FP32 FP16 BF16 INT32 INT64",
    "Split": "FP32 FP16 BF16 INT32 INT64 BOOL", "Sqrt": "FP32 FP16 BF16",
    "Squeeze": "FP32 FP16 BF16 INT32 INT64 BOOL", "Sub": "FP32 FP16 BF16 INT32 INT64",
    "Sum": "FP32 FP16 BF16 INT32 INT64", "Tan": "FP32 FP16 BF16", "Tanh": "FP32 FP16 BF16",
    "ThresholdedRelu": "FP32 FP16 BF16", "Tile": "FP32 FP16 BF16 INT32 INT64 BOOL",
    "TopK": "FP32 FP16 BF16 INT32 INT64", "Transpose": "FP32 FP16 BF16 INT32 INT64 BOOL",
    "Trilu": "FP32 FP16 BF16 INT32 INT64 BOOL", "Unsqueeze": "FP32 FP16 BF16 INT32 INT64 BOOL",
    "Upsample": "FP32 FP16 BF16", "Where": "FP32 FP16 BF16 INT32 INT64 BOOL", "Xor": "BOOL",
}
