"""Fairness numbers of a scored run: per-group metrics, disparities between groups, and the tests
behind the flags.

The group numbers (means, rates, ECE, CIs, differences and ratios) come from the one grouped-statistics
engine, :mod:`evalhub.groups`, which ``evalhub score`` slices and ``evalhub compare`` use too, so a
group has the same numbers and CIs in every report. This module adds what a fairness report needs
on top: the disparity summary over sufficient groups and the one-vs-rest tests (permutation or
bootstrap) behind the significance flags.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from evalhub.groups import (  # noqa: F401  (re-exported: the engine lives in evalhub)
    GroupSettings, Replicates, _bin_sums, _ratio, group_labels, grouped_stats, slice_seed,
)
from evalhub.registry import HIGHER_IS_BETTER, LABELS, names
from evalhub.stats import shifted_p_value

GROUP_METRICS = names(fairness=True)
"""The metrics a fairness report shows per group (the registry's ``fairness`` flag)."""
METRIC_LABELS = {m: LABELS[m] for m in GROUP_METRICS}


def group_table(df: pd.DataFrame, spec: str, settings: GroupSettings = GroupSettings(), test: str = "permutation",
                n_perm: int = 2000) -> dict[str, Any]:
    """Group metrics, disparities and per-group tests for one attribute or intersection.

    Args:
        df: a run table (:attr:`evalhub.runs.RunTable.table`): ``has_subject``, ``accepted``, ``acceptable``,
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
    gs = grouped_stats(df, spec, GROUP_METRICS, settings)
    r = gs.replicates
    n = len(r.table)
    groups = [{"value": v, "n": int(rows.size), "share": rows.size / n, "insufficient": rows.size < settings.min_n}
              for v, rows in zip(r.values, r.members)]
    overall = {m: iv.as_dict() for m, iv in gs.overall.items()}
    by_group, diff, ratio = gs.by_group, gs.to_overall("difference"), gs.to_overall("ratio")
    counted = {m: gs.counted(m) for m in GROUP_METRICS}
    for g in groups:
        v = g["value"]
        g["metrics"] = {m: {**by_group[v][m].as_dict(), "n": counted[m][v]} for m in GROUP_METRICS}
        g["diff_to_overall"] = {m: diff[v][m].as_dict() for m in GROUP_METRICS}
        g["ratio_to_overall"] = {m: ratio[v][m].as_dict() for m in GROUP_METRICS}
    ok = np.array([not g["insufficient"] for g in groups], dtype=bool)
    disparities = {m: _disparity(gs, m, ok) for m in GROUP_METRICS}
    tests = _tests(test, spec, r, ok, settings, n_perm)
    return {
        "attribute": spec, "n": n, "n_missing": r.n_missing, "groups": groups, "overall": overall,
        "disparities": disparities, "insufficient": [g["value"] for g in groups if g["insufficient"]], "tests": tests,
    }


def _disparity(gs, m: str, ok: np.ndarray) -> dict[str, Any]:
    """Between-group and to-overall disparities of metric ``m`` over the sufficient groups with a
    finite value."""
    r = gs.replicates
    point, overall = r.point[m], r.overall_point[m]
    use = ok & np.isfinite(point)
    if use.sum() < 2:
        return {"groups": int(use.sum()), "max_minus_min": None, "min_over_max": None,
                "max_abs_diff_to_overall": None, "min_ratio_to_overall": None}
    p = point[use]
    names_ = [v for v, u in zip(r.values, use) if u]
    with np.errstate(invalid="ignore", divide="ignore", all="ignore"):
        to_overall = np.minimum(p / overall, overall / p) if overall else np.full(p.shape, np.nan)
    return {
        "groups": int(use.sum()),
        "max_minus_min": {**gs.between_groups(m, "difference", ok).as_dict(), "max_group": names_[int(p.argmax())], "min_group": names_[int(p.argmin())]},
        "min_over_max": gs.between_groups(m, "ratio", ok).as_dict(),
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
