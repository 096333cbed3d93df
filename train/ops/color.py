"""Colour conversions written with export-friendly ops: RGB -> gray (BT.601) and sRGB -> CIELAB (D65).

Gray equals `cv2.COLOR_RGB2GRAY`. Lab is the exact CIE formula with the CIE D65 white point, as
`skimage.color.rgb2lab` and kornia's `rgb_to_lab` (which FAIR's reference scoring uses) compute it; the tests
hold it to scikit-image. OpenCV's float `COLOR_RGB2Lab` is *not* the reference: it interpolates a coarse
look-up table (in OpenCV 5.0 it differs from the exact formula by up to ~0.6 in a*), so it is only a
loose sanity check in the tests.

The 3x3 colour matrix is applied as a 1x1 convolution (an ONNX Conv, which every backend fuses well) rather
than an einsum, which TensorRT's parser handles only in restricted forms.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

# ITU-R BT.601 luma weights, as cv2.COLOR_RGB2GRAY.
GRAY_WEIGHTS = (0.299, 0.587, 0.114)

# Linear sRGB -> XYZ (D65), the coefficients shared by OpenCV, scikit-image and kornia, and the CIE D65
# 2-degree white point (X_n, Y_n, Z_n) of scikit-image and kornia (OpenCV rounds it to 0.950456, 1.088754).
_RGB_TO_XYZ = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
_WHITE_D65 = (0.95047, 1.0, 1.08883)

# CIELAB's f(t): cube root above (6/29)^3, a line below; the rounded constants of the three libraries.
_LAB_EPS = 0.008856
_LAB_SLOPE = 7.787
_LAB_OFFSET = 16.0 / 116.0


def _check_rgb(x: torch.Tensor, what: str) -> None:
    # Eager-mode check only: while tracing for export the shapes are symbolic and the check would be baked in.
    if not torch.jit.is_tracing() and (x.dim() != 4 or x.shape[1] != 3):
        raise ValueError(f"{what} needs an RGB batch (N, 3, H, W), got shape {tuple(x.shape)}")


def rgb_to_gray(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB -> (N, 1, H, W) luma, 0.299 R + 0.587 G + 0.114 B."""
    _check_rgb(x, "rgb_to_gray")
    r, g, b = GRAY_WEIGHTS
    # Plain multiply-adds: three elementwise ops fold into one kernel on every backend.
    return x[:, 0:1] * r + x[:, 1:2] * g + x[:, 2:3] * b


def _srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    # The sRGB transfer curve. Both branches of torch.where are evaluated, so the power branch sees its input
    # clamped to where it applies: a negative base would give NaN (and a NaN gradient) even where unused.
    hi = torch.pow((torch.clamp(x, min=0.04045) + 0.055) / 1.055, 2.4)
    return torch.where(x > 0.04045, hi, x / 12.92)


def _lab_f(t: torch.Tensor) -> torch.Tensor:
    # Cube root as pow(., 1/3) on a clamped input (ONNX has no Cbrt; pow of a negative base is NaN).
    hi = torch.pow(torch.clamp(t, min=_LAB_EPS), 1.0 / 3.0)
    return torch.where(t > _LAB_EPS, hi, _LAB_SLOPE * t + _LAB_OFFSET)


def _xyz_over_white() -> torch.Tensor:
    """The RGB -> XYZ matrix with each row divided by the white point, as a (3, 3, 1, 1) conv weight."""
    m = torch.tensor(_RGB_TO_XYZ, dtype=torch.float64)
    m = m / torch.tensor(_WHITE_D65, dtype=torch.float64)[:, None]
    return m.reshape(3, 3, 1, 1)


# Built once at import (float64; cast to the input's dtype per call), so tracing sees a constant, not torch.tensor.
_XYZ_WEIGHT = _xyz_over_white()


def _lab_f_of_rgb(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) sRGB -> (f(X/Xn), f(Y/Yn), f(Z/Zn)), the three values L*, a* and b* are linear in."""
    lin = _srgb_to_linear(x)
    xyz = F.conv2d(lin, _XYZ_WEIGHT.to(dtype=x.dtype, device=x.device))  # X/Xn, Y/Yn, Z/Zn
    return _lab_f(xyz)


# L* = 116 f(Y) - 16 (both branches, as skimage and kornia; OpenCV's 903.3 Y is the same line, 116 * 7.787),
# a* = 500 (f(X) - f(Y)), b* = 200 (f(Y) - f(Z)): one 1x1 conv with a bias. One Conv instead of slices and a
# Concat matters for speed: OpenVINO runs Slice/Concat on 1-channel planes with slow reference kernels.
_LAB_WEIGHT = torch.tensor(
    [[0.0, 116.0, 0.0], [500.0, -500.0, 0.0], [0.0, 200.0, -200.0]], dtype=torch.float64
).reshape(3, 3, 1, 1)
_LAB_BIAS = torch.tensor([-16.0, 0.0, 0.0], dtype=torch.float64)


def rgb_to_lab(x: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1], (N, 3, H, W) -> CIELAB (N, 3, H, W): L* in [0, 100], a*, b* (D65 white).

    Matches `skimage.color.rgb2lab` (float32 rounding aside). Inputs outside [0, 1] are not clamped here
    (callers decide); the sRGB curve is then extended linearly below 0.
    """
    _check_rgb(x, "rgb_to_lab")
    f = _lab_f_of_rgb(x)
    return F.conv2d(f, _LAB_WEIGHT.to(dtype=x.dtype, device=x.device), _LAB_BIAS.to(dtype=x.dtype, device=x.device))


def rgb_to_ab(x: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1], (N, 3, H, W) -> the CIELAB chroma channels a*, b* (N, 2, H, W), as rgb_to_lab(x)[:, 1:]."""
    _check_rgb(x, "rgb_to_ab")
    f = _lab_f_of_rgb(x)
    return F.conv2d(f, _LAB_WEIGHT[1:].to(dtype=x.dtype, device=x.device))
