"""Joint quotas over attribute columns: targets as exact per-cell counts, and how well a build hit them."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np

Cell = tuple[str, ...]


class QuotaError(ValueError):
    """A quota that cannot be met; raised before any work starts and naming the cells."""


def largest_remainder(shares: Sequence[float], total: int) -> list[int]:
    """Integer counts summing to ``total`` and proportional to ``shares`` (Hamilton's method).

    Each count is ``floor(total * share / sum(shares))``; the leftover units go to the largest
    fractional parts, ties to the earlier entry. All-zero shares give all-zero counts.

    Raises:
        ValueError: a negative share or total.
    """
    s = np.asarray(shares, dtype=np.float64)
    if total < 0 or (s < 0).any():
        raise ValueError("shares and total must be non-negative")
    if s.sum() <= 0:
        return [0] * len(s)
    exact = total * s / s.sum()
    counts = np.floor(exact).astype(np.int64)
    left = total - int(counts.sum())
    order = sorted(range(len(s)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[:left]:
        counts[i] += 1
    return [int(c) for c in counts]


def cell_of(attributes: Mapping[str, object], columns: Sequence[str]) -> Cell | None:
    """The cell of an item: its values of ``columns`` as text (bools as ``true``/``false``);
    None when any value is missing."""
    out = []
    for c in columns:
        v = attributes.get(c)
        if v is None:
            return None
        out.append(("true" if v else "false") if isinstance(v, bool) else str(v))
    return tuple(out)


def target_shares(
    columns: Sequence[str], mode: str, cells: Sequence[tuple[Mapping[str, str], float]], observed: Sequence[Cell]
) -> dict[Cell, float]:
    """Target share per cell.

    ``uniform``: every combination of the observed levels of each column (the Cartesian product,
    so an empty combination is a cell too and makes the quota impossible). ``explicit``: the given
    ``(values, share)`` pairs.
    """
    if not columns:
        return {(): 1.0}
    if mode == "uniform":
        levels = [sorted({c[i] for c in observed}) for i in range(len(columns))]
        combos = list(itertools.product(*levels))
        return {tuple(c): 1.0 / len(combos) for c in combos} if combos else {}
    return {tuple(str(v[c]) for c in columns): float(share) for v, share in cells}


def check_feasible(targets: Mapping[Cell, int], available: Mapping[Cell, int], columns: Sequence[str]) -> None:
    """Raise :class:`QuotaError` naming every cell with a positive target but no item."""
    empty = [c for c, n in targets.items() if n > 0 and available.get(c, 0) == 0]
    if empty:
        names = "; ".join(", ".join(f"{k}={v}" for k, v in zip(columns, c)) for c in empty)
        raise QuotaError(
            f"balance quota cannot be met: {len(empty)} cell(s) have a target but no usable foreground: {names}"
        )


def balance_report(targets: Mapping[Cell, int], achieved: Mapping[Cell, int], columns: Sequence[str]) -> dict:
    """Achieved against target per cell.

    Returns a dict with ``cells`` (values, target and achieved counts and shares, deviation of the
    shares), ``max_abs_deviation`` (largest |achieved share - target share|) and
    ``total_variation_distance`` (half the L1 distance between the two share distributions).
    """
    keys = sorted(set(targets) | set(achieved))
    nt = max(sum(targets.values()), 1)
    na = max(sum(achieved.values()), 1)
    rows = []
    l1 = 0.0
    max_dev = 0.0
    for k in keys:
        ts, as_ = targets.get(k, 0) / nt, achieved.get(k, 0) / na
        dev = as_ - ts
        l1 += abs(dev)
        max_dev = max(max_dev, abs(dev))
        rows.append(
            {
                "cell": dict(zip(columns, k)),
                "target": int(targets.get(k, 0)),
                "achieved": int(achieved.get(k, 0)),
                "target_share": round(ts, 6),
                "achieved_share": round(as_, 6),
                "deviation": round(dev, 6),
            }
        )
    return {
        "columns": list(columns),
        "cells": rows,
        "max_abs_deviation": round(max_dev, 6),
        "total_variation_distance": round(0.5 * l1, 6),
    }
