"""A threshold that a few bad "good" images cannot move far, and how sure it is (numpy and math only).

The plain rule, the (1 - F) quantile of the good scores, is set by the top F of them: with 150 images and
F = 0.01 by the top two. When a few of the "good" images are not good (a mislabelled part, a real change of the
line), the quantile lands on them and the threshold jumps far above every other good part: the line then
misses most defects while the calibration report looks fine. Three pieces guard against that:

- `flag_outliers`: good scores far above the rest, in robust units: (score - median) / (1.4826 * MAD) above
  `z` (default 5; a normal sample of 1000 reaches about 3.3), from `MIN_TAIL_SCORES` (20) images on. They are
  reported for a person to look at and left out of the estimate.
- `fit_gpd` / `tail_quantile`: a generalised Pareto model of the upper tail (peaks over a threshold u, the
  `tail_fraction` top scores, at least `MIN_TAIL` of them), fitted by probability-weighted moments (Hosking &
  Wallis 1987), which needs no optimiser and is stable for small samples. The (1 - F) quantile then comes
  from the model, P(score > x) = zeta * (1 - k (x - u) / sigma)^(1/k), zeta = share of scores above u, so it
  extrapolates past the largest score instead of interpolating between the top two.
- `clopper_pearson`: the exact binomial interval of the false-alarm rate that k of n good images at or above
  a threshold imply (k = 0 of 150 still allows up to 2.4 % at 95 %).

`robust_threshold` puts them together and says which estimate it took and why.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence

import numpy as np

#: robust z-score above which a good image is flagged as an outlier
OUTLIER_Z = 5.0
#: the tail model needs at least this many scores above u, and this many scores in all
MIN_TAIL = 5
MIN_TAIL_SCORES = 20
#: with fewer good images expected above the quantile, the plain quantile is a poor estimate
MIN_EXPECTED_ABOVE = 5
#: PWM estimates exist for a shape k > -0.5 (a tail heavier than that has no finite variance)
MIN_SHAPE = -0.45
ESTIMATES = ("auto", "quantile", "tail")


def flag_outliers(scores: Sequence[float], z: float = OUTLIER_Z) -> np.ndarray:
    """Boolean mask of scores above median + z * 1.4826 * MAD (the upper side only: low is good)."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    med = float(np.median(s))
    mad = 1.4826 * float(np.median(np.abs(s - med)))
    if mad <= 0.0:
        mad = float(np.std(s)) or 1.0
    return (s - med) / mad > float(z)


def robust_z(scores: Sequence[float], reference: Sequence[float]) -> np.ndarray:
    ref = np.asarray(reference, dtype=np.float64)
    med = float(np.median(ref))
    mad = 1.4826 * float(np.median(np.abs(ref - med))) or float(np.std(ref)) or 1.0
    return (np.asarray(scores, dtype=np.float64) - med) / mad


def fit_gpd(excesses: Sequence[float]) -> Dict[str, float]:
    """Generalised Pareto fit of non-negative excesses by probability-weighted moments: {k, sigma} in
    Hosking's parametrisation, F(y) = 1 - (1 - k y / sigma)^(1/k) (k < 0: heavy tail, k = 0: exponential)."""
    y = np.sort(np.asarray(excesses, dtype=np.float64).reshape(-1))
    n = y.size
    if n < 2:
        raise ValueError(f"a tail fit needs at least 2 excesses, got {n}")
    p = (np.arange(1, n + 1) - 0.35) / n  # plotting positions of the ascending sample
    a0 = float(y.mean())
    a1 = float(np.mean(y * (1.0 - p)))
    if a0 <= 0.0 or a0 - 2.0 * a1 <= 0.0:
        return {"k": 0.0, "sigma": max(a0, 1e-12)}
    k = a0 / (a0 - 2.0 * a1) - 2.0
    sigma = 2.0 * a0 * a1 / (a0 - 2.0 * a1)
    if k < MIN_SHAPE:  # outside PWM's range: keep the shape at its edge, the scale from the mean
        k = MIN_SHAPE
        sigma = a0 * (1.0 + k)
    return {"k": float(k), "sigma": float(max(sigma, 1e-12))}


def tail_quantile(scores: Sequence[float], exceed: float, tail_fraction: float = 0.2) -> Dict[str, Any]:
    """The score exceeded with probability `exceed` under a GPD model of the top `tail_fraction` of `scores`:
    {value, u, n_tail, k, sigma}."""
    s = np.sort(np.asarray(scores, dtype=np.float64).reshape(-1))
    n = s.size
    n_tail = max(MIN_TAIL, int(math.ceil(tail_fraction * n)))
    if n < MIN_TAIL_SCORES or n_tail >= n:
        raise ValueError(f"a tail model needs at least {MIN_TAIL_SCORES} scores, got {n}")
    u = float(s[n - n_tail - 1])  # the largest score below the tail
    fit = fit_gpd(s[n - n_tail:] - u)
    zeta = n_tail / n
    q = min(float(exceed) / zeta, 1.0)
    k, sigma = fit["k"], fit["sigma"]
    y = -sigma * math.log(q) if abs(k) < 1e-9 else sigma * (1.0 - q ** k) / k
    return {"value": u + y, "u": u, "n_tail": n_tail, "k": k, "sigma": sigma}


# ------------------------------------------------------------------------------------------- intervals
def _binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space."""
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 1.0 if k >= n else 0.0
    lp, lq = math.log(p), math.log1p(-p)
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq
             for i in range(0, k + 1)]
    m = max(terms)
    return min(1.0, math.exp(m) * sum(math.exp(t - m) for t in terms))


def _solve(f, target: float) -> float:
    """p in [0, 1] with f(p) = target for a decreasing f, by bisection."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if f(mid) > target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def clopper_pearson(k: int, n: int, level: float = 0.95) -> Dict[str, float]:
    """Exact two-sided interval {low, high} of a rate seen k times in n trials."""
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    alpha = 1.0 - float(level)
    # low: P(X >= k) = alpha/2, i.e. P(X <= k-1) = 1 - alpha/2; high: P(X <= k) = alpha/2 (both fall with p)
    low = 0.0 if k == 0 else _solve(lambda p: _binom_cdf(k - 1, n, p), 1.0 - alpha / 2.0)
    high = 1.0 if k == n else _solve(lambda p: _binom_cdf(k, n, p), alpha / 2.0)
    return {"low": float(low), "high": float(high), "level": float(level)}


# ------------------------------------------------------------------------------------------- the choice
def robust_threshold(scores: Sequence[float], target_fpr: float, estimate: str = "auto",
                     outlier_z: Optional[float] = OUTLIER_Z) -> Dict[str, Any]:
    """The threshold for `target_fpr` from good `scores`, robust to a few outliers: {value, estimate, why,
    quantile, tail (or None), outliers (indices), kept, fpr_interval, ...}. `estimate`: "quantile" (plain
    numpy quantile of the kept scores), "tail" (GPD model), "auto" (the tail model when outliers were found or
    fewer than MIN_EXPECTED_ABOVE kept images are expected above the quantile, and it can be fitted)."""
    if estimate not in ESTIMATES:
        raise ValueError(f"estimate must be one of {ESTIMATES}, got {estimate!r}")
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    f = float(target_fpr)
    # a median and MAD of a handful of scores are themselves noisy: flag only from MIN_TAIL_SCORES images on
    can_flag = outlier_z is not None and s.size >= MIN_TAIL_SCORES
    flagged = flag_outliers(s, outlier_z) if can_flag else np.zeros(s.size, bool)
    kept = s[~flagged]
    plain_all = float(np.quantile(s, 1.0 - f))
    plain_kept = float(np.quantile(kept, 1.0 - f))
    try:
        tail: Optional[Dict[str, Any]] = tail_quantile(kept, f)
        tail_error = None
    except ValueError as e:
        tail, tail_error = None, str(e)
    expected_above = kept.size * f
    n_out = int(flagged.sum())
    if estimate == "tail" and tail is None:
        raise ValueError(f"--estimate tail: {tail_error}")
    if estimate == "tail":
        chosen, why = "tail", "asked for (--estimate tail)"
    elif estimate == "quantile":
        chosen, why = "quantile", "asked for (--estimate quantile)"
    elif tail is not None and n_out:
        chosen, why = "tail", (f"{n_out} good image(s) score far above the rest (robust z > {outlier_z:g}): the "
                               f"plain quantile would be set by them; they are left out and reported")
    elif tail is not None and expected_above < MIN_EXPECTED_ABOVE:
        chosen, why = "tail", (f"only {expected_above:.1f} of {kept.size} images are expected above the "
                               f"{1 - f:.4g} quantile: the tail model extrapolates where the quantile interpolates "
                               f"between the top few")
    else:
        chosen = "quantile"
        why = (f"{expected_above:.1f} images expected above it: the empirical quantile is well supported"
               if tail is not None else f"the tail model cannot be fitted ({tail_error}); plain quantile")
        if n_out:
            why += f"; {n_out} outlying image(s) left out"
    value = tail["value"] if chosen == "tail" else plain_kept
    above = int(np.sum(kept >= value))
    return {
        "value": float(value), "estimate": chosen, "why": why, "target_fpr": f,
        "quantile": plain_kept, "quantile_all_images": plain_all, "tail": tail, "tail_error": tail_error,
        "outliers": np.flatnonzero(flagged).tolist(), "outlier_z": outlier_z, "kept": int(kept.size),
        "kept_at_or_above": above, "fpr_interval": clopper_pearson(above, int(kept.size)),
    }


__all__ = ["OUTLIER_Z", "ESTIMATES", "flag_outliers", "robust_z", "fit_gpd", "tail_quantile", "clopper_pearson",
           "robust_threshold"]
