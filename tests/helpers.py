"""Shared test set-up: real ECSSD ids, prediction folders made from ground truth, and a catalog with
real ECSSD photos scored by two releases and raters on it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
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


def ecssd_ids(n: int = 40) -> list[str]:
    """The first ``n`` ECSSD photo ids, sorted."""
    return sorted(p.stem for p in (ECSSD / "images").glob("*.jpg"))[:n]


def erode_px(mask: np.ndarray, px: int) -> np.ndarray:
    """``mask`` eroded by ``px`` pixels (a (2 px + 1) square); unchanged for px = 0."""
    return cv2.erode(mask, np.ones((2 * px + 1, 2 * px + 1), np.uint8)) if px else mask


def write_predictions(folder: Path, ids, transform=None, conf=None, scale: float = 1.0, root: Path = ECSSD) -> Path:
    """A predictions folder made from the ground-truth masks of ``root``: ``masks/<id>.png`` (each
    mask through ``transform(mask, id)`` and rescaled by ``scale``) and ``confidences.csv``
    (``conf(i)`` for the i-th id, default 0.9)."""
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    rows = ["sample_id,confidence"]
    for i, k in enumerate(ids):
        m = cv2.imread(str(root / "masks" / f"{k}.png"), cv2.IMREAD_GRAYSCALE)
        if transform is not None:
            m = transform(m, k)
        if scale != 1.0:
            m = cv2.resize(m, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        cv2.imwrite(str(folder / "masks" / f"{k}.png"), m)
        rows.append(f"{k},{conf(i) if conf else 0.9}")
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
    pos = {k: i for i, k in enumerate(ids)}
    # confidences cycle through 0.2-0.95, so some sit near the 0.5 threshold
    conf = lambda i: round(0.2 + 0.75 * ((i * 7) % 16) / 15, 4)  # noqa: E731
    good = lambda m, k: np.zeros_like(m) if pos[k] < BROKEN else erode_px(m, pos[k] % 4)  # noqa: E731
    for name, transform in (("good", good), ("eroded", lambda m, k: erode_px(m, 6))):
        folder = write_predictions(tmp / f"pred-{name}", ids, transform, conf)
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


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_app(url: str, env: dict[str, str] | None = None):
    """``raters serve`` on a free port over the catalog ``url``; yields the app's URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "raters.cli", "serve", "--port", str(port)], cwd=Path(__file__).resolve().parents[1],
                            env={**os.environ, "DATABASE_URL": url, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1)
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"raters serve exited: {proc.stdout.read().decode()[-2000:]}") from None
                time.sleep(0.25)
        else:
            raise RuntimeError("raters serve did not answer within 50 s")
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


