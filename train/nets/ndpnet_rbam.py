"""NDP-Net's reference-based attention module (RBAM, Sec. III-C): two RBFRMs (patch sides K = 2 and 4) that
rebuild a feature map from a fixed defect-free reference's features, and an SKNet-style fusion (FFM).

RBFRM (Eqs. 3-5): cut the input features and the reference features into non-overlapping K x K x C patches,
S_ij = cos(p_i, b_j), softmax over j (optionally scaled by a temperature factor `softmax_scale`; the paper has
none, i.e. 1), p_bar_i = sum_j S_ij b_j, put the patches back. In the graph: Reshape/Transpose -> normalise ->
MatMul -> Softmax -> MatMul -> Reshape/Transpose. An input whose height or width is not a multiple of K is
zero-padded to one and cropped back (zero patches have cosine 0 with every reference patch).

The reference features are a buffer (C, h_r, w_r) baked in once the encoder is frozen (`set_reference`); its
size depends on the training image size, so loading resizes it to the stored one (`_load_from_state_dict`).

FFM (Eqs. 6-8): U = F + F_rep2 + F_rep4 -> m x m conv to 64 channels (+ BN + ReLU, not stated in the paper)
-> three m x m convs give C-channel logits per branch -> softmax across the three branches at every element
-> F_out = sum of branch x weight.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

COS_EPS = 1e-6


def to_patches(x: torch.Tensor, k: int) -> torch.Tensor:
    """(N, C, H, W) with H, W multiples of k -> (N, H/k * W/k, C*k*k), patches in row-major order."""
    n, c, h, w = x.shape
    x = x.reshape(n, c, h // k, k, w // k, k).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(n, (h // k) * (w // k), c * k * k)


def from_patches(p: torch.Tensor, k: int, c: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`to_patches`."""
    n = p.shape[0]
    x = p.reshape(n, h // k, w // k, c, k, k).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(n, c, h, w)


def normalise(v: torch.Tensor) -> torch.Tensor:
    return v / torch.sqrt((v * v).sum(dim=-1, keepdim=True) + COS_EPS * COS_EPS)


def reference_patches(reference: torch.Tensor, k: int) -> torch.Tensor:
    """(C, h, w) reference features -> (M, C*k*k) patches; rows/columns beyond a multiple of k are dropped."""
    c, h, w = reference.shape
    hk, wk = (h // k) * k, (w // k) * k
    if hk == 0 or wk == 0:
        raise ValueError(f"reference features {h}x{w} are smaller than the patch side {k}")
    return to_patches(reference[None, :, :hk, :wk], k)[0]


def rbfrm(x: torch.Tensor, reference: torch.Tensor, k: int, softmax_scale: float = 1.0) -> torch.Tensor:
    """Rebuild (N, C, H, W) features from (C, h_r, w_r) reference features with K x K patch attention."""
    n, c, h, w = x.shape
    ph, pw = (-h) % k, (-w) % k
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph))
    hp, wp = h + ph, w + pw
    queries = to_patches(x, k)  # (N, P, D)
    bank = reference_patches(reference, k)  # (M, D)
    sim = torch.matmul(normalise(queries), normalise(bank).transpose(0, 1))  # (N, P, M)
    attn = torch.softmax(sim * softmax_scale if softmax_scale != 1.0 else sim, dim=-1)
    out = from_patches(torch.matmul(attn, bank), k, c, hp, wp)
    return out[:, :, :h, :w] if (ph or pw) else out


class FeatureFusion(nn.Module):
    """SKNet-style fusion of (F, F_rep2, F_rep4) with a per-element softmax over the branches."""

    def __init__(self, channels: int, hidden: int = 64, m: int = 5, branches: int = 3):
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(channels, hidden, m, padding=m // 2), nn.BatchNorm2d(hidden),
                                     nn.ReLU(inplace=True))
        self.logits = nn.ModuleList([nn.Conv2d(hidden, channels, m, padding=m // 2) for _ in range(branches)])

    def weights(self, branches: Sequence[torch.Tensor]) -> torch.Tensor:
        """(B, N, C, H, W) softmax weights over the B branches."""
        u = self.squeeze(sum(branches))
        return torch.softmax(torch.stack([conv(u) for conv in self.logits]), dim=0)

    def forward(self, branches: Sequence[torch.Tensor]) -> torch.Tensor:
        a = self.weights(branches)
        return sum(a[i] * b for i, b in enumerate(branches))


class RBAM(nn.Module):
    """Features (N, C, H, W) -> repaired features: FFM(F, RBFRM_K2(F), RBFRM_K4(F))."""

    def __init__(self, channels: int, ref_size, patch_sides: Sequence[int] = (2, 4), softmax_scale: float = 1.0,
                 m: int = 5, hidden: int = 64):
        super().__init__()
        self.patch_sides = tuple(int(k) for k in patch_sides)
        self.softmax_scale = float(softmax_scale)
        self.register_buffer("reference", torch.zeros(channels, int(ref_size[0]), int(ref_size[1])))
        self.fusion = FeatureFusion(channels, hidden, m, 1 + len(self.patch_sides))

    def set_reference(self, features: torch.Tensor) -> None:
        """Bake the reference features (C, h, w) (or (1, C, h, w)) in."""
        self.reference = features.detach().reshape(features.shape[-3:]).to(self.reference).contiguous()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        stored = state_dict.get(prefix + "reference")
        if stored is not None and stored.dim() == 3 and stored.shape[0] == self.reference.shape[0]:
            self.reference = torch.empty_like(stored, dtype=self.reference.dtype, device=self.reference.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        repaired = [rbfrm(x, self.reference, k, self.softmax_scale) for k in self.patch_sides]
        return self.fusion([x] + repaired)
