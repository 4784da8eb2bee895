"""Calibration and selective-prediction metrics of the confidence gate: pure NumPy functions.

Every function takes ``conf``, ``(N,)`` float confidences in [0, 1] (finite), and ``correct``,
``(N,)`` bool labels: True where the extraction is *acceptable* (the image has a subject and its IoU
reaches the acceptance threshold). Invalid input raises ``ValueError`` naming the problem.
"""

from __future__ import annotations

from typing import Any

import numpy as np

N_BINS = 15


def check_confidences(conf: Any, ids: Any = None, what: str = "confidence") -> np.ndarray:
    """Return ``conf`` as float64 ``(N,)``; ``ValueError`` naming the ids of NaN, infinite or
    out-of-[0, 1] values (first 20, with the count)."""
    c = np.asarray(conf, dtype=np.float64).reshape(-1)
    bad = ~np.isfinite(c) | (c < 0) | (c > 1)
    if bad.any():
        idx = np.flatnonzero(bad)
        names = [str(ids[i]) if ids is not None else str(i) for i in idx[:20]]
        kinds = sorted({"NaN" if np.isnan(c[i]) else "infinite" if np.isinf(c[i]) else "outside [0, 1]" for i in idx})
        raise ValueError(f"{len(idx)} {what} value(s) {'/'.join(kinds)} for ids {names}{' ...' if len(idx) > 20 else ''}")
    return c


def _prep(conf: Any, correct: Any) -> tuple[np.ndarray, np.ndarray]:
    c = check_confidences(conf)
    y = np.asarray(correct).reshape(-1).astype(bool)
    if c.shape != y.shape:
        raise ValueError(f"conf and correct differ in length: {c.size} vs {y.size}")
    return c, y


def bin_ids(conf: np.ndarray, n_bins: int = N_BINS, binning: str = "width") -> np.ndarray:
    """Bin index ``(N,)`` int of each confidence.

    ``width``: equal-width bins ``[k/n, (k+1)/n)``, the last one closed (1.0 falls in bin n-1).
    ``mass``: equal-mass bins (Nixon et al., "Measuring Calibration in Deep Learning", CVPR-W 2019)
    with edges at the confidences' quantiles ``np.quantile(conf, k / n_bins)`` (linear
    interpolation), a confidence going to bin ``#{interior edges <= c}``. Bins are set by value, so
    tied confidences always share a bin and the result does not depend on row order; with ties the
    bins' sizes may differ (and a bin may be empty), where a rank split would cut a tie in two.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if binning == "width":
        return np.minimum((conf * n_bins).astype(np.int64), n_bins - 1)
    if binning == "mass":
        if conf.size == 0:
            return np.zeros(0, dtype=np.int64)
        edges = np.quantile(conf, np.arange(1, n_bins) / n_bins)
        return np.searchsorted(edges, conf, side="right").astype(np.int64)
    raise ValueError(f"binning must be 'width' or 'mass', got {binning!r}")


def reliability_diagram(conf: Any, correct: Any, n_bins: int = N_BINS, binning: str = "width") -> dict[str, np.ndarray]:
    """Per-bin data of the reliability diagram.

    Returns:
        ``count`` (int), ``mean_confidence``, ``accuracy`` (share acceptable), ``gap``
        (``|accuracy - mean_confidence|``), and ``lower``/``upper`` (the bin's confidence range:
        the fixed edges for ``width``, the smallest and largest member for ``mass``), each
        ``(n_bins,)``; NaN for an empty bin.
    """
    c, y = _prep(conf, correct)
    b = bin_ids(c, n_bins, binning)
    count = np.bincount(b, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(b, weights=c, minlength=n_bins) / count
        acc = np.bincount(b, weights=y.astype(np.float64), minlength=n_bins) / count
    if binning == "width":
        lower = np.arange(n_bins) / n_bins
        upper = np.arange(1, n_bins + 1) / n_bins
    else:
        lower = np.full(n_bins, np.nan)
        upper = np.full(n_bins, np.nan)
        nz = count > 0
        lower[nz] = [c[b == k].min() for k in np.flatnonzero(nz)]
        upper[nz] = [c[b == k].max() for k in np.flatnonzero(nz)]
    return {"count": count, "mean_confidence": mean_conf, "accuracy": acc, "gap": np.abs(acc - mean_conf), "lower": lower, "upper": upper}


def ece(conf: Any, correct: Any, n_bins: int = N_BINS, binning: str = "width") -> float:
    """Expected calibration error ``sum_b |B_b|/N * |acc(B_b) - conf(B_b)|``.

    Source: Naeini et al., AAAI 2015; Guo et al., "On Calibration of Modern Neural Networks", ICML
    2017 (equal-width bins); Nixon et al. 2019 (equal-mass bins). NaN for N = 0.
    """
    rd = reliability_diagram(conf, correct, n_bins, binning)
    n = rd["count"].sum()
    if n == 0:
        return float("nan")
    nz = rd["count"] > 0
    return float((rd["count"][nz] * rd["gap"][nz]).sum() / n)


def mce(conf: Any, correct: Any, n_bins: int = N_BINS, binning: str = "width") -> float:
    """Maximum calibration error ``max_b |acc(B_b) - conf(B_b)|`` over non-empty bins (Naeini 2015)."""
    rd = reliability_diagram(conf, correct, n_bins, binning)
    nz = rd["count"] > 0
    return float(rd["gap"][nz].max()) if nz.any() else float("nan")


def brier(conf: Any, correct: Any) -> float:
    """Brier score ``mean (conf - y)^2`` (Brier, Monthly Weather Review 1950), in [0, 1]."""
    c, y = _prep(conf, correct)
    return float(np.mean((c - y) ** 2)) if c.size else float("nan")


def auroc(conf: Any, correct: Any) -> float:
    """Area under the ROC curve of ``conf`` separating acceptable from unacceptable extractions.

    The Mann–Whitney statistic ``P(c+ > c-) + P(c+ = c-)/2`` from average ranks (Hanley & McNeil,
    Radiology 1982). NaN when either class is absent.
    """
    from scipy.stats import rankdata

    c, y = _prep(conf, correct)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(c)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _expected_cum_errors(c: np.ndarray, err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Samples sorted by descending confidence; expected cumulative error counts with ties broken
    uniformly at random (linear within each tie group). Returns ``(sorted_conf, cum_errors)``."""
    order = np.argsort(-c, kind="stable")
    cs, es = c[order], err[order].astype(np.float64)
    n = cs.size
    if n == 0:
        return cs, es
    # tie groups: start index of the group each position belongs to
    new = np.r_[True, cs[1:] != cs[:-1]]
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], n]
    group_err = np.add.reduceat(es, starts)
    before = np.r_[0.0, np.cumsum(group_err)[:-1]]
    g = np.repeat(np.arange(starts.size), ends - starts)
    pos_in_group = np.arange(n) - starts[g] + 1
    cum = before[g] + group_err[g] * pos_in_group / (ends - starts)[g]
    return cs, cum


def risk_coverage(conf: Any, correct: Any) -> dict[str, np.ndarray]:
    """The risk–coverage curve of selective prediction (El-Yaniv & Wiener, JMLR 2010).

    Showing the ``k`` most confident extractions gives coverage ``k/N`` and risk = share of
    unacceptable ones among them. Ties in confidence are broken uniformly at random in expectation.

    Returns:
        ``coverage``, ``risk``, ``threshold`` (the confidence of the k-th sample), each ``(N,)``.
    """
    c, y = _prep(conf, correct)
    cs, cum = _expected_cum_errors(c, ~y)
    k = np.arange(1, c.size + 1)
    return {"coverage": k / max(c.size, 1), "risk": cum / k, "threshold": cs}


def aurc(conf: Any, correct: Any) -> float:
    """Area under the risk–coverage curve, ``(1/N) sum_k risk(k)`` (Geifman et al., "Bias-Reduced
    Uncertainty Estimation for Deep Neural Classifiers", ICLR 2019). In [0, 1]; lower is better."""
    rc = risk_coverage(conf, correct)
    return float(rc["risk"].mean()) if rc["risk"].size else float("nan")


def optimal_aurc(correct: Any) -> float:
    """AURC of the oracle ordering (every acceptable extraction first), the same discrete sum as
    :func:`aurc`; tends to ``r + (1 - r) ln(1 - r)`` (r = error rate) as N grows (Geifman 2019)."""
    y = np.asarray(correct).reshape(-1).astype(bool)
    n, n_ok = y.size, int(y.sum())
    if n == 0:
        return float("nan")
    k = np.arange(1, n + 1)
    return float((np.maximum(k - n_ok, 0) / k).mean())


def excess_aurc(conf: Any, correct: Any) -> float:
    """E-AURC = AURC - AURC of the oracle ordering (Geifman et al. 2019); >= 0, lower is better."""
    return aurc(conf, correct) - optimal_aurc(correct)


def gate_rates(conf: Any, correct: Any, threshold: float) -> dict[str, float]:
    """Gate error rates at ``threshold`` (accepted when ``conf >= threshold``).

    Returns:
        ``acceptance_rate`` (share accepted), ``far`` (false-accept rate: accepted among
        unacceptable), ``frr`` (false-reject rate: rejected among acceptable), ``precision``
        (acceptable among accepted); NaN where the denominator is empty.
    """
    c, y = _prep(conf, correct)
    acc = c >= threshold
    nan = float("nan")
    return {
        "acceptance_rate": float(acc.mean()) if c.size else nan,
        "far": float((acc & ~y).sum() / (~y).sum()) if (~y).any() else nan,
        "frr": float((~acc & y).sum() / y.sum()) if y.any() else nan,
        "precision": float((acc & y).sum() / acc.sum()) if acc.any() else nan,
    }


def recommend_threshold(conf: Any, correct: Any, target_precision: float = 0.95) -> dict[str, float] | None:
    """The lowest threshold whose shown extractions reach ``target_precision``.

    Candidates are the observed confidences; showing ``conf >= t`` keeps coverage ``n_t / N`` with
    precision (share acceptable among shown) ``p_t``. The lowest ``t`` with ``p_t >= target`` keeps
    the most extractions. None when no threshold reaches the target.

    Returns:
        ``{"threshold", "precision", "coverage"}`` or None.
    """
    c, y = _prep(conf, correct)
    if c.size == 0:
        return None
    order = np.argsort(-c, kind="stable")
    cs, ys = c[order], y[order]
    last_of_group = np.r_[cs[1:] != cs[:-1], True]
    shown = np.arange(1, c.size + 1)[last_of_group]
    prec = np.cumsum(ys)[last_of_group] / shown
    ok = np.flatnonzero(prec >= target_precision)
    if ok.size == 0:
        return None
    i = ok[-1]  # thresholds descend along the array: the last qualifying one is the lowest
    return {"threshold": float(cs[last_of_group][i]), "precision": float(prec[i]), "coverage": float(shown[i] / c.size)}


def calibration_report(conf: Any, correct: Any, threshold: float, target_precision: float = 0.95, n_bins: int = N_BINS) -> dict[str, Any]:
    """Every gate calibration number of one run as plain JSON-ready values."""
    c, y = _prep(conf, correct)
    rd = reliability_diagram(c, y, n_bins, "width")
    rc = risk_coverage(c, y)
    return {
        "n": int(c.size),
        "n_acceptable": int(y.sum()),
        "ece": ece(c, y, n_bins, "width"),
        "ece_equal_mass": ece(c, y, n_bins, "mass"),
        "mce": mce(c, y, n_bins, "width"),
        "brier": brier(c, y),
        "auroc": auroc(c, y),
        "aurc": aurc(c, y),
        "excess_aurc": excess_aurc(c, y),
        "threshold": float(threshold),
        **gate_rates(c, y, threshold),
        "recommended": recommend_threshold(c, y, target_precision),
        "target_precision": target_precision,
        "reliability": {k: [None if np.isnan(v) else float(v) for v in arr] for k, arr in rd.items()},
        "risk_coverage": {"coverage": rc["coverage"].tolist(), "risk": rc["risk"].tolist()},
    }
