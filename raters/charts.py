"""The admin results as pictures: matplotlib figures built from :func:`raters.results.campaign_results`.

Each function returns a ``matplotlib.figure.Figure`` (the app shows it as a PNG with :func:`png`),
so what is drawn can be checked in tests.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def png(fig: Any) -> bytes:
    """The figure as PNG bytes (the figure is closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def reliability(gate: dict[str, Any], title: str = "Gate confidence against 'would use'") -> Any:
    """Reliability diagram: mean confidence per equal-width bin on x, the share of items the raters
    would use (Dawid-Skene) on y, the diagonal of perfect calibration, and the bin counts.

    Args:
        gate: ``human_vs_metric["gate_vs_would_use"]``: ``n``, ``ece`` and ``reliability`` (lists
            ``lower``, ``upper``, ``count``, ``accuracy``, ``mean_confidence`` per bin).
    """
    plt = _plt()
    rd = gate["reliability"]
    lower, upper = np.array(rd["lower"], float), np.array(rd["upper"], float)
    acc = np.array([np.nan if v is None else v for v in rd["accuracy"]], float)
    conf = np.array([np.nan if v is None else v for v in rd["mean_confidence"]], float)
    fig, (ax, axc) = plt.subplots(2, 1, figsize=(4.6, 5.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    used = np.isfinite(acc) & np.isfinite(conf)
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.plot(conf[used], acc[used], "o-", color="#4477aa", label="share 'would use' per bin")
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="share 'would use'")
    ax.set_title(f"{title}\nECE {gate['ece']:.3f} over {gate['n']} items", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    axc.bar((lower + upper) / 2, np.array(rd["count"], float), width=(upper - lower) * 0.95, color="#888888")
    axc.set(xlabel="mean confidence in bin", ylabel="items")
    return fig


def human_vs_metric(points: list[dict[str, Any]], mismatches: dict[str, Any]) -> Any:
    """Each item's IoU (x) against its mean overall rating (y); the mismatches (high IoU rated low,
    low IoU rated high) in red, labelled with their sample ids.

    Args:
        points: ``[{"sample_key", "iou", "overall"}]``.
        mismatches: ``human_vs_metric["mismatches"]``.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    bad = {r["sample_key"] for k in ("metric_high_rating_low", "metric_low_rating_high") for r in mismatches.get(k, [])}
    ok = [p for p in points if p["sample_key"] not in bad and p["iou"] is not None]
    off = [p for p in points if p["sample_key"] in bad]
    ax.scatter([p["iou"] for p in ok], [p["overall"] for p in ok], s=18, color="#4477aa", label="items")
    ax.scatter([p["iou"] for p in off], [p["overall"] for p in off], s=30, color="#cc3311", label="mismatches")
    for p in off:
        ax.annotate(p["sample_key"], (p["iou"], p["overall"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set(xlim=(0, 1), ylim=(0.8, 5.2), xlabel="IoU", ylabel="mean overall rating (1-5)")
    ax.set_title(mismatches.get("rule", ""), fontsize=7)
    ax.legend(fontsize=7, loc="lower right")
    return fig


def bradley_terry(scores: dict[str, dict[str, float]]) -> Any:
    """Bradley-Terry scores (summing to 1) with their 95 % CIs, one row per release."""
    plt = _plt()
    names = list(scores)
    fig, ax = plt.subplots(figsize=(5, 0.6 + 0.5 * max(1, len(names))))
    v = np.array([scores[k]["value"] for k in names], float)
    lo = np.array([scores[k]["lo"] for k in names], float)
    hi = np.array([scores[k]["hi"] for k in names], float)
    ax.errorbar(v, np.arange(len(names)), xerr=[v - lo, hi - v], fmt="o", color="#4477aa", capsize=4)
    ax.set_yticks(np.arange(len(names)), names)
    ax.set(xlim=(0, 1), xlabel="Bradley-Terry score (95 % CI)")
    return fig
