"""Composition audits: how every attribute (and chosen intersections) of a dataset is represented,
and, for a ``synth`` dataset, the achieved distribution against its recipe's targets."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Engine

MAX_LEVELS = 20
"""An attribute with more distinct values than this is summarised as continuous, not tabulated."""


def _key(value: Any) -> tuple[bool, str]:
    return (value is None, str(value))


def representation(rows: Sequence[Mapping[str, Any]], attributes: Sequence[str] | None = None,
                   intersections: Sequence[str] = ()) -> dict[str, Any]:
    """n and share of every value of every attribute and intersection over ``rows``.

    Args:
        rows: one ``{attribute: text value or None}`` mapping per sample.
        attributes: attributes to tabulate (default: every attribute seen).
        intersections: ``"a*b"`` specs; a sample's value is ``"v & w"``, None when one is missing.

    Returns:
        ``{"n_samples", "attributes": {name: [{"value", "n", "share"}]}, "continuous": {name: {"n",
        "min", "median", "max"}}}``; ``share = n / n_samples`` in [0, 1]; samples without the
        attribute count under ``None``, so every tabulated attribute's shares sum to 1. Numeric
        attributes with more than :data:`MAX_LEVELS` values go to ``continuous``.

    Raises:
        KeyError: an intersection names an attribute no sample has.
    """
    n = len(rows)
    seen = sorted({k for r in rows for k in r})
    names = list(attributes) if attributes is not None else seen
    tables: dict[str, list[dict[str, Any]]] = {}
    continuous: dict[str, dict[str, float]] = {}

    def tabulate(name: str, values: list[Any]) -> None:
        counts = Counter(values)
        levels = [v for v in counts if v is not None]
        if len(levels) > MAX_LEVELS:
            try:
                vals = sorted(float(v) for v in values if v is not None)
            except ValueError:
                vals = []
            if vals:
                continuous[name] = {"n": len(vals), "min": vals[0], "median": vals[len(vals) // 2], "max": vals[-1]}
                return
        tables[name] = [{"value": v, "n": c, "share": c / n} for v, c in sorted(counts.items(), key=lambda kv: _key(kv[0]))]

    for name in names:
        tabulate(name, [r.get(name) for r in rows])
    for spec in intersections:
        parts = spec.split("*")
        missing = [p for p in parts if p not in seen]
        if missing:
            raise KeyError(f"intersection {spec!r}: no sample has attribute(s) {missing} (known: {seen})")
        vals = []
        for r in rows:
            vs = [r.get(p) for p in parts]
            vals.append(None if any(v is None for v in vs) else " & ".join(str(v) for v in vs))
        tabulate(spec, vals)
    return {"n_samples": n, "attributes": tables, "continuous": continuous}


def recipe_targets(recipe: Mapping[str, Any], samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Achieved against target for a ``synth`` dataset whose build did not store its targets,
    re-derived from its recipe.

    Args:
        recipe: the recipe as stored in the catalog (``Recipe.model_dump(mode="json")``).
        samples: catalog samples (``has_subject``, ``split``, ``attributes``).

    Returns:
        The shape of :func:`achieved_against`. For ``uniform`` quotas the target cells are the
        product of the levels seen among the positives (as the planner does).
    """
    from synth.balance import cell_of, largest_remainder, target_shares

    bal = recipe.get("balance") or {}
    columns = list(bal.get("columns") or [])
    cells: list[dict[str, Any]] = []
    if columns:
        pos = [s for s in samples if s["has_subject"]]
        observed = sorted({c for c in (cell_of(s["attributes"], columns) for s in pos) if c is not None})
        shares = target_shares(columns, bal.get("mode", "uniform"), [(c["values"], c["share"]) for c in bal.get("cells") or []], observed)
        keys = sorted(shares)
        cells = [{"values": list(k), "target": n} for k, n in zip(keys, largest_remainder([shares[k] for k in keys], len(pos)))]
    targets = {"negatives": float(recipe.get("negatives", 0.0)),
               "splits": {k: float(v) for k, v in (recipe.get("splits") or {}).items()},
               "balance": {"columns": columns, "cells": cells}}
    return achieved_against(targets, samples)


def achieved_against(targets: Mapping[str, Any], samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A dataset's achieved composition against build targets in the shape ``synth build`` stores
    them (``datasets.targets``: ``negatives`` share, ``splits`` shares, ``balance.columns`` and
    ``balance.cells`` with planned counts).

    Returns:
        ``{"negatives": {target, achieved, deviation}, "splits": [{split, target, achieved,
        deviation}], "balance": synth.balance.balance_report(...) over the positives (with
        ``unassigned``) or None}``; shares in [0, 1], deviation = achieved - target.
    """
    from synth.balance import balance_report, cell_of

    n = len(samples)
    pos = [s for s in samples if s["has_subject"]]

    def share(k: int) -> float:
        return k / n if n else float("nan")

    neg = share(n - len(pos))
    split_counts = Counter(s.get("split") for s in samples)
    out: dict[str, Any] = {
        "negatives": {"target": targets["negatives"], "achieved": neg, "deviation": neg - targets["negatives"]},
        "splits": [{"split": k, "target": v, "achieved": share(split_counts.get(k, 0)), "deviation": share(split_counts.get(k, 0)) - v}
                   for k, v in targets["splits"].items()],
        "balance": None,
    }
    columns = targets["balance"]["columns"]
    if columns:
        cells = [cell_of(s["attributes"], columns) for s in pos]
        out["balance"] = balance_report({tuple(c["values"]): int(c["target"]) for c in targets["balance"]["cells"]},
                                        Counter(c for c in cells if c is not None), columns)
        out["balance"]["unassigned"] = sum(c is None for c in cells)
    return out


def dataset_targets(info: Mapping[str, Any], samples: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Achieved against target for a ``synth`` dataset revision: from the targets its build stored
    (``datasets.targets``), or for a revision registered before builds stored them, re-derived from
    its recipe (:func:`recipe_targets`). None for an imported dataset.

    Returns:
        The shape of :func:`achieved_against`, plus ``"source"``: ``"build"`` or ``"recipe"``.
    """
    if info["kind"] != "synth":
        return None
    if info.get("targets"):
        return {**achieved_against(info["targets"], samples), "source": "build"}
    return {**recipe_targets(info["recipe"], samples), "source": "recipe"} if info.get("recipe") else None


def composition(engine: Engine, dataset: str, intersections: Sequence[str] = ()) -> dict[str, Any]:
    """Composition audit of a catalog dataset: :func:`representation` of every attribute and
    intersection, each attribute's provenance, and for a ``synth`` dataset
    :func:`recipe_targets`.

    Returns:
        ``{"dataset", "kind", "n_samples", "attributes", "continuous", "provenance", "targets"}``
        (``targets`` None unless the dataset was built by ``synth``).

    Raises:
        KeyError: no dataset of that name, or an unknown attribute in an intersection.
    """
    from db.catalog import dataset_samples

    info, samples = dataset_samples(engine, dataset)
    rep = representation([s["attributes"] for s in samples], intersections=intersections)
    targets = dataset_targets(info, samples)
    return {"dataset": f"{info['name']}@{info['revision']}", "kind": info["kind"], **rep, "provenance": info["provenance"], "targets": targets}
