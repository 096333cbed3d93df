"""Is a threshold plausible for its model? A manifest's threshold edited to 1e308 (or a --threshold typo) judges
every frame good without a word; the calibration recorded what the good images scored, so a threshold far
outside that range is reported. Stdlib only."""
from __future__ import annotations

from typing import Any, Optional

#: how many spreads of the good scores a threshold may lie beyond their recorded range before it is reported
SPREADS_ALLOWED = 20.0


def implausible_threshold(value: float, manifest: Any) -> Optional[str]:
    """A warning when `value` lies far outside the good scores recorded by the manifest's calibration
    (`threshold_provenance.scores`, else the threshold's normalisation); None when it is plausible or nothing
    was recorded to compare with."""
    prov = getattr(manifest, "threshold_provenance", None)
    scores = dict(prov.scores) if prov is not None and prov.scores else {}
    norm = manifest.threshold.normalization if manifest.threshold is not None else None
    mean = scores.get("good_mean", norm.good_mean if norm is not None else None)
    if mean is None:
        return None
    std = float(scores.get("good_std", norm.good_std if norm is not None else 0.0) or 0.0)
    lo, hi = float(scores.get("good_min", mean)), float(scores.get("good_max", mean))
    spread = max(std, hi - lo, abs(float(mean)) * 1e-3, 1e-12)
    low, high = lo - SPREADS_ALLOWED * spread, hi + SPREADS_ALLOWED * spread
    if low <= float(value) <= high:
        return None
    judged = "good" if float(value) > high else "anomalous"
    return (f"threshold {float(value):.6g} is far outside the scores of the calibration's good images "
            f"({lo:.6g} .. {hi:.6g}, mean {float(mean):.6g}): nearly every frame will be judged {judged}; "
            f"recalibrate with `python -m calibration.threshold` or check the manifest")


__all__ = ["implausible_threshold", "SPREADS_ALLOWED"]
