"""Per-group metrics of a scored run, disparities between groups, and the tests behind the flags.

A run table (``samples.parquet`` of ``evalhub score``) has one row per image. Group metrics are
computed over the rows that have a value for the attribute; rows without one are counted
(``n_missing``) and in no group. Every metric except ECE is a ratio of sums over a group,
``sum(x_i) / sum(w_i)``:

==================  =======================================  ==========================================
metric              x_i                                       w_i (who counts)
==================  =======================================  ==========================================
``iou``             IoU of the image                          images with a subject (negatives have none)
``boundary_f1``     boundary F1 of the image                  images with a subject
``acceptance_rate`` 1 if the gate accepted the extraction     every image
``frr``             1 if acceptable but rejected              acceptable extractions (IoU >= tau)
``far``             1 if unacceptable but accepted            unacceptable extractions (and negatives)
==================  =======================================  ==========================================

``ece`` is the 15-bin equal-width expected calibration error of the gate within the group,
``sum_k |sum_{i in bin k} (c_i - y_i)| / n`` (Guo et al., ICML 2017), which equals
:func:`evalhub.calibration.ece`.

Confidence intervals come from a stratified percentile bootstrap: each group is resampled with
replacement on its own (seeded by the group's name, :func:`evalhub.slicing.slice_seed`), the
overall value of a replicate is computed from the union of the resampled groups, and disparities
(max - min, min / max, group - overall, group / overall) are computed replicate by replicate.
Source for the disparity definitions: fairlearn's ``MetricFrame.difference`` and ``.ratio``
(``between_groups`` and ``to_overall``), which the tests match.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from evalhub.calibration import N_BINS, bin_ids
from evalhub.slicing import ATTR_PREFIX, attribute_columns, slice_seed
from evalhub.stats import bootstrap_indices, percentile_interval, shifted_p_value

GROUP_METRICS = ("iou", "boundary_f1", "acceptance_rate", "frr", "far", "ece")
RATIO_METRICS = GROUP_METRICS[:-1]
METRIC_LABELS = {
    "iou": "mean IoU",
    "boundary_f1": "mean boundary F1",
    "acceptance_rate": "acceptance rate",
    "frr": "false-reject rate (among acceptable)",
    "far": "false-accept rate (among unacceptable)",
    "ece": "ECE (15 equal-width bins)",
}
HIGHER_IS_BETTER = {"iou": True, "boundary_f1": True, "acceptance_rate": True, "frr": False, "far": False, "ece": False}
INTERSECTION_SEP = "*"
VALUE_SEP = " & "


@dataclass(frozen=True)
class GroupSettings:
    """How group numbers are computed.

    Attributes:
        n_boot: bootstrap replicates for the CIs (and the bootstrap test).
        level: CI level in (0, 1).
        seed: base seed; each group's resampling also depends on its attribute and value only.
        min_n: groups with fewer images are marked ``insufficient``: their numbers are reported,
            but they are left out of disparities, flags and tests (never merged or dropped).
        n_bins: ECE bins.
    """

    n_boot: int = 2000
    level: float = 0.95
    seed: int = 0
    min_n: int = 30
    n_bins: int = N_BINS


def group_labels(df: pd.DataFrame, spec: str) -> pd.Series:
    """The group of every row for an attribute ``a`` or an intersection ``a*b[*c]``.

    Returns:
        ``(N,)`` object Series: the attribute's text value, or the values joined by ``" & "`` for an
        intersection; None where any attribute is missing.

    Raises:
        KeyError: an attribute the run table does not have (named, with the known ones).
    """
    names = spec.split(INTERSECTION_SEP)
    known = attribute_columns(df)
    for a in names:
        if not a or a not in known:
            raise KeyError(f"attribute {a!r} (in {spec!r}) is not in the run table (known: {known})")
    cols = [df[ATTR_PREFIX + a] for a in names]
    out = cols[0].astype(object).where(cols[0].notna(), None).map(lambda v: None if v is None else str(v))
    for c in cols[1:]:
        ok = out.notna() & c.notna()
        out = pd.Series(np.where(ok, out.astype(str) + VALUE_SEP + c.astype(str), None), index=df.index, dtype=object)
    return out


def metric_arrays(df: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{metric: (x, w)}``, float64 ``(N,)`` each, for the ratio metrics (see the module table).

    Images with a subject whose metric is NaN (not computable) get ``w = 0`` for that metric.
    """
    pos = df["has_subject"].to_numpy(bool)
    accepted = df["accepted"].to_numpy(bool)
    acceptable = df["acceptable"].to_numpy(bool)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for m in ("iou", "boundary_f1"):
        v = df[m].to_numpy(np.float64) if m in df.columns else np.full(len(df), np.nan)
        w = pos & np.isfinite(v)
        out[m] = (np.where(w, v, 0.0), w.astype(np.float64))
    out["acceptance_rate"] = (accepted.astype(np.float64), np.ones(len(df)))
    out["frr"] = ((acceptable & ~accepted).astype(np.float64), acceptable.astype(np.float64))
    out["far"] = ((~acceptable & accepted).astype(np.float64), (~acceptable).astype(np.float64))
    return out


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _bin_sums(bins: np.ndarray, resid: np.ndarray, n_bins: int) -> np.ndarray:
    """Per-row-of-``bins`` sums of ``resid`` by bin: ``(B, n)`` -> ``(B, n_bins)``."""
    b = bins.shape[0]
    flat = (np.arange(b)[:, None] * n_bins + bins).ravel()
    return np.bincount(flat, weights=resid.ravel(), minlength=b * n_bins).reshape(b, n_bins)


def _interval(reps: np.ndarray, value: float, level: float) -> dict[str, float]:
    lo, hi = percentile_interval(reps, level) if np.isfinite(value) else (float("nan"), float("nan"))
    return {"value": float(value), "lo": lo, "hi": hi}


@dataclass
class Replicates:
    """Point values and stratified bootstrap replicates of every group metric for one grouping.

    ``point[m]``: ``(G,)``; ``reps[m]``: ``(G, B)``; ``overall_point[m]``: float;
    ``overall_reps[m]``: ``(B,)``; ``den[m]``: ``(G,)`` denominators (images counted). ``num_reps``
    and ``den_reps`` keep the replicate sums of the ratio metrics and ``bin_reps`` the per-bin ECE
    residual sums ``(G, B, n_bins)`` for the bootstrap test. Groups are ``values`` (sorted as text),
    ``members[g]`` the row positions of group g in ``table`` (the rows with a group), ``group_of``
    ``(N,)`` the group index of each row. The per-row inputs the tests reuse: ``arrays``
    (:func:`metric_arrays`), ``row_bins`` (ECE bin of each confidence) and ``resid`` (confidence -
    acceptable).
    """

    table: pd.DataFrame
    values: list[str]
    members: list[np.ndarray]
    point: dict[str, np.ndarray]
    reps: dict[str, np.ndarray]
    overall_point: dict[str, float]
    overall_reps: dict[str, np.ndarray]
    den: dict[str, np.ndarray]
    num_reps: dict[str, np.ndarray]
    den_reps: dict[str, np.ndarray]
    bin_reps: np.ndarray
    n_missing: int
    group_of: np.ndarray
    arrays: dict[str, tuple[np.ndarray, np.ndarray]]
    row_bins: np.ndarray
    resid: np.ndarray


def group_replicates(df: pd.DataFrame, spec: str, settings: GroupSettings = GroupSettings(), labels: pd.Series | None = None) -> Replicates:
    """Per-group point values and stratified bootstrap replicates (see the module docstring).

    Group g's resampling indices depend only on its size, ``settings.seed``, ``spec`` and its value,
    so two runs of the same images grouped the same way are resampled identically (paired).

    Args:
        df: a run table.
        spec: ``"a"`` or ``"a*b"``.
        labels: group of each row (default :func:`group_labels` of ``spec``).

    Raises:
        KeyError: an unknown attribute.
    """
    labels = group_labels(df, spec) if labels is None else labels
    known = labels.notna().to_numpy()
    sub = df[known].reset_index(drop=True)
    lab = labels[known].to_numpy(dtype=object)
    values = sorted(set(lab), key=str)
    n, b, k = len(sub), settings.n_boot, settings.n_bins
    arrays = metric_arrays(sub)
    conf = sub["confidence"].to_numpy(np.float64)
    resid = conf - sub["acceptable"].to_numpy(np.float64)
    bins = bin_ids(conf, k) if n else np.zeros(0, np.int64)
    members = [np.flatnonzero(lab == v) for v in values]
    num_reps = {m: np.zeros((len(values), b)) for m in RATIO_METRICS}
    den_reps = {m: np.zeros((len(values), b)) for m in RATIO_METRICS}
    rep_bins = np.zeros((len(values), b, k))
    point_bins = np.zeros((len(values), k))
    for gi, (v, rows) in enumerate(zip(values, members)):
        idx = rows[bootstrap_indices(rows.size, b, slice_seed(settings.seed, spec, v))]
        for m in RATIO_METRICS:
            x, w = arrays[m]
            num_reps[m][gi], den_reps[m][gi] = x[idx].sum(axis=1), w[idx].sum(axis=1)
        rep_bins[gi] = _bin_sums(bins[idx], resid[idx], k)
        point_bins[gi] = np.bincount(bins[rows], weights=resid[rows], minlength=k)
    sizes = np.array([r.size for r in members], dtype=np.float64)
    point, reps, overall_point, overall_reps, den = {}, {}, {}, {}, {}
    for m in RATIO_METRICS:
        x, w = arrays[m]
        num_p = np.array([x[r].sum() for r in members])
        den[m] = np.array([w[r].sum() for r in members])
        point[m], reps[m] = _ratio(num_p, den[m]), _ratio(num_reps[m], den_reps[m])
        overall_point[m] = float(_ratio(np.array([x.sum()]), np.array([w.sum()]))[0])
        overall_reps[m] = _ratio(num_reps[m].sum(axis=0), den_reps[m].sum(axis=0))
    point["ece"] = np.abs(point_bins).sum(axis=1) / np.maximum(sizes, 1)
    reps["ece"] = np.abs(rep_bins).sum(axis=2) / np.maximum(sizes, 1)[:, None]
    den["ece"] = sizes
    overall_point["ece"] = float(np.abs(point_bins.sum(axis=0)).sum() / n) if n else float("nan")
    overall_reps["ece"] = np.abs(rep_bins.sum(axis=0)).sum(axis=1) / max(n, 1)
    group_of = np.full(n, -1)
    for gi, rows in enumerate(members):
        group_of[rows] = gi
    return Replicates(sub, values, members, point, reps, overall_point, overall_reps, den, num_reps, den_reps, rep_bins,
                      int((~known).sum()), group_of, arrays, bins, resid)


def group_table(df: pd.DataFrame, spec: str, settings: GroupSettings = GroupSettings(), test: str = "permutation",
                n_perm: int = 2000) -> dict[str, Any]:
    """Group metrics, disparities and per-group tests for one attribute or intersection.

    Args:
        df: a run table (``samples.parquet``): ``has_subject``, ``accepted``, ``acceptable``,
            ``confidence`` in [0, 1], ``iou``/``boundary_f1`` in [0, 1] (NaN for negatives) and
            ``attr_*`` columns.
        spec: ``"a"`` or ``"a*b"``.
        settings: bootstrap and minimum-n settings.
        test: ``"permutation"`` (labels shuffled within the metric's population) or
            ``"bootstrap"`` (the stratified bootstrap of group - rest, shifted to the null; Efron &
            Tibshirani 1993, sec. 16.4): two-sided p-values of "this group differs from the rest".
        n_perm: permutations for the permutation test.

    Returns:
        ``{"attribute", "n", "n_missing", "groups": [...], "overall": {metric: {value, lo, hi}},
        "disparities": {metric: {...}}, "insufficient": [values], "tests": [...]}``. Each group has
        ``value, n, share`` (of the rows with a value), ``insufficient``, ``metrics`` (``{m: {value,
        lo, hi, n}}``, ``n`` being the metric's denominator: images with a subject for IoU,
        acceptable ones for FRR, ...), ``diff_to_overall`` and ``ratio_to_overall`` (each
        ``{m: {value, lo, hi}}``). Disparities are over the sufficient groups with a finite value:
        ``max_minus_min`` and ``min_over_max`` (with CIs and the groups that attain them),
        ``max_abs_diff_to_overall`` and ``min_ratio_to_overall`` (fairlearn's ``to_overall``).
        Tests (only when at least two groups are sufficient) are one per sufficient group and metric
        (with exactly two groups, whose two one-vs-rest tests are the same test, one per metric, on
        the worse-off group's side):
        ``{group, metric, statistic (group - rest), p}``.

    Raises:
        KeyError: an unknown attribute.
        ValueError: ``test`` is neither ``permutation`` nor ``bootstrap``.
    """
    if test not in ("permutation", "bootstrap"):
        raise ValueError(f"test must be 'permutation' or 'bootstrap', got {test!r}")
    r = group_replicates(df, spec, settings)
    n, lvl = len(r.table), settings.level
    groups = [{"value": v, "n": int(rows.size), "share": rows.size / n, "insufficient": rows.size < settings.min_n}
              for v, rows in zip(r.values, r.members)]
    overall = {m: _interval(r.overall_reps[m], r.overall_point[m], lvl) for m in GROUP_METRICS}
    for gi, g in enumerate(groups):
        g["metrics"] = {m: {**_interval(r.reps[m][gi], r.point[m][gi], lvl), "n": int(r.den[m][gi])} for m in GROUP_METRICS}
        g["diff_to_overall"] = {m: _interval(r.reps[m][gi] - r.overall_reps[m], r.point[m][gi] - r.overall_point[m], lvl) for m in GROUP_METRICS}
        with np.errstate(invalid="ignore", divide="ignore"):
            g["ratio_to_overall"] = {
                m: _interval(r.reps[m][gi] / r.overall_reps[m], r.point[m][gi] / r.overall_point[m] if r.overall_point[m] else np.nan, lvl)
                for m in GROUP_METRICS
            }
    ok = np.array([not g["insufficient"] for g in groups], dtype=bool)
    disparities = {m: _disparity(r.point[m], r.reps[m], r.overall_point[m], ok, r.values, lvl) for m in GROUP_METRICS}
    tests = _tests(test, spec, r, ok, settings, n_perm)
    return {
        "attribute": spec, "n": n, "n_missing": r.n_missing, "groups": groups, "overall": overall,
        "disparities": disparities, "insufficient": [g["value"] for g in groups if g["insufficient"]], "tests": tests,
    }


def _disparity(point: np.ndarray, reps: np.ndarray, overall: float, ok: np.ndarray, values: Sequence[str], level: float) -> dict[str, Any]:
    """Between-group and to-overall disparities over the sufficient groups with a finite value."""
    use = ok & np.isfinite(point)
    if use.sum() < 2:
        return {"groups": int(use.sum()), "max_minus_min": None, "min_over_max": None,
                "max_abs_diff_to_overall": None, "min_ratio_to_overall": None}
    p, r = point[use], reps[use]
    names = [v for v, u in zip(values, use) if u]
    with np.errstate(invalid="ignore", divide="ignore", all="ignore"):
        r_max, r_min = np.nanmax(r, axis=0), np.nanmin(r, axis=0)
        ratio_reps = np.where(r_max > 0, r_min / r_max, np.nan)
        ratio_point = p.min() / p.max() if p.max() > 0 else np.nan
        to_overall = np.minimum(p / overall, overall / p) if overall else np.full(p.shape, np.nan)
    return {
        "groups": int(use.sum()),
        "max_minus_min": {**_interval(r_max - r_min, p.max() - p.min(), level), "max_group": names[int(p.argmax())], "min_group": names[int(p.argmin())]},
        "min_over_max": _interval(ratio_reps, ratio_point, level),
        "max_abs_diff_to_overall": float(np.abs(p - overall).max()),
        "min_ratio_to_overall": float(np.nanmin(to_overall)) if np.isfinite(to_overall).any() else float("nan"),
    }


def _tests(test: str, spec: str, r: Replicates, ok: np.ndarray, settings: GroupSettings, n_perm: int) -> list[dict[str, Any]]:
    """One-vs-rest tests over the sufficient groups (the rest includes insufficient groups' rows)."""
    tested_all = np.flatnonzero(ok)
    if tested_all.size < 2:
        return []
    rng = np.random.default_rng(slice_seed(settings.seed, "test", spec))
    out = []
    for m in GROUP_METRICS:
        tested = tested_all
        if len(r.values) == 2:  # a vs b and b vs a are one test: keep the worse-off group's side
            p = np.nan_to_num(r.point[m], nan=-np.inf if HIGHER_IS_BETTER[m] else np.inf)
            tested = np.array([int(np.argmin(p) if HIGHER_IS_BETTER[m] else np.argmax(p))])
        if test == "bootstrap":
            stats, pvals = _bootstrap_test(m, tested, r, settings.n_bins)
        else:
            stats, pvals = _permutation_test(m, tested, r.group_of, r.arrays, r.row_bins, r.resid, settings.n_bins, n_perm, rng)
        for gi, s_, p in zip(tested, stats, pvals):
            out.append({"group": r.values[gi], "metric": m, "statistic": float(s_), "p": float(p)})
    return out


def _ece_diff(r_in: np.ndarray, r_all: np.ndarray, k: int, size: int) -> np.ndarray | float:
    """ECE of the group minus ECE of the rest from their per-bin residual sums."""
    return np.abs(r_in).sum(axis=-1) / k - np.abs(r_all - r_in).sum(axis=-1) / (size - k)


def _observed(m: str, member: np.ndarray, arrays, bins, resid, n_bins: int) -> float:
    """Group - rest of metric ``m`` on the rows given (NaN when either side is empty)."""
    if m == "ece":
        k = int(member.sum())
        if k == 0 or k == member.size:
            return float("nan")
        return float(_ece_diff(np.bincount(bins[member], resid[member], n_bins), np.bincount(bins, resid, n_bins), k, member.size))
    x, w = arrays[m]
    n_in, n_out = w[member].sum(), w[~member].sum()
    if n_in == 0 or n_out == 0:
        return float("nan")
    return float(x[member].sum() / n_in - x[~member].sum() / n_out)


def _permutation_test(m, tested, lab_idx, arrays, bins, resid, n_bins, n_perm, rng) -> tuple[np.ndarray, np.ndarray]:
    """Group - rest statistic and its two-sided permutation p-value ``(1 + #{|T*| >= |T|}) / (P + 1)``
    (Phipson & Smyth 2010), group labels shuffled among the rows in the metric's population."""
    rows = np.arange(lab_idx.size) if m == "ece" else np.flatnonzero(arrays[m][1] > 0)
    lab, size = lab_idx[rows], rows.size
    perms = rng.permuted(np.broadcast_to(np.arange(size), (n_perm, size)), axis=1) if size else np.zeros((n_perm, 0), np.int64)
    stats, pvals = [], []
    for gi in tested:
        member = lab == gi
        k = int(member.sum())
        if k == 0 or k == size:
            stats.append(np.nan)
            pvals.append(np.nan)
            continue
        plab = member[perms]  # (P, size): membership after shuffling the labels
        if m == "ece":
            r, bn = resid[rows], bins[rows]
            r_all = np.bincount(bn, r, n_bins)
            obs = float(_ece_diff(np.bincount(bn[member], r[member], n_bins), r_all, k, size))
            perm_stats = _ece_diff(_bin_sums(np.broadcast_to(bn, plab.shape), np.where(plab, r, 0.0), n_bins), r_all[None, :], k, size)
        else:
            x = arrays[m][0][rows]
            obs = float(x[member].mean() - x[~member].mean())
            in_sum = (x[None, :] * plab).sum(axis=1)
            perm_stats = in_sum / k - (x.sum() - in_sum) / (size - k)
        stats.append(obs)
        pvals.append(float((1 + np.sum(np.abs(perm_stats) >= abs(obs) - 1e-12)) / (n_perm + 1)))
    return np.array(stats), np.array(pvals)


def _bootstrap_test(m, tested, r: Replicates, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Group - rest from the stratified bootstrap replicates, p-value from the replicates shifted to
    the null (:func:`evalhub.stats.shifted_p_value`)."""
    n = r.group_of.size
    stats, pvals = [], []
    for gi in tested:
        k = r.members[gi].size
        if m == "ece":
            rest = r.bin_reps.sum(axis=0) - r.bin_reps[gi]
            reps = np.abs(r.bin_reps[gi]).sum(axis=1) / k - np.abs(rest).sum(axis=1) / max(n - k, 1)
        else:
            rest_num = r.num_reps[m].sum(axis=0) - r.num_reps[m][gi]
            rest_den = r.den_reps[m].sum(axis=0) - r.den_reps[m][gi]
            reps = _ratio(r.num_reps[m][gi], r.den_reps[m][gi]) - _ratio(rest_num, rest_den)
        obs = _observed(m, r.group_of == gi, r.arrays, r.row_bins, r.resid, n_bins)
        stats.append(obs)
        finite = reps[np.isfinite(reps)]
        pvals.append(shifted_p_value(finite, obs) if np.isfinite(obs) and finite.size else np.nan)
    return np.array(stats), np.array(pvals)
