"""Paired comparison of two runs of the same dataset: per-image deltas B - A with paired-bootstrap
CIs and p-values, overall and per slice, Holm-corrected across slices, regressions flagged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sqlalchemy import Engine

from evalhub.calibration import aurc, brier, ece
from evalhub.groups import GroupSettings, group_labels, grouped_stats
from evalhub.registry import HIGHER_IS_BETTER, names
from evalhub.runs import read_run
from evalhub.slicing import parse_intersections, sliceable
from evalhub.stats import LEVEL, N_BOOT, bootstrap_indices, holm, paired_bootstrap, percentile_interval, shifted_p_value

COMPARE_METRICS = names(level="image", compare=True)
GATE_STATS = {"ece": ece, "brier": brier, "aurc": aurc}


class CompareError(ValueError):
    """Runs that cannot be compared (different datasets, no shared samples)."""


def _verdict(metric: str, lo: float, hi: float) -> str:
    """``regression`` when the whole CI lies on the worse side of zero, ``improvement`` when on the
    better side, else ``no significant change``."""
    better_up = HIGHER_IS_BETTER.get(metric, False)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "n/a"
    if (hi < 0 and better_up) or (lo > 0 and not better_up):
        return "regression"
    if (lo > 0 and better_up) or (hi < 0 and not better_up):
        return "improvement"
    return "no significant change"


def paired_table(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Inner join of two run tables on ``sample_key``; columns of B get the suffix ``_b``."""
    return a.merge(b, on="sample_key", suffixes=("", "_b"), validate="one_to_one")


def _metric_deltas(part: pd.DataFrame, metrics: list[str], n_boot: int, seed: int) -> dict[str, dict[str, Any]]:
    out = {}
    pos = part[part["has_subject"].astype(bool)]
    for m in metrics:
        d = (pos[m + "_b"] - pos[m]).to_numpy(dtype=np.float64)
        r = paired_bootstrap(d, n_boot=n_boot, seed=seed)
        out[m] = {**r, "a": float(np.nanmean(pos[m])) if len(pos) else float("nan"),
                  "b": float(np.nanmean(pos[m + "_b"])) if len(pos) else float("nan"), "verdict": _verdict(m, r["lo"], r["hi"])}
    return out


def _gate_deltas(j: pd.DataFrame, n_boot: int, seed: int, level: float = LEVEL) -> dict[str, dict[str, Any]]:
    ca, ya = j["confidence"].to_numpy(), j["acceptable"].to_numpy(bool)
    cb, yb = j["confidence_b"].to_numpy(), j["acceptable_b"].to_numpy(bool)
    idx = bootstrap_indices(len(j), n_boot, seed)
    out = {}
    for name, fn in GATE_STATS.items():
        va, vb = fn(ca, ya), fn(cb, yb)
        reps = np.array([fn(cb[i], yb[i]) - fn(ca[i], ya[i]) for i in idx])
        lo, hi = percentile_interval(reps, level)
        delta = vb - va
        out[name] = {"a": va, "b": vb, "mean": delta, "lo": lo, "hi": hi, "p": shifted_p_value(reps, delta), "verdict": _verdict(name, lo, hi)}
    return out


def _slice_deltas(j: pd.DataFrame, metrics: list[str], attributes: list[str], intersections: str | None,
                  settings: GroupSettings) -> list[dict[str, Any]]:
    """Per slice of A's attributes, B - A of each metric with a paired CI from the grouped engine
    (:meth:`evalhub.groups.GroupedStats.change_from`: both runs' groups resampled identically)."""
    gate = ["confidence", "accepted", "acceptable"]
    attrs = [c for c in j.columns if c.startswith("attr_")]
    ja = j[["sample_key", "has_subject", *gate, *metrics, *attrs]]
    jb = j[["sample_key", "has_subject", *attrs]].assign(**{c: j[c + "_b"] for c in (*gate, *metrics)})
    out = []
    for spec in list(attributes) + [f"{x}*{y}" for x, y in parse_intersections(intersections, attributes)]:
        labels = group_labels(ja, spec)
        ga = grouped_stats(ja, spec, metrics, settings, labels)
        gb = grouped_stats(jb, spec, metrics, settings, labels)
        change, pos = gb.change_from(ga), ja["has_subject"].to_numpy(bool)[labels.notna().to_numpy()]
        for gi, value in enumerate(ga.values):
            rows = ga.replicates.members[gi]
            entry: dict[str, Any] = {"attribute": spec, "value": value, "n": int(rows.size), "n_positive": int(pos[rows].sum()),
                                     "insufficient": rows.size < settings.min_n, "metrics": {}}
            for m in metrics:
                c = change[value][m]
                reps = gb.replicates.reps[m][gi] - ga.replicates.reps[m][gi]
                reps = reps[np.isfinite(reps)]
                entry["metrics"][m] = {"mean": c.value, "lo": c.lo, "hi": c.hi,
                                       "p": shifted_p_value(reps, c.value) if reps.size and np.isfinite(c.value) else float("nan"),
                                       "a": float(ga.replicates.point[m][gi]), "b": float(gb.replicates.point[m][gi]),
                                       "verdict": _verdict(m, c.lo, c.hi)}
            out.append(entry)
    return out


def compare_runs(engine: Engine, run_a: str | Path | int, run_b: str | Path | int, n_boot: int = N_BOOT, seed: int = 0,
                 min_n: int | None = None) -> dict[str, Any]:
    """Compare run B against run A (deltas are B - A).

    Per metric: mean paired per-image delta over images with a subject in both runs, paired
    bootstrap percentile CI and p-value (:func:`evalhub.stats.paired_bootstrap`); the gate's ECE,
    Brier score and AURC deltas over all shared images with the same resampling. Per slice of run A's
    attributes: the same paired deltas, with Holm-adjusted p-values across the slices of each metric.
    A delta is a ``regression`` when its whole CI lies on the worse side of zero (below zero for
    IoU-like metrics, above for errors).

    Both runs are read from the catalog (:func:`evalhub.runs.read_run`).

    Raises:
        evalhub.runs.RunNotFound: a folder or id the catalog does not hold.
        CompareError: the runs score different datasets (or revisions), or share no sample.
    """
    ra, rb = read_run(engine, run_a), read_run(engine, run_b)
    a, sa, b, sb = ra.table, ra.summary, rb.table, rb.summary
    if ra.record.dataset_id != rb.record.dataset_id:
        raise CompareError(f"runs score different datasets: {ra.path} on {ra.record.dataset}, {rb.path} on {rb.record.dataset}")
    b_cols = ["sample_key", "confidence", "accepted", "acceptable", "has_subject"] + [m for m in COMPARE_METRICS if m in b.columns]
    j = paired_table(a, b[b_cols])
    if j.empty:
        raise CompareError(f"{ra.path} and {rb.path} share no scored sample")
    warnings = []
    only_a, only_b = len(a) - len(j), len(b) - len(j)
    if only_a or only_b:
        warnings.append(f"{only_a} image(s) only in A and {only_b} only in B are left out of the paired comparison")
    both_pos = j["has_subject"].astype(bool) & j["has_subject_b"].astype(bool)
    j = j.assign(has_subject=both_pos)
    metrics = [m for m in COMPARE_METRICS if m in j.columns and j.loc[both_pos, m].notna().any() and j.loc[both_pos, m + "_b"].notna().any()]
    min_n = min_n if min_n is not None else sa["settings"].get("min_n", 30)
    overall = {"n": int(len(j)), "n_positive": int(both_pos.sum()), "metrics": _metric_deltas(j, metrics, n_boot, seed), "gate": _gate_deltas(j, n_boot, seed)}
    keep, _ = sliceable(a)
    slices = _slice_deltas(j, metrics, keep, sa["settings"].get("intersections"), GroupSettings(n_boot=n_boot, seed=seed, min_n=min_n))
    for m in metrics:
        adj = holm([s["metrics"][m]["p"] for s in slices])
        for s, p in zip(slices, adj):
            s["metrics"][m]["p_holm"] = float(p)
    regressions = [
        {"slice": f"{s['attribute']}={s['value']}", "metric": m, **{k: s["metrics"][m][k] for k in ("mean", "lo", "hi", "p_holm")}}
        for s in slices for m in metrics if s["metrics"][m]["verdict"] == "regression" and not s["insufficient"]
    ]
    return {
        "a": {"run": ra.record.path, "release": ra.record.release},
        "b": {"run": rb.record.path, "release": rb.record.release},
        "dataset": ra.record.dataset, "n_boot": n_boot, "seed": seed, "min_n": min_n, "level": LEVEL,
        "metrics": metrics, "overall": overall, "slices": slices, "regressions": regressions, "warnings": warnings,
        "confidence_proxy": {"a": bool(sa["release"].get("confidence_proxy")), "b": bool(sb["release"].get("confidence_proxy"))},
    }


def format_compare(res: dict[str, Any]) -> str:
    """A plain-text table of a comparison for the terminal."""
    lines = [f"{res['b']['release']} (B) vs {res['a']['release']} (A) on {res['dataset']}: {res['overall']['n']} paired images"]
    lines.append(f"  {'metric':<13} {'A':>8} {'B':>8} {'B-A':>9}  {'95% CI':<21} {'p':>7}  verdict")
    rows = list(res["overall"]["metrics"].items()) + list(res["overall"]["gate"].items())
    for m, r in rows:
        lines.append(f"  {m:<13} {r['a']:8.4f} {r['b']:8.4f} {r['mean']:+9.4f}  [{r['lo']:+.4f}, {r['hi']:+.4f}]  {r['p']:7.4f}  {r['verdict']}")
    if res["regressions"]:
        lines.append("  regressions by slice (whole CI on the worse side):")
        for r in res["regressions"]:
            lines.append(f"    {r['slice']}: {r['metric']} {r['mean']:+.4f} [{r['lo']:+.4f}, {r['hi']:+.4f}], Holm p {r['p_holm']:.4f}")
    else:
        lines.append("  no slice regresses")
    for w in res["warnings"]:
        lines.append(f"  warning: {w}")
    return "\n".join(lines)
