"""``fairness compare RUN_A RUN_B``: did each gap between groups shrink or grow from release A to
release B?

Both runs must score the same dataset; the comparison is over the images scored in both, grouped by
run A's attributes. The gap of a metric is ``max - min`` over the sufficient groups (the groups of
n >= ``min_n``, the same set in both runs). Both runs are resampled with the *same* stratified
bootstrap indices (:func:`evalhub.groups.grouped_stats`), so the change of a gap, ``gap_B -
gap_A``, gets a paired percentile CI and a shifted bootstrap p-value (Efron & Tibshirani 1993,
sec. 16.4); a gap ``shrank`` (``grew``) when the whole CI lies below (above) zero and p <= 1 - level.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evalhub.compare import CompareError, paired_table
from evalhub.registry import IMAGE, names
from evalhub.runs import read_run
from evalhub.scoring import _jsonable
from evalhub.slicing import ATTR_PREFIX, sliceable
from evalhub.stats import percentile_interval, shifted_p_value
from fairness.groups import (
    GROUP_METRICS,
    METRIC_LABELS,
    GroupSettings,
    group_labels,
    grouped_stats,
)

B_COLUMNS = ("has_subject", *names(level=IMAGE, fairness=True), "confidence", "accepted", "acceptable")
"""Run B's columns the comparison needs: the gate's inputs and the image metrics fairness reports."""


def _verdict(lo: float, hi: float, p: float, alpha: float) -> str:
    """``shrank``/``grew`` when the CI excludes zero *and* the shifted bootstrap p-value is at most
    ``alpha``. The second condition guards the one case where the percentile CI of a max - min
    change misleads: a gap of exactly zero in A (say a gate that accepts nothing anywhere) has zero
    replicates, B's gap replicates are >= 0 by construction, so the CI excludes zero for any tiny
    observed gap; the shifted test then gives p near 1."""
    if not (np.isfinite(lo) and np.isfinite(hi) and np.isfinite(p)):
        return "n/a"
    if hi < 0 and p <= alpha:
        return "shrank"
    if lo > 0 and p <= alpha:
        return "grew"
    return "no significant change"


def _gap(point: np.ndarray, reps: np.ndarray, use: np.ndarray) -> tuple[float, np.ndarray]:
    with np.errstate(all="ignore"):
        return float(np.nanmax(point[use]) - np.nanmin(point[use])), np.nanmax(reps[use], axis=0) - np.nanmin(reps[use], axis=0)


def compare_fairness(
    engine: Any, run_a: str | Path | int, run_b: str | Path | int, attributes: list[str] | None = None, intersections: list[str] | None = None,
    n_boot: int = 2000, seed: int = 0, min_n: int = 30, level: float = 0.95,
) -> dict[str, Any]:
    """Gap changes from run A to run B, per attribute (and intersection) and metric.

    Returns:
        ``{"a", "b", "dataset", "n", "rows": [{attribute, metric, groups, gap_a, gap_b, change:
        {value, lo, hi}, verdict, groups_a: {value: metric}, groups_b: {...}}], "insufficient":
        {attribute: [values]}, "warnings"}``; gaps in the metric's units (IoU in [0, 1]).

    Both runs are read from the catalog ``engine`` (:func:`evalhub.runs.read_run`).

    Raises:
        evalhub.runs.RunNotFound: the catalog holds no such run.
        CompareError: different datasets (or revisions), or no shared image.
        KeyError: an unknown attribute.
    """
    ra, rb = read_run(engine, run_a), read_run(engine, run_b)
    if ra.record.dataset_id != rb.record.dataset_id:
        raise CompareError(f"runs score different datasets: {ra.path} on {ra.record.dataset}, {rb.path} on {rb.record.dataset}")
    if not set(ra.table["sample_key"]) & set(rb.table["sample_key"]):
        raise CompareError(f"{ra.path} and {rb.path} share no scored sample")
    res = compare_fairness_tables(ra.table, rb.table, attributes, intersections, n_boot=n_boot, seed=seed, min_n=min_n, level=level)
    return _jsonable({
        "a": {"run": ra.record.path, "release": ra.record.release},
        "b": {"run": rb.record.path, "release": rb.record.release},
        "dataset": ra.record.dataset, **res,
    })


def compare_fairness_tables(
    a: pd.DataFrame, b: pd.DataFrame, attributes: list[str] | None = None, intersections: list[str] | None = None,
    n_boot: int = 2000, seed: int = 0, min_n: int = 30, level: float = 0.95,
) -> dict[str, Any]:
    """:func:`compare_fairness` on two run tables (:attr:`evalhub.runs.RunTable.table`) of the same
    images: ``{"n", "min_n", "n_boot", "seed", "level", "rows", "insufficient", "warnings"}``.

    Raises:
        CompareError: no shared image.
        KeyError: an unknown attribute.
    """
    j = paired_table(a, b[["sample_key", *B_COLUMNS]])
    if j.empty:
        raise CompareError("the two runs share no scored sample")
    warnings = []
    if len(j) < max(len(a), len(b)):
        warnings.append(f"{len(a) - len(j)} image(s) only in A and {len(b) - len(j)} only in B are left out")
    attrs = [c for c in j.columns if c.startswith(ATTR_PREFIX)]
    ja = j[["sample_key", *B_COLUMNS, *attrs]]
    jb = j[["sample_key", *attrs]].assign(**{c: j[c + "_b"] for c in B_COLUMNS})
    if attributes is None:
        attributes, _ = sliceable(ja)
    settings = GroupSettings(n_boot=n_boot, seed=seed, min_n=min_n, level=level)
    rows, insufficient = [], {}
    for spec in list(attributes) + list(intersections or []):
        labels = group_labels(ja, spec)
        ra = grouped_stats(ja, spec, GROUP_METRICS, settings, labels).replicates
        rb = grouped_stats(jb, spec, GROUP_METRICS, settings, labels).replicates
        sizes = np.array([m.size for m in ra.members])
        ok = sizes >= min_n
        insufficient[spec] = [v for v, s in zip(ra.values, sizes) if s < min_n]
        for m in GROUP_METRICS:
            use = ok & np.isfinite(ra.point[m]) & np.isfinite(rb.point[m])
            row: dict[str, Any] = {"attribute": spec, "metric": m, "groups": int(use.sum()),
                                   "groups_a": dict(zip(ra.values, ra.point[m])), "groups_b": dict(zip(rb.values, rb.point[m]))}
            if use.sum() < 2:
                rows.append({**row, "gap_a": None, "gap_b": None, "change": None, "verdict": "fewer than two sufficient groups"})
                continue
            ga, reps_a = _gap(ra.point[m], ra.reps[m], use)
            gb, reps_b = _gap(rb.point[m], rb.reps[m], use)
            change = reps_b - reps_a
            change = change[np.isfinite(change)]
            lo, hi = percentile_interval(change, level)
            p = shifted_p_value(change, gb - ga) if change.size else float("nan")
            rows.append({**row, "gap_a": ga, "gap_b": gb, "change": {"value": gb - ga, "lo": lo, "hi": hi, "p": p},
                         "verdict": _verdict(lo, hi, p, 1 - level)})
    return {"n": int(len(j)), "min_n": min_n, "n_boot": n_boot, "seed": seed, "level": level,
            "rows": rows, "insufficient": insufficient, "warnings": warnings}


def format_fairness_compare(res: dict[str, Any]) -> str:
    """A plain-text table of :func:`compare_fairness` for the terminal (also the Markdown body)."""
    lines = [f"Gaps (max - min over groups with n >= {res['min_n']}) of {res['b']['release']} (B) vs "
             f"{res['a']['release']} (A) on {res['dataset']}, {res['n']} paired images",
             "", "| attribute | metric | gap A | gap B | B - A [95% CI] | p | verdict |", "|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        if r["change"] is None:
            lines.append(f"| {r['attribute']} | {r['metric']} | | | | | {r['verdict']} |")
            continue
        c = r["change"]
        lines.append(f"| {r['attribute']} | {r['metric']} | {r['gap_a']:.4f} | {r['gap_b']:.4f} | "
                     f"{c['value']:+.4f} [{c['lo']:+.4f}, {c['hi']:+.4f}] | {c['p']:.4f} | {r['verdict']} |")
    for spec, vals in res["insufficient"].items():
        if vals:
            lines.append(f"\n{spec}: insufficient data (n < {res['min_n']}), not in the gaps: {', '.join(map(str, vals))}")
    lines.append("\nMetrics: " + "; ".join(f"{m} = {METRIC_LABELS[m]}" for m in GROUP_METRICS))
    for w in res["warnings"]:
        lines.append(f"warning: {w}")
    return "\n".join(lines)
