"""evalhub lift on real photos: cut-outs whose alpha is the upsampled prediction, the gate's
decision, unreadable photos listed while the rest go on, and the folder's ownership."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

import db
from db.catalog import register_release
from evalhub.cli import app
from evalhub.lift import feather_px
from evalhub.releases import OnnxRelease, load_manifest
from evalhub.subjects import SubjectSpec, split_subjects
from synth.io import read_rgb
from tests.conftest import ECSSD
from tests.test_onnx_release import build_model, manifest

runner = CliRunner()


@pytest.fixture
def setup(tmp_path, sqlite_url):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("0001", "0005", "0009"):
        shutil.copy(ECSSD / "images" / f"{name}.jpg", photos / f"{name}.jpg")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    model = build_model(tmp_path / "m.onnx")
    man = manifest(tmp_path / "r.yaml", upsample={"method": "guided", "radius": 1, "eps": 1e-3})
    engine = db.connect(sqlite_url)
    doc = load_manifest(man).model_dump()
    register_release(engine, "toy", "onnx", str(model), threshold=0.0, manifest=doc)
    register_release(engine, "strict", "onnx", str(model), threshold=1.0, manifest=doc)
    yield engine, photos, model, man
    engine.dispose()


def test_lift_writes_cut_outs_whose_alpha_is_the_upsampled_prediction(setup, tmp_path, sqlite_url):
    engine, photos, model, man = setup
    res = runner.invoke(app, ["lift", "--release", "toy", "--photos", str(photos), "--out", str(tmp_path / "out"),
                              "--no-progress", "--database-url", sqlite_url])
    assert res.exit_code == 0, res.output
    assert "3 photos lifted" in res.output and "1 not read" in res.output and "broken.jpg" in res.output
    failures = json.loads((tmp_path / "out" / "failures.json").read_text())
    assert [f["photo"] for f in failures] == [str(photos / "broken.jpg")]
    rel = OnnxRelease(model, load_manifest(man))
    for name in ("0001.jpg", "0005.jpg", "0009.jpg"):
        rgb = read_rgb(photos / name)
        (prob, conf), = rel.predict([rgb])
        side = json.loads((tmp_path / "out" / f"{name}.json").read_text())
        assert side["accepted"] and side["confidence"] == pytest.approx(conf) and side["upsample"] == "guided(r=1, eps=1e-03)"
        subs = split_subjects(prob >= 0.5, SubjectSpec())
        assert len(side["subjects"]) == subs.n >= 1
        assert [s["area_px"] for s in side["subjects"]] == subs.areas.tolist()
        union = cv2.imread(str(tmp_path / "out" / side["union"]), cv2.IMREAD_UNCHANGED)
        assert union.shape == (*rgb.shape[:2], 4)
        np.testing.assert_array_equal(union[..., 2::-1], rgb)  # the photo's own colours, BGR on disk
        a8 = np.round(prob * 255).astype(np.uint8)
        dist = cv2.distanceTransform((subs.labels == 0).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        band = dist <= feather_px(prob.shape)
        np.testing.assert_array_equal(union[..., 3], np.where(band, a8, 0))
        parts = [cv2.imread(str(tmp_path / "out" / s["file"]), cv2.IMREAD_UNCHANGED)[..., 3].astype(int) for s in side["subjects"]]
        np.testing.assert_array_equal(sum(parts), union[..., 3])  # every pixel of the union belongs to one subject
        x, y, w, h = side["subjects"][0]["box_xywh"]
        assert (subs.labels[y : y + h, x : x + w] == 1).any() and not (subs.labels[:y] == 1).any()
    # the same lift again is safe; another release into the folder is refused, naming what it holds
    again = runner.invoke(app, ["lift", "--release", "toy", "--photos", str(photos), "--out", str(tmp_path / "out"),
                                "--no-progress", "--database-url", sqlite_url])
    assert again.exit_code == 0, again.output
    other = runner.invoke(app, ["lift", "--release", "strict", "--photos", str(photos), "--out", str(tmp_path / "out"),
                                "--no-progress", "--database-url", sqlite_url])
    assert other.exit_code == 2 and "toy@1" in other.output and len(other.output.strip().splitlines()) == 1


def test_a_rejecting_gate_writes_sidecars_only_and_prediction_folders_are_refused(setup, tmp_path, sqlite_url):
    engine, photos, _, _ = setup
    res = runner.invoke(app, ["lift", "--release", "strict", "--photos", str(photos), "--out", str(tmp_path / "out"),
                              "--no-progress", "--database-url", sqlite_url])
    assert res.exit_code == 0, res.output
    side = json.loads((tmp_path / "out" / "0001.jpg.json").read_text())
    assert side["accepted"] is False and side["subjects"] == [] and side["union"] is None
    assert not (tmp_path / "out" / "0001.jpg").exists()
    register_release(engine, "folder", "predictions", str(tmp_path), threshold=0.5)
    res = runner.invoke(app, ["lift", "--release", "folder", "--photos", str(photos), "--out", str(tmp_path / "o2"),
                              "--no-progress", "--database-url", sqlite_url])
    assert res.exit_code == 2 and "needs an ONNX release" in res.output
