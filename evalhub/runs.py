"""The one typed way to read a scored run: from the catalog, never from its folder's files.

``evalhub compare``, reports, ``fairness`` and ``raters`` read runs through :func:`read_run`; the
run folder's ``samples.parquet`` and ``summary.json`` are exports for people and other tools.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from db.catalog import RunRecord, find_run, run_frame
from db.engine import shown_url
from evalhub.registry import IMAGE_METRICS


class RunNotFound(LookupError):
    """A run folder or id the catalog does not hold (named)."""


@dataclass
class RunTable:
    """A scored run as the catalog holds it.

    Attributes:
        record: the run's identity (id, folder, ``release@N``, ``dataset@N``, settings, summary).
        table: one row per scored image, ordered by ``sample_key``: ``sample_key, split,
            has_subject, image_path, mask_path, width, height, confidence`` (float in [0, 1]),
            ``accepted, acceptable, prediction_resized`` (bool), one float column per per-image
            metric of :mod:`evalhub.registry` (NaN where undefined: negatives, no alpha matte) and
            one ``attr_<name>`` text column per attribute (None where missing).
    """

    record: RunRecord
    table: pd.DataFrame

    @property
    def summary(self) -> dict[str, Any]:
        """The run summary (means with CIs, calibration, slices, quarantine, warnings, settings)."""
        return self.record.summary

    @property
    def path(self) -> Path:
        return Path(self.record.path)


def run_ref(run: str | Path | int) -> str | int:
    """A run id stays an id; a folder becomes its resolved path string (how runs are stored)."""
    return run if isinstance(run, int) else str(Path(run).resolve())


def read_run(engine: Engine, run: str | Path | int) -> RunTable:
    """The run stored for folder ``run`` (or run id) with its per-image table.

    Raises:
        RunNotFound: the catalog holds no such run, or holds it without its summary (stored by a
            release before the catalog kept whole summaries and the folder's summary.json is gone).
    """
    rec = find_run(engine, run_ref(run))
    if rec is None:
        raise RunNotFound(f"{run} is not a run in the catalog at {shown_url(str(engine.url))}: "
                          "score it with `evalhub score --out` (or pass the catalog it was scored into with --database-url)")
    if "calibration" not in rec.summary:
        raise RunNotFound(f"run {rec.path} ({rec.release} on {rec.dataset}) has no full summary in the catalog "
                          "(stored by an older liftlab); score it again into a new folder")
    table = run_frame(engine, rec.id)
    for m in IMAGE_METRICS:
        if m not in table.columns:
            table[m] = np.nan
    return RunTable(rec, table)
