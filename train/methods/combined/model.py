"""The combined anomaly model: one backbone pass feeds every head (a PatchCore or PaDiM embedding + memory +
upsample/blur); each head's map becomes z-scores of the good images' maps (per pixel or one mean/std per head),
the z-maps are weighted and summed into one map; the image score is its max (or the weighted sum of the heads'
standardised image scores, `score=sum`).

    z_i(x) = (map_i(x) - mean_i(x)) / std_i(x),   map(x) = sum_i w_i z_i(x),   sum_i w_i = 1

The statistics are buffers (fitted by `train.combine` on held-out good images, or by the fitter on the fit images);
in the exported graph they are a Sub and a Mul per head.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import torch
from torch import nn

from train.methods._feature_spec import parse_strides
from train.methods._features import make_backbone
from train.ops.flip_tta import FlipViews
from train.ops.standardize import MapStatistics, floored_inverse_std


class PickLevels(nn.Module):
    """The shared backbone's list of levels -> the levels one head was fitted on (its own strides, in order)."""

    def __init__(self, indices):
        super().__init__()
        self.indices = tuple(int(i) for i in indices)

    def forward(self, levels: List[torch.Tensor]) -> List[torch.Tensor]:
        return [levels[i] for i in self.indices]


class Head(nn.Module):
    """A member method's embedding, memory and scorer on the shared levels: -> (map (N,1,H,W), score or None);
    the score is PatchCore's reweighted one when it has it."""

    def __init__(self, member: nn.Module, pick: PickLevels):
        super().__init__()
        self.pick = pick
        self.embed, self.memory, self.scorer = member.embed, member.memory, member.scorer

    def forward(self, levels: List[torch.Tensor]):
        out = self.memory(self.embed(self.pick(levels)))
        patch_map, score = out if isinstance(out, tuple) else (out, None)
        return self.scorer(patch_map, score)[0], score


class MemberBackbone(nn.Module):
    """The shared backbone as one member sees it (for that member's own fitter): its levels only."""

    def __init__(self, backbone: nn.Module, pick: PickLevels):
        super().__init__()
        self.backbone, self.pick = backbone, pick

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        return self.pick(self.backbone(x))


class MemberView(nn.Module):
    """What a member's fitter reads (`backbone`, `embed`, `memory`) over the combined model's modules."""

    def __init__(self, backbone: nn.Module, head: Head):
        super().__init__()
        self.backbone = MemberBackbone(backbone, head.pick)
        self.embed, self.memory = head.embed, head.memory


class CombinedModel(nn.Module):
    """float RGB (N,3,H,W) in [0,1] -> (combined map (N,1,H,W), score (N,))."""

    def __init__(self, image_size: Tuple[int, int], options: Dict[str, Any]):
        super().__init__()
        from train.methods import get_method

        members = options["members"]
        self.member_methods = [m["method"] for m in members]
        per_member = [parse_strides(m["options"]["layers"]) for m in members]
        strides = tuple(sorted({s for ss in per_member for s in ss}))
        self.backbone = make_backbone(members[0]["options"], strides, image_size)
        heads = []
        for member, own in zip(members, per_member):
            model = get_method(member["method"]).build_model(None, image_size, member["options"])
            del model.backbone  # one backbone for all heads
            heads.append(Head(model, PickLevels(strides.index(s) for s in own)))
        self.heads = nn.ModuleList(heads)
        k, (h, w) = len(heads), (int(image_size[0]), int(image_size[1]))
        self.register_buffer("pixel_mean", torch.zeros(1, k, h, w))
        self.register_buffer("pixel_inv_std", torch.ones(1, k, h, w))
        self.register_buffer("global_mean", torch.zeros(1, k, 1, 1))
        self.register_buffer("global_inv_std", torch.ones(1, k, 1, 1))
        self.register_buffer("score_mean", torch.zeros(1, k))
        self.register_buffer("score_inv_std", torch.ones(1, k))
        weights = options["weights"] or [1.0] * k
        if len(weights) != k:
            from train.errors import ConfigError

            raise ConfigError(f"option weights has {len(weights)} values for {k} heads")
        w = torch.tensor([float(v) for v in weights]) / float(sum(weights))
        self.register_buffer("weights", w.view(1, k, 1, 1), persistent=False)  # from the options
        self.standardize, self.score_mode = str(options["standardize"]), str(options["score"])
        self.flips = FlipViews(options["flip"])

    def member_view(self, index: int) -> MemberView:
        return MemberView(self.backbone, self.heads[index])

    def head_outputs(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(N,3,H,W) -> every head's own map (N, k, H, W) and image score (N, k), before standardisation."""
        levels = self.backbone(self.flips.expand(image))
        maps, scores = [], []
        for head in self.heads:
            amap, score = head(levels)
            amap = self.flips.merge(amap)
            maps.append(amap)
            scores.append(amap.amax(dim=(1, 2, 3)) if score is None else self.flips.merge_scores(score))
        return torch.cat(maps, dim=1), torch.stack(scores, dim=1)

    def set_statistics(self, stats: Dict[str, torch.Tensor]) -> None:
        """Fitted statistics (`HeadStatistics.result()`) into the buffers."""
        for name, value in stats.items():
            getattr(self, name).copy_(value.reshape(getattr(self, name).shape))

    def forward(self, image: torch.Tensor):
        maps, scores = self.head_outputs(image)
        if self.standardize == "pixel":
            z = (maps - self.pixel_mean) * self.pixel_inv_std
        else:
            z = (maps - self.global_mean) * self.global_inv_std
        combined = (z * self.weights).sum(dim=1, keepdim=True)
        if self.score_mode == "sum":
            score = ((scores - self.score_mean) * self.score_inv_std * self.weights[:, :, 0, 0]).sum(dim=1)
        else:
            score = combined.amax(dim=(1, 2, 3))
        return combined, score


class HeadStatistics:
    """Each head's map statistics over good images (`train.ops.standardize.MapStatistics`, one per head): per
    pixel, over all pixels, and of its image score."""

    def __init__(self) -> None:
        self.heads: List[MapStatistics] = []
        self.scores: List[torch.Tensor] = []

    @property
    def n(self) -> int:
        return self.heads[0].n if self.heads else 0

    def update(self, maps: torch.Tensor, scores: torch.Tensor) -> None:
        """maps (B, k, H, W), scores (B, k) of good images."""
        if not self.heads:
            self.heads = [MapStatistics() for _ in range(maps.shape[1])]
        for index, stats in enumerate(self.heads):
            stats.update(maps[:, index:index + 1])
        self.scores.append(scores.detach().to("cpu", torch.float64))

    def result(self) -> Dict[str, torch.Tensor]:
        if self.n < 2:
            raise ValueError(f"need the maps of at least 2 good images, got {self.n}")
        pixel = [stats.result() for stats in self.heads]
        pooled = torch.tensor([stats.pooled() for stats in self.heads], dtype=torch.float64)  # (k, 2)
        s = torch.cat(self.scores)
        return {"pixel_mean": torch.stack([mean for mean, _ in pixel]),
                "pixel_inv_std": torch.stack([floored_inverse_std(std) for _, std in pixel]),
                "global_mean": pooled[:, 0].float(),
                "global_inv_std": (1.0 / torch.clamp(pooled[:, 1], min=1e-12)).float(),
                "score_mean": s.mean(0).float(), "score_inv_std": (1.0 / torch.clamp(s.std(0), min=1e-12)).float()}


def fit_statistics(model: CombinedModel, batches, device, progress: bool = False, desc: str = "head statistics"
                   ) -> int:
    """Fit the model's head statistics on good images (`batches`: float RGB (B,3,H,W) in [0,1]); returns the
    number of images."""
    from tqdm import tqdm

    stats = HeadStatistics()
    model.to(device).eval()
    with torch.no_grad():
        for batch in tqdm(batches, desc=desc, unit="batch", disable=not progress, leave=False):
            maps, scores = model.head_outputs(batch.to(device, torch.float32))
            stats.update(maps, scores)
    model.set_statistics(stats.result())
    return stats.n
