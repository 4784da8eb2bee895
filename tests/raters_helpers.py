"""Shared set-up of the rater tests: a catalog with real ECSSD photos scored by two releases."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

import db
from evalhub.datasets import import_dataset
from evalhub.scoring import score
from raters.service import add_user
from tests.conftest import ECSSD

BROKEN = 6
"""The first BROKEN photos get an empty prediction from release 'good' (IoU 0: gold 'broken')."""


def ecssd_ids(n: int) -> list[str]:
    return sorted(p.stem for p in (ECSSD / "images").glob("*.jpg"))[:n]


def write_release(folder: Path, ids: list[str], erode_px, broken: int = 0) -> Path:
    """Ground truth eroded by ``erode_px(i)`` px for the i-th id (the first ``broken`` ids empty) with
    confidences that cycle through 0.2-0.95, so some sit near the 0.5 threshold."""
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    rows = ["sample_id,confidence"]
    for i, k in enumerate(ids):
        m = cv2.imread(str(ECSSD / "masks" / f"{k}.png"), cv2.IMREAD_GRAYSCALE)
        if i < broken:
            m = np.zeros_like(m)
        elif erode_px(i):
            px = erode_px(i)
            m = cv2.erode(m, np.ones((2 * px + 1, 2 * px + 1), np.uint8))
        cv2.imwrite(str(folder / "masks" / f"{k}.png"), m)
        rows.append(f"{k},{0.2 + 0.75 * ((i * 7) % 16) / 15:.4f}")
    (folder / "confidences.csv").write_text("\n".join(rows) + "\n")
    return folder


def scored_catalog(url: str, tmp: Path, n: int = 40) -> dict:
    """Import ``n`` ECSSD photos and score two prediction-folder releases on them:
    ``good`` (ground truth eroded by 0-3 px in turn, the first 6 empty) and ``eroded`` (eroded by
    6 px)."""
    from db.catalog import register_release

    engine = db.connect(url)
    import_dataset(engine, "ecssd", ECSSD / "images", ECSSD / "masks", limit=n)
    ids = ecssd_ids(n)
    runs = {}
    for name, px, broken in (("good", lambda i: i % 4, BROKEN), ("eroded", lambda i: 6, 0)):
        folder = write_release(tmp / f"pred-{name}", ids, px, broken)
        register_release(engine, name, "predictions", str(folder), 0.5, {"confidences": True})
        runs[name] = score(engine, name, "ecssd", tmp / f"run-{name}", workers=1, n_boot=50, progress=False).out
    return {"engine": engine, "ids": ids, "runs": runs}


def add_raters(engine, names: list[str], admin: str | None = "root") -> dict[str, str]:
    """Accounts ``name`` with password ``pw-<name>-secret``; returns name -> password."""
    out = {}
    for n in names:
        out[n] = f"pw-{n}-secret"
        add_user(engine, n, out[n], "rater")
    if admin:
        out[admin] = f"pw-{admin}-secret"
        add_user(engine, admin, out[admin], "admin")
    return out
