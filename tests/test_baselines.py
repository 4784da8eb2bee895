"""Model-free baseline releases: the centre prior by its formula, GrabCut on a clean synthetic
subject and on real photos through the CLI."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from evalhub.baselines import centre_prior, grabcut
from evalhub.cli import app
from evalhub.metrics import region_metrics
from tests.conftest import ECSSD

runner = CliRunner()


def test_centre_prior_formula():
    p = centre_prior(4, 6, sigma=0.25)
    assert p.shape == (4, 6) and p.dtype == np.float32
    # pixel (0, 0): offsets (0.5/6 - 0.5, 0.5/4 - 0.5) = (-5/12, -3/8)
    assert p[0, 0] == pytest.approx(math.exp(-((5 / 12) ** 2 + (3 / 8) ** 2) / (2 * 0.25**2)), rel=1e-6)
    assert np.allclose(p, p[::-1, ::-1])  # symmetric about the centre
    with pytest.raises(ValueError, match="sigma"):
        centre_prior(4, 4, sigma=0)


def test_centre_ellipse_by_hand():
    from evalhub.baselines import centre_ellipse

    e = centre_ellipse(10, 20, axes=(0.5, 0.6))
    # centre row: |x| <= 0.25 of the width -> pixel centres 5.5/20 - 0.5 = -0.225 ... 0.225: columns 5-14
    assert np.flatnonzero(e[5]).tolist() == list(range(5, 15))
    # centre column: |y| <= 0.3 of the height -> rows 2-7
    assert np.flatnonzero(e[:, 10]).tolist() == list(range(2, 8))
    assert not e[0, 0] and e.sum() == pytest.approx(math.pi * 0.25 * 0.3 * 200, rel=0.15)
    with pytest.raises(ValueError, match="axes"):
        centre_ellipse(10, 10, axes=(0, 1))


def test_grabcut_finds_a_clean_subject():
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(60, 8, (160, 200, 3)), 0, 255).astype(np.uint8)
    truth = np.zeros((160, 200), np.uint8)
    cv2.ellipse(truth, (100, 85), (45, 55), 0, 0, 360, 1, -1)
    img[truth.astype(bool)] = (220, 180, 40)
    mask, conf = grabcut(img, max_side=200)
    r = region_metrics(mask, truth.astype(bool))
    assert r["iou"] > 0.95 and conf > 0.9


def test_baseline_cli_writes_a_scorable_release(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    assert runner.invoke(app, ["import-dataset", "e8", "--images", str(ECSSD / "images"), "--masks", str(ECSSD / "masks"),
                               "--limit", "8", "--database-url", url]).exit_code == 0
    for method in ("grabcut", "centre"):
        r = runner.invoke(app, ["release", "baseline", method, "--dataset", "e8", "--method", method, "--out", str(tmp_path / method),
                                "--workers", "1", "--database-url", url])
        assert r.exit_code == 0, r.output
        assert len(list((tmp_path / method / "masks").glob("*.png"))) == 8
        r = runner.invoke(app, ["score", "--release", method, "--dataset", "e8", "--out", str(tmp_path / f"run-{method}"),
                                "--workers", "1", "--no-progress", "--database-url", url])
        assert r.exit_code == 0, r.output
    gc = pd.read_parquet(tmp_path / "run-grabcut" / "samples.parquet")
    conf = pd.read_csv(tmp_path / "grabcut" / "confidences.csv", dtype={"sample_id": str})
    assert gc["confidence"].to_numpy() == pytest.approx(conf.set_index("sample_id").loc[gc["sample_key"], "confidence"].to_numpy(), abs=1e-6)
    assert not (tmp_path / "centre" / "confidences.csv").exists()
    assert "proxy" in (tmp_path / "run-centre" / "summary.json").read_text()
    # GrabCut beats the centre prior on real photos
    ce = pd.read_parquet(tmp_path / "run-centre" / "samples.parquet")
    assert gc["iou"].mean() > ce["iou"].mean()
    r = runner.invoke(app, ["release", "baseline", "x", "--dataset", "e8", "--method", "magic", "--out", str(tmp_path / "x"), "--database-url", url])
    assert r.exit_code == 2 and "magic" in r.output
