"""Paired comparison of two runs of the same dataset: per-image deltas B - A with paired-bootstrap
CIs and p-values, overall and per slice, Holm-corrected across slices, regressions flagged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evalhub.calibration import aurc, brier, ece
from evalhub.metrics import HIGHER_IS_BETTER
from evalhub.scoring import load_run
from evalhub.slicing import slice_seed, iter_slices, sliceable
from evalhub.stats import LEVEL, N_BOOT, bootstrap_indices, holm, paired_bootstrap, percentile_interval, shifted_p_value

COMPARE_METRICS = ("iou", "boundary_f1", "boundary_iou", "dice", "mae", "sad", "mse", "grad", "conn")
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


def compare_runs(run_a: str | Path, run_b: str | Path, n_boot: int = N_BOOT, seed: int = 0, min_n: int | None = None) -> dict[str, Any]:
    """Compare run B against run A (deltas are B - A).

    Per metric: mean paired per-image delta over images with a subject in both runs, paired
    bootstrap percentile CI and p-value (:func:`evalhub.stats.paired_bootstrap`); the gate's ECE,
    Brier score and AURC deltas over all shared images with the same resampling. Per slice of run A's
    attributes: the same paired deltas, with Holm-adjusted p-values across the slices of each metric.
    A delta is a ``regression`` when its whole CI lies on the worse side of zero (below zero for
    IoU-like metrics, above for errors).

    Raises:
        FileNotFoundError: a folder is not a run.
        CompareError: the runs score different datasets, or share no sample.
    """
    a, sa = load_run(run_a)
    b, sb = load_run(run_b)
    if sa["dataset"]["name"] != sb["dataset"]["name"]:
        raise CompareError(f"runs score different datasets: {run_a} on {sa['dataset']['name']!r}, {run_b} on {sb['dataset']['name']!r}")
    b_cols = ["sample_key", "confidence", "acceptable", "has_subject"] + [m for m in COMPARE_METRICS if m in b.columns]
    j = paired_table(a, b[b_cols])
    if j.empty:
        raise CompareError(f"{run_a} and {run_b} share no scored sample")
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
    slices = []
    for attr, value, part in iter_slices(j, keep, sa["settings"].get("intersections")):
        s_seed = slice_seed(seed, attr, value)
        slices.append({"attribute": attr, "value": value, "n": int(len(part)), "n_positive": int(part["has_subject"].sum()),
                       "insufficient": len(part) < min_n, "metrics": _metric_deltas(part, metrics, n_boot, s_seed)})
    for m in metrics:
        adj = holm([s["metrics"][m]["p"] for s in slices])
        for s, p in zip(slices, adj):
            s["metrics"][m]["p_holm"] = float(p)
    regressions = [
        {"slice": f"{s['attribute']}={s['value']}", "metric": m, **{k: s["metrics"][m][k] for k in ("mean", "lo", "hi", "p_holm")}}
        for s in slices for m in metrics if s["metrics"][m]["verdict"] == "regression" and not s["insufficient"]
    ]
    return {
        "a": {"run": str(Path(run_a).resolve()), "release": sa["release"]["name"]},
        "b": {"run": str(Path(run_b).resolve()), "release": sb["release"]["name"]},
        "dataset": sa["dataset"]["name"], "n_boot": n_boot, "seed": seed, "min_n": min_n, "level": LEVEL,
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
