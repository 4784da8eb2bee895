"""Composition audit: how every attribute of a dataset is represented."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import Engine


MAX_LEVELS = 20
"""An attribute with more distinct values than this is summarised as continuous, not tabulated."""


def composition(engine: Engine, dataset: str) -> dict[str, Any]:
    """Representation of every attribute of a catalog dataset.

    Returns:
        ``{"dataset", "n_samples", "attributes": {name: [{"value", "n", "share"}, ...]},
        "continuous": {name: {"n", "min", "median", "max"}}}`` where ``share = n / n_samples``
        (in [0, 1]) and samples without the attribute count under the value ``None`` (so every
        categorical attribute's shares sum to 1). Numeric attributes with more than
        :data:`MAX_LEVELS` distinct values go to ``continuous``.

    Raises:
        KeyError: no dataset of that name.
    """
    from db.catalog import sample_attributes
    from db.engine import session_scope
    from db.models import Dataset, Sample
    from sqlalchemy import func, select

    attrs = sample_attributes(engine, dataset)
    with session_scope(engine) as s:
        n = s.scalar(select(func.count()).select_from(Sample).join(Dataset).where(Dataset.name == dataset))
    names = sorted({k for row in attrs.values() for k in row})
    out: dict[str, list[dict[str, Any]]] = {}
    continuous: dict[str, dict[str, float]] = {}
    for name in names:
        counts = Counter(row.get(name) for row in attrs.values())
        levels = [v for v in counts if v is not None]
        if len(levels) > MAX_LEVELS:
            try:
                vals = sorted(float(row[name]) for row in attrs.values() if row.get(name) is not None)
            except ValueError:
                vals = []
            if vals:
                continuous[name] = {"n": len(vals), "min": vals[0], "median": vals[len(vals) // 2], "max": vals[-1]}
                continue
        counts[None] += n - sum(counts.values())
        if counts[None] == 0:
            del counts[None]
        out[name] = [
            {"value": v, "n": c, "share": c / n}
            for v, c in sorted(counts.items(), key=lambda kv: (kv[0] is None, str(kv[0])))
        ]
    return {"dataset": dataset, "n_samples": n, "attributes": out, "continuous": continuous}
