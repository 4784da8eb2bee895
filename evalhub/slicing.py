"""Slices of a scored run: per attribute value and per intersection of two attributes.

A run table (``samples.parquet``) holds one row per image with the metric columns, ``confidence``,
``accepted``, ``acceptable``, ``has_subject`` and one ``attr_<name>`` text column per attribute.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from evalhub.calibration import ece
from evalhub.stats import LEVEL, N_BOOT, bootstrap_indices, percentile_interval

ATTR_PREFIX = "attr_"
SLICE_METRICS = ("iou", "boundary_f1", "boundary_iou")
NOT_SLICED = ("area_fraction",)
MAX_LEVELS = 12
MIN_N = 30


def attribute_columns(df: pd.DataFrame) -> list[str]:
    """Attribute names (without the ``attr_`` prefix) of a run table, in column order."""
    return [c[len(ATTR_PREFIX):] for c in df.columns if c.startswith(ATTR_PREFIX)]


def sliceable(df: pd.DataFrame, max_levels: int = MAX_LEVELS) -> tuple[list[str], dict[str, str]]:
    """Attributes that make useful slices, and the others with the reason they are not sliced.

    Continuous values (``area_fraction``), attributes with more than ``max_levels`` distinct values
    (ids, sizes) and attributes with no value at all are not sliced; the report lists them.
    """
    keep, skipped = [], {}
    for a in attribute_columns(df):
        col = df[ATTR_PREFIX + a]
        levels = col.dropna().nunique()
        if a in NOT_SLICED:
            skipped[a] = "continuous (use its bucket)"
        elif levels == 0:
            skipped[a] = "no values"
        elif levels > max_levels:
            skipped[a] = f"{levels} distinct values (> {max_levels})"
        else:
            keep.append(a)
    return keep, skipped


def slice_seed(base: int, *parts: str) -> int:
    """A bootstrap seed for one slice: ``base`` plus the CRC-32 of its name parts, so a slice's
    numbers do not change when other slices are added or removed."""
    return (base + zlib.crc32("\x1f".join(parts).encode())) % (2**31)


def slice_stats(
    part: pd.DataFrame, metrics: Sequence[str] = SLICE_METRICS, n_boot: int = N_BOOT, level: float = LEVEL, seed: int = 0
) -> dict[str, Any]:
    """Numbers of one slice.

    Region metrics are means over the slice's images that have a subject (negatives are judged by
    the gate only), each with a seeded percentile bootstrap CI (one resampling shared by all
    metrics); ``acceptance_rate`` and ``ece`` (15 equal-width bins) are over every image of the
    slice.

    Returns:
        ``{"n", "n_positive", "metrics": {m: {"mean", "lo", "hi"}}, "acceptance_rate", "ece"}``.
    """
    pos = part[part["has_subject"].astype(bool)]
    out: dict[str, Any] = {"n": int(len(part)), "n_positive": int(len(pos)), "metrics": {}}
    cols = [m for m in metrics if m in pos.columns and pos[m].notna().any()]
    if len(pos) and cols:
        values = pos[cols].to_numpy(dtype=np.float64)
        idx = bootstrap_indices(len(pos), n_boot, seed)
        reps = np.nanmean(values[idx], axis=1) if np.isnan(values).any() else values[idx].mean(axis=1)
        for j, m in enumerate(cols):
            lo, hi = percentile_interval(reps[:, j], level)
            out["metrics"][m] = {"mean": float(np.nanmean(values[:, j])), "lo": lo, "hi": hi}
    out["acceptance_rate"] = float(part["accepted"].mean()) if len(part) else float("nan")
    out["ece"] = ece(part["confidence"].to_numpy(), part["acceptable"].to_numpy()) if len(part) else float("nan")
    return out


def parse_intersections(spec: str | None, attributes: Sequence[str]) -> list[tuple[str, str]]:
    """``"a*b,c*d"`` to pairs; None means every pair of ``attributes``; ``""`` none.

    Raises:
        ValueError: a malformed pair or an unknown attribute (named).
    """
    if spec is None:
        return list(itertools.combinations(attributes, 2))
    pairs = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        parts = item.split("*")
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"intersection {item!r}: write two attributes as a*b")
        for p in parts:
            if p not in attributes:
                raise ValueError(f"intersection {item!r}: unknown or unsliceable attribute {p!r} (sliceable: {list(attributes)})")
        pairs.append((parts[0], parts[1]))
    return pairs


def slice_table(
    df: pd.DataFrame,
    attributes: Sequence[str] | None = None,
    intersections: str | None = None,
    min_n: int = MIN_N,
    metrics: Sequence[str] = SLICE_METRICS,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> dict[str, Any]:
    """Every slice of a run table.

    Args:
        df: the run table.
        attributes: attributes to slice (default: :func:`sliceable`).
        intersections: see :func:`parse_intersections` (default: every pair).
        min_n: slices with fewer images are kept and marked ``insufficient`` (never dropped).
        seed: base seed; each slice's bootstrap seed also depends on its name only, so the numbers
            do not change when other slices are added.

    Returns:
        ``{"slices": [...], "not_sliced": {attribute: reason}, "min_n": min_n}``; each slice has
        ``attribute`` (``a`` or ``a*b``), ``value`` (``v`` or ``v & w``), ``insufficient`` and the
        numbers of :func:`slice_stats`. Images without a value for the attribute are not in its
        slices.
    """
    keep, skipped = sliceable(df)
    if attributes is not None:
        unknown = [a for a in attributes if a not in attribute_columns(df)]
        if unknown:
            raise ValueError(f"unknown attributes {unknown} (known: {attribute_columns(df)})")
        keep = list(attributes)
    slices = []
    for attr, value, part in iter_slices(df, keep, intersections):
        s = slice_stats(part, metrics, n_boot, seed=slice_seed(seed, attr, value))
        slices.append({"attribute": attr, "value": value, "insufficient": s["n"] < min_n, **s})
    return {"slices": slices, "not_sliced": skipped, "min_n": min_n}


def iter_slices(df: pd.DataFrame, attributes: Sequence[str], intersections: str | None = None):
    """Yield ``(attribute, value, rows)`` for each value of each attribute, then for each value pair
    of each intersection (``"a*b"``, ``"v & w"``); rows without a value are in no slice."""
    for a in attributes:
        col = df[ATTR_PREFIX + a]
        for value in sorted(col.dropna().unique(), key=str):
            yield a, str(value), df[col == value]
    for a, b in parse_intersections(intersections, attributes):
        ca, cb = df[ATTR_PREFIX + a], df[ATTR_PREFIX + b]
        both = df[ca.notna() & cb.notna()]
        for (va, vb), part in both.groupby([ATTR_PREFIX + a, ATTR_PREFIX + b], sort=True):
            yield f"{a}*{b}", f"{va} & {vb}", part
