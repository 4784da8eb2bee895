"""Slices of a scored run: per attribute value and per intersection of two attributes.

A run table (:class:`evalhub.runs.RunTable`) holds one row per image with the metric columns,
``confidence``, ``accepted``, ``acceptable``, ``has_subject`` and one ``attr_<name>`` text column per
attribute. A slice's numbers come from the one grouped-statistics engine (:mod:`evalhub.groups`),
the same that fairness reports use, so a slice and the fairness group of the same attribute value
have equal numbers and CIs.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import pandas as pd

from evalhub.groups import ATTR_PREFIX, GroupSettings, attribute_columns, grouped_stats, slice_seed  # noqa: F401
from evalhub.registry import names
from evalhub.stats import LEVEL, N_BOOT

SLICE_METRICS = names(level="image", slices=True)
GATE_SLICE_METRICS = ("acceptance_rate", "ece")
NOT_SLICED = ("area_fraction",)
MAX_LEVELS = 12
MIN_N = 30


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
    level: float = LEVEL,
) -> dict[str, Any]:
    """Every slice of a run table.

    Each slice's image metrics are means over its images with a subject (negatives are judged by the
    gate only) with stratified percentile bootstrap CIs; ``acceptance_rate`` and ``ece`` (15
    equal-width bins) are over every image of the slice (:mod:`evalhub.groups`).

    Args:
        df: the run table.
        attributes: attributes to slice (default: :func:`sliceable`).
        intersections: see :func:`parse_intersections` (default: every pair).
        min_n: slices with fewer images are kept and marked ``insufficient`` (never dropped).
        metrics: image metrics (registry names) to report.
        seed: base seed; each slice's bootstrap seed also depends on its name only, so the numbers
            do not change when other slices are added.

    Returns:
        ``{"slices": [...], "not_sliced": {attribute: reason}, "min_n": min_n}``; each slice has
        ``attribute`` (``a`` or ``a*b``), ``value`` (``v`` or ``v & w``), ``insufficient``, ``n``,
        ``n_positive``, ``metrics`` (``{m: {"mean", "lo", "hi"}}``), ``acceptance_rate`` and
        ``ece``. Images without a value for the attribute are not in its slices.

    Raises:
        ValueError: an unknown attribute or a malformed intersection (named).
    """
    keep, skipped = sliceable(df)
    if attributes is not None:
        unknown = [a for a in attributes if a not in attribute_columns(df)]
        if unknown:
            raise ValueError(f"unknown attributes {unknown} (known: {attribute_columns(df)})")
        keep = list(attributes)
    settings = GroupSettings(n_boot=n_boot, level=level, seed=seed, min_n=min_n)
    present = [m for m in metrics if m in df.columns]
    specs = list(keep) + [f"{a}*{b}" for a, b in parse_intersections(intersections, keep)]
    slices = []
    for spec in specs:
        gs = grouped_stats(df, spec, (*present, *GATE_SLICE_METRICS), settings)
        by_group, r = gs.by_group, gs.replicates
        counted = {m: gs.counted(m) for m in present}
        pos = r.table["has_subject"].to_numpy(bool)
        for gi, value in enumerate(gs.values):
            rows = r.members[gi]
            row = by_group[value]
            slices.append({
                "attribute": spec, "value": value, "insufficient": rows.size < min_n, "n": int(rows.size),
                "n_positive": int(pos[rows].sum()),
                "metrics": {m: {"mean": row[m].value, "lo": row[m].lo, "hi": row[m].hi}
                            for m in present if counted[m][value] > 0},
                "acceptance_rate": row["acceptance_rate"].value, "ece": row["ece"].value,
            })
    return {"slices": slices, "not_sliced": skipped, "min_n": min_n}
