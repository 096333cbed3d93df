"""High-pass inputs of FAIR: frequency-domain filters (Butterworth, Gaussian, ideal) and Sobel gradients.

Every module here takes the RGB batch (N, 3, H, W) in [0, 1], converts it to gray (BT.601, `color.rgb_to_gray`)
and returns (N, out_channels, H, W); the network's first conv reads `out_channels`.

Frequency filters. The paper filters the centred spectrum:
    y = Re( ifft2( ifftshift( Hc * fftshift( fft2(x) ) ) ) )
with Hc a function of the distance D to the centre of the shifted spectrum. We never call an FFT: TensorRT's
ONNX parser (8.5 to 10.x) has no DFT op, and for a fixed image size the filter is a fixed linear map, so it is
written as four matrix products with constant real DFT matrices.

Derivation. Hc depends on (k1^2 + k2^2) only, so the unshifted transfer function Hu is even in each frequency
axis on its own (Hu[k1, k2] = Hu[-k1, k2] = Hu[k1, -k2], indices mod M and N). Then the impulse response is a
product of cosines, h[a, b] ~ sum_k Hu[k] cos(2 pi k1 a / M) cos(2 pi k2 b / N), and expanding cos(p - q) in the
convolution gives, with C/S the cosine/sine DFT matrices,
    y = [Cm; Sm]^T ( [[Hu, Hu], [Hu, Hu]] * ( [Cm; Sm] x [Cn, Sn] ) ) [Cn, Sn]^T  / (M N)
i.e. y = L^T (H2 * (L x R)) R^T with L = [Cm; Sm] / sqrt(M) (2M x M) and R = [Cn, Sn] / sqrt(N) (N x 2N).
Splitting 1/(M N) as orthonormal 1/sqrt(M) and 1/sqrt(N) on each side keeps the intermediate values at the
image's own scale: unnormalised, the DC term of a 256 x 256 white image is 65536, beyond FP16's 65504.

Centre. The shifted spectrum has its zero frequency at index (M // 2, N // 2) (numpy's fftshift), so D is
measured from there; for even sizes that is the paper's (M/2, N/2), and for odd sizes it keeps D = 0 exactly
at DC, so every filter removes the mean and Hu stays even (the identity above needs that).

Sobel. OpenCV's `cv2.Sobel` kernels (ksize 3 or 5, first derivative, no normalisation) as a correlation with
'reflect' padding, which is OpenCV's default border BORDER_REFLECT_101 (mirror without repeating the edge).
"""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from train.errors import ConfigError
from train.ops.color import rgb_to_gray

FREQUENCY_KINDS = ("bhpf", "ghpf", "ihpf")
SOBEL_VARIANTS = ("sobel-xy3", "sobel-x3", "sobel-y3", "sobel-xy5", "sobel-x5", "sobel-y5")
HIGHPASS_NAMES = FREQUENCY_KINDS + SOBEL_VARIANTS


def centred_transfer(size: Tuple[int, int], kind: str = "bhpf", d0: float = 30.0, order: int = 2) -> np.ndarray:
    """The centred transfer function Hc (float64, shape size), zero frequency at (M // 2, N // 2)."""
    if kind not in FREQUENCY_KINDS:
        raise ConfigError(f"unknown frequency high-pass {kind!r}; known: {', '.join(FREQUENCY_KINDS)}")
    if not d0 > 0:
        raise ConfigError(f"high-pass cut-off d0 must be > 0 pixels, got {d0}")
    m, n = size
    u = np.arange(m, dtype=np.float64)[:, None] - m // 2
    v = np.arange(n, dtype=np.float64)[None, :] - n // 2
    d = np.sqrt(u * u + v * v)
    if kind == "ihpf":
        return (d > d0).astype(np.float64)
    if kind == "ghpf":
        return 1.0 - np.exp(-(d * d) / (2.0 * d0 * d0))
    # Butterworth: 1 / (1 + (d0 / D)^(2n)), defined as 0 at D = 0 (the limit).
    with np.errstate(divide="ignore"):
        ratio = np.where(d > 0, d0 / np.where(d > 0, d, 1.0), np.inf)
    return np.where(d > 0, 1.0 / (1.0 + ratio ** (2 * order)), 0.0)


def _cos_sin(m: int) -> Tuple[np.ndarray, np.ndarray]:
    """Cosine and sine DFT matrices of size m (symmetric), angles reduced mod m first for accuracy."""
    k = np.arange(m)
    angle = 2.0 * np.pi * ((k[:, None] * k[None, :]) % m) / m
    return np.cos(angle), np.sin(angle)


class FrequencyHighPass(nn.Module):
    """Frequency-domain high-pass of the gray image, (N, 3, H, W) RGB -> (N, 1, H, W), as constant matmuls."""

    out_channels = 1

    def __init__(self, image_size: Tuple[int, int], kind: str = "bhpf", d0: float = 30.0, order: int = 2):
        super().__init__()
        m, n = (int(s) for s in image_size)
        if m < 2 or n < 2:
            raise ConfigError(f"high-pass image size must be at least 2 x 2, got {image_size}")
        self.image_size = (m, n)
        self.kind, self.d0, self.order = kind, float(d0), int(order)
        hc = centred_transfer((m, n), kind, d0, order)
        hu = np.fft.ifftshift(hc)  # the same filter in the unshifted (fft2) frequency order
        cm, sm = _cos_sin(m)
        cn, sn = _cos_sin(n)
        left = np.concatenate([cm, sm], axis=0) / math.sqrt(m)  # (2M, M)
        right = np.concatenate([cn, sn], axis=1) / math.sqrt(n)  # (N, 2N)
        as32 = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(torch.float32)  # noqa: E731
        self.register_buffer("left", as32(left), persistent=False)
        self.register_buffer("right", as32(right), persistent=False)
        # Transposes stored too, so the exported graph holds plain constants and no Transpose nodes.
        self.register_buffer("left_t", as32(left.T), persistent=False)
        self.register_buffer("right_t", as32(right.T), persistent=False)
        self.register_buffer("transfer", as32(np.tile(hu, (2, 2))), persistent=False)  # (2M, 2N)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        gray = rgb_to_gray(rgb)
        if not torch.jit.is_tracing() and tuple(gray.shape[-2:]) != self.image_size:
            raise ConfigError(
                f"high-pass built for {self.image_size[0]}x{self.image_size[1]} images got "
                f"{gray.shape[-2]}x{gray.shape[-1]}; build it with the model's image size"
            )
        spec = torch.matmul(torch.matmul(self.left, gray), self.right)  # (N, 1, 2M, 2N): cos/sin coefficients
        return torch.matmul(torch.matmul(self.left_t, spec * self.transfer), self.right_t)

    def extra_repr(self) -> str:
        return f"kind={self.kind}, d0={self.d0}, order={self.order}, image_size={self.image_size}"


def sobel_kernels(ksize: int) -> Tuple[np.ndarray, np.ndarray]:
    """OpenCV's first-derivative Sobel kernels (gx, gy) for ksize 3 or 5, as correlation kernels."""
    if ksize == 3:
        smooth, deriv = np.array([1.0, 2.0, 1.0]), np.array([-1.0, 0.0, 1.0])
    elif ksize == 5:
        smooth, deriv = np.array([1.0, 4.0, 6.0, 4.0, 1.0]), np.array([-1.0, -2.0, 0.0, 2.0, 1.0])
    else:
        raise ConfigError(f"Sobel kernel size must be 3 or 5, got {ksize}")
    gx = np.outer(smooth, deriv)  # rows smooth, columns differentiate
    return gx, gx.T


class SobelHighPass(nn.Module):
    """Sobel gradients of the gray image: (N, 3, H, W) RGB -> (N, 1 or 2, H, W) as (gx, gy)."""

    def __init__(self, variant: str = "sobel-xy3"):
        super().__init__()
        if variant not in SOBEL_VARIANTS:
            raise ConfigError(f"unknown Sobel variant {variant!r}; known: {', '.join(SOBEL_VARIANTS)}")
        self.variant = variant
        axes, ksize = variant[len("sobel-"):-1], int(variant[-1])
        gx, gy = sobel_kernels(ksize)
        kernels = [k for a, k in (("x", gx), ("y", gy)) if a in axes]
        self.out_channels = len(kernels)
        self.pad = ksize // 2
        weight = torch.from_numpy(np.stack(kernels)[:, None]).to(torch.float32)  # (out, 1, k, k)
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        gray = rgb_to_gray(rgb)
        p = self.pad
        return F.conv2d(F.pad(gray, (p, p, p, p), mode="reflect"), self.weight)

    def extra_repr(self) -> str:
        return f"variant={self.variant}"


def make_highpass(name: str, image_size: Tuple[int, int], d0: float = 30.0, order: int = 2) -> nn.Module:
    """The high-pass module called `name` (one of HIGHPASS_NAMES) for images of `image_size` (H, W).
    `d0` (cut-off) and `order` (Butterworth) apply to the frequency filters only."""
    if name in FREQUENCY_KINDS:
        return FrequencyHighPass(image_size, kind=name, d0=d0, order=order)
    if name in SOBEL_VARIANTS:
        return SobelHighPass(name)
    raise ConfigError(f"unknown high-pass filter {name!r}; known: {', '.join(HIGHPASS_NAMES)}")
