"""Seeded bootstrap confidence intervals, paired bootstrap tests and multiple-comparison corrections.

All resampling draws from ``numpy.random.default_rng(seed)``, so a report is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

N_BOOT = 2000
LEVEL = 0.95


def bootstrap_indices(n: int, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """``(n_boot, n)`` int indices of ``n_boot`` resamples with replacement of ``n`` items."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n)) if n else np.zeros((n_boot, 0), dtype=np.int64)


def percentile_interval(replicates: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The percentile bootstrap interval (Efron & Tibshirani 1993, ch. 13) of finite replicates."""
    r = np.asarray(replicates, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size == 0:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    lo, hi = np.quantile(r, [a, 1 - a])
    return float(lo), float(hi)


def bootstrap_mean(values: Any, n_boot: int = N_BOOT, level: float = LEVEL, seed: int = 0) -> dict[str, float]:
    """Mean of ``values`` (NaNs dropped) with its seeded percentile bootstrap CI.

    Returns:
        ``{"n", "mean", "lo", "hi"}``; NaN mean and bounds for n = 0, a zero-width CI for n = 1.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"n": 0, "mean": float("nan"), "lo": float("nan"), "hi": float("nan")}
    idx = bootstrap_indices(v.size, n_boot, seed)
    lo, hi = percentile_interval(v[idx].mean(axis=1), level)
    return {"n": int(v.size), "mean": float(v.mean()), "lo": lo, "hi": hi}


def bootstrap_statistic(
    statistic: Callable[..., float], *arrays: Any, n_boot: int = N_BOOT, level: float = LEVEL, seed: int = 0
) -> dict[str, float]:
    """A statistic of one or more aligned ``(N,)`` arrays with its percentile bootstrap CI.

    ``statistic(*resampled_arrays) -> float`` is called once per replicate (use it for ECE, AURC and
    other non-linear statistics; :func:`bootstrap_mean` is the vectorised fast path for means).
    """
    arrs = [np.asarray(a) for a in arrays]
    n = arrs[0].shape[0]
    if n == 0:
        return {"n": 0, "value": float("nan"), "lo": float("nan"), "hi": float("nan")}
    idx = bootstrap_indices(n, n_boot, seed)
    reps = np.array([statistic(*(a[i] for a in arrs)) for i in idx], dtype=np.float64)
    lo, hi = percentile_interval(reps, level)
    return {"n": int(n), "value": float(statistic(*arrs)), "lo": lo, "hi": hi}


def paired_bootstrap(
    deltas: Any, n_boot: int = N_BOOT, level: float = LEVEL, seed: int = 0
) -> dict[str, float]:
    """Paired bootstrap of per-image deltas ``b_i - a_i``: mean, percentile CI and two-sided p-value.

    The p-value tests a zero mean delta with the null distribution obtained by shifting the
    bootstrap replicates to mean zero (Efron & Tibshirani 1993, sec. 16.4):
    ``p = (1 + #{|m*_b - m| >= |m|}) / (B + 1)``.

    Returns:
        ``{"n", "mean", "lo", "hi", "p"}`` (NaN for n = 0).
    """
    d = np.asarray(deltas, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return {"n": 0, "mean": float("nan"), "lo": float("nan"), "hi": float("nan"), "p": float("nan")}
    m = float(d.mean())
    reps = d[bootstrap_indices(d.size, n_boot, seed)].mean(axis=1)
    lo, hi = percentile_interval(reps, level)
    return {"n": int(d.size), "mean": m, "lo": lo, "hi": hi, "p": shifted_p_value(reps, m)}


def shifted_p_value(replicates: np.ndarray, observed: float) -> float:
    """Two-sided bootstrap p-value of ``observed`` against zero, from its replicates shifted to
    mean zero: ``(1 + #{|r_b - observed| >= |observed|}) / (B + 1)`` (Efron & Tibshirani 1993,
    sec. 16.4), capped at 1."""
    r = np.asarray(replicates, dtype=np.float64)
    extreme = np.abs(r - observed) >= abs(observed) - 1e-15
    return min(1.0, float((1 + extreme.sum()) / (r.size + 1)))


def holm(pvalues: Any) -> np.ndarray:
    """Holm–Bonferroni step-down adjusted p-values (Holm, Scand. J. Statistics 1979).

    ``p_(i)^adj = max_{j <= i} min(1, (m - j + 1) p_(j))`` over the sorted finite p-values; NaNs
    stay NaN and do not count in ``m``. Reject at level ``alpha`` where the adjusted value <= alpha.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adj = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(adj)
    return out


def benjamini_hochberg(pvalues: Any) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (JRSS-B 1995), by ``scipy.stats.false_discovery_control``;
    NaNs stay NaN and do not count."""
    from scipy.stats import false_discovery_control

    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = false_discovery_control(p[ok], method="bh")
    return out
