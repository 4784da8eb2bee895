"""evalhub end to end on real ECSSD photos: import, releases (prediction folders and ONNX), scoring,
calibration, slices, comparison, reports and every kind of bad input."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

import db
from db.catalog import dataset_samples, register_release
from evalhub.runs import read_run
from evalhub import calibration as C
from evalhub import metrics as M
from evalhub.cli import app
from evalhub.compare import compare_runs
from evalhub.datasets import import_dataset, read_mask, thin_fraction
from evalhub.scoring import ScoreError, score
from tests.conftest import ECSSD
from tests.helpers import ecssd_ids, write_predictions

N = 40
runner = CliRunner()


@pytest.fixture
def engine(sqlite_url):
    eng = db.connect(sqlite_url)
    yield eng
    eng.dispose()


@pytest.fixture
def ecssd(engine):
    import_dataset(engine, "ecssd40", ECSSD / "images", ECSSD / "masks", limit=N)
    return "ecssd40"


def erode(k):
    """A ``write_predictions`` transform: erosion by a k x k square."""
    return lambda m, _key: cv2.erode(m, np.ones((k, k), np.uint8))


def test_import_derives_attributes_and_provenance(engine, tmp_path):
    meta = tmp_path / "meta.csv"
    ids = ecssd_ids(12)
    meta.write_text("sample_id,group\n" + "\n".join(f"{k},{'a' if i % 3 else 'b'}" for i, k in enumerate(ids)) + "\n")
    res = import_dataset(engine, "e12", ECSSD / "images", ECSSD / "masks", metadata=meta, provenance={"group": "estimated"}, limit=12)
    assert res.n_samples == 12 and res.quarantine == []
    ds, samples = dataset_samples(engine, "e12")
    assert ds["provenance"]["group"] == "estimated" and ds["provenance"]["area_bucket"] == "derived"
    first = samples[0]
    mask = read_mask(ECSSD / "masks" / f"{first['sample_key']}.png")
    assert first["attributes"]["group"] == "b"
    assert float(first["attributes"]["area_fraction"]) == pytest.approx(mask.mean(), abs=1e-4)
    assert first["attributes"]["thin_structures"] == ("true" if thin_fraction(mask) >= 0.05 else "false")
    assert (first["width"], first["height"]) == (mask.shape[1], mask.shape[0])


def test_thin_fraction_by_hand():
    m = np.zeros((100, 100), bool)
    m[20:80, 20:80] = True  # 3600 px block; r = round(0.01 * 141) = 1, a 3x3 cross
    assert thin_fraction(m) == pytest.approx(4 / 3600)  # the opening by a cross loses the 4 corners
    m[0:20, 50] = True  # a 1-px-wide stalk of 20 px: its top 19 px go, the one touching the block stays
    assert thin_fraction(m) == pytest.approx((4 + 19) / 3620)


def test_perfect_predictions_score_one_and_calibration_matches(engine, ecssd, tmp_path):
    ids = ecssd_ids()
    conf = lambda i: round(0.05 + 0.9 * i / N, 3)  # noqa: E731
    write_predictions(tmp_path / "perfect", ids, conf=conf)
    register_release(engine, "perfect", "predictions", str(tmp_path / "perfect"), threshold=0.5)
    res = score(engine, "perfect", ecssd, tmp_path / "run", progress=False, workers=1)
    t = res.table
    assert len(t) == N
    for m in ("iou", "dice", "precision", "recall", "boundary_f1", "boundary_iou"):
        assert (t[m] == 1.0).all(), m
    assert (t["mae"] == 0).all()
    assert t["acceptable"].all()
    np.testing.assert_array_equal(t["accepted"], [conf(i) >= 0.5 for i in range(N)])
    cal = res.summary["calibration"]
    confs = np.array([conf(i) for i in range(N)])
    assert cal["ece"] == pytest.approx(C.ece(confs, np.ones(N, bool)))
    assert cal["ece"] == pytest.approx(1 - confs.mean())  # every image acceptable: ECE = 1 - mean confidence
    assert cal["brier"] == pytest.approx(((1 - confs) ** 2).mean())
    assert cal["far"] is None or np.isnan(cal["far"])  # no unacceptable image
    assert cal["frr"] == pytest.approx((confs < 0.5).mean())
    assert cal["recommended"] == {"threshold": confs.min(), "precision": 1.0, "coverage": 1.0}
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["metrics"]["iou"]["mean"] == 1.0 and summary["counts"]["n"] == N
    # the run folder is itself a predictions folder
    saved = cv2.imread(str(tmp_path / "run" / "predictions" / "masks" / f"{ids[0]}.png"), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(saved > 127, read_mask(ECSSD / "masks" / f"{ids[0]}.png"))


def test_scores_equal_direct_metrics_and_land_in_the_catalog(catalog_url, tmp_path):
    engine = db.connect(catalog_url)
    try:
        import_dataset(engine, "e20", ECSSD / "images", ECSSD / "masks", limit=20)
        ids = ecssd_ids(20)
        write_predictions(tmp_path / "p", ids, transform=lambda m, key: cv2.GaussianBlur(erode(9)(m, key), (0, 0), 2.5))
        register_release(engine, "blurry", "predictions", str(tmp_path / "p"), threshold=0.5)
        res = score(engine, "blurry", "e20", tmp_path / "run", progress=False, workers=1, min_n=5)
        row = res.table.set_index("sample_key").loc[ids[3]]
        gt = read_mask(ECSSD / "masks" / f"{ids[3]}.png")
        prob = cv2.imread(str(tmp_path / "p" / "masks" / f"{ids[3]}.png"), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
        direct = M.image_metrics(prob, gt)
        for m in ("iou", "dice", "boundary_f1", "boundary_iou", "mae"):
            assert row[m] == pytest.approx(direct[m], abs=1e-6), m
        stored = read_run(engine, tmp_path / "run").table.set_index("sample_key")
        assert len(stored) == 20
        assert stored.loc[ids[3], "iou"] == pytest.approx(direct["iou"])
        assert np.isnan(stored.loc[ids[3], "sad"])  # no alpha matte in ECSSD: NULL, not 0
        with engine.connect() as c:  # stored as NULL in metric_values
            assert c.execute(text("select count(*) from metric_values where metric = 'sad' and value is null")).scalar() == 20
        # the IoU threshold defines acceptability
        np.testing.assert_array_equal(res.table["acceptable"], res.table["iou"] >= 0.8)
    finally:
        engine.dispose()


def test_slices_by_hand_and_insufficient_ones_are_kept(engine, tmp_path):
    ids = ecssd_ids()
    meta = tmp_path / "meta.csv"
    meta.write_text("sample_id,group\n" + "\n".join(f"{k},{'big' if i < 32 else 'tiny'}" for i, k in enumerate(ids)) + "\n")
    import_dataset(engine, "g40", ECSSD / "images", ECSSD / "masks", metadata=meta, limit=N)
    write_predictions(tmp_path / "p", ids, transform=erode(7))
    register_release(engine, "eroded", "predictions", str(tmp_path / "p"), threshold=0.5)
    res = score(engine, "eroded", "g40", tmp_path / "run", progress=False, workers=1, intersections="")
    t = res.table
    sl = {(s["attribute"], s["value"]): s for s in res.summary["slicing"]["slices"]}
    big, tiny = sl[("group", "big")], sl[("group", "tiny")]
    assert (big["n"], tiny["n"]) == (32, 8)
    assert not big["insufficient"] and tiny["insufficient"]  # min n 30: shown, flagged, not dropped
    assert big["metrics"]["iou"]["mean"] == pytest.approx(t["iou"][:32].mean())
    assert tiny["metrics"]["iou"]["mean"] == pytest.approx(t["iou"][32:].mean())
    assert big["metrics"]["iou"]["lo"] <= big["metrics"]["iou"]["mean"] <= big["metrics"]["iou"]["hi"]
    assert not any("*" in s["attribute"] for s in res.summary["slicing"]["slices"])
    assert res.summary["slicing"]["not_sliced"]["area_fraction"].startswith("continuous")


def test_negatives_are_judged_by_the_gate_only(engine, tmp_path):
    root = tmp_path / "neg"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for k in ecssd_ids(6):
        shutil.copy(ECSSD / "images" / f"{k}.jpg", root / "images")
        shutil.copy(ECSSD / "masks" / f"{k}.png", root / "masks")
    img = cv2.imread(str(root / "images" / "0001.jpg"))
    cv2.imwrite(str(root / "masks" / "0001.png"), np.zeros(img.shape[:2], np.uint8))  # no subject
    res = import_dataset(engine, "neg", root / "images", root / "masks")
    assert res.n_negatives == 1
    write_predictions(tmp_path / "p", ecssd_ids(6), conf=lambda i: 0.9)
    register_release(engine, "r", "predictions", str(tmp_path / "p"), threshold=0.5)
    t = score(engine, "r", "neg", tmp_path / "run", progress=False, workers=1).table.set_index("sample_key")
    neg = t.loc["0001"]
    assert not neg["has_subject"] and np.isnan(neg["iou"]) and not neg["acceptable"] and neg["accepted"]
    assert pd.isna(neg["attr_area_bucket"])  # negatives are in no subject-shape slice


def test_resized_missing_extra_and_corrupt_predictions(engine, ecssd, tmp_path):
    ids = ecssd_ids()
    p = write_predictions(tmp_path / "p", ids, scale=0.5)
    (p / "masks" / f"{ids[-1]}.png").unlink()
    (p / "masks" / f"{ids[-2]}.png").unlink()
    (p / "masks" / "extra_id.png").write_bytes(cv2.imencode(".png", np.zeros((4, 4), np.uint8))[1].tobytes())
    (p / "masks" / f"{ids[0]}.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    register_release(engine, "half", "predictions", str(p), threshold=0.5)
    with pytest.raises(ScoreError, match=rf"2 sample\(s\).*{ids[-2]}.*{ids[-1]}"):
        score(engine, "half", ecssd, tmp_path / "run", progress=False, workers=1)
    res = score(engine, "half", ecssd, tmp_path / "run", progress=False, workers=1, allow_missing=True)
    t = res.table
    assert len(t) == N - 3
    assert res.summary["missing"] == [ids[-2], ids[-1]]
    assert [q["id"] for q in res.quarantine] == [ids[0]]
    assert t["prediction_resized"].all()
    warnings = " ".join(res.summary["warnings"])
    assert "extra_id" in warnings and "resized" in warnings
    # a resized prediction is scored after bilinear resizing to the ground truth
    k = ids[5]
    gt = read_mask(ECSSD / "masks" / f"{k}.png")
    small = cv2.imread(str(p / "masks" / f"{k}.png"), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
    prob = cv2.resize(small, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_LINEAR)
    assert t.set_index("sample_key").loc[k, "iou"] == pytest.approx(M.iou(prob >= 0.5, gt))


def test_bad_confidences_are_refused_with_ids(engine, ecssd, tmp_path):
    ids = ecssd_ids()
    p = write_predictions(tmp_path / "p", ids)
    text = (p / "confidences.csv").read_text().replace(f"{ids[2]},0.9", f"{ids[2]},nan").replace(f"{ids[4]},0.9", f"{ids[4]},1.7")
    (p / "confidences.csv").write_text(text)
    r = runner.invoke(app, ["release", "add", "bad", "--predictions", str(p), "--database-url", str(engine.url)])
    assert r.exit_code == 2
    assert ids[2] in r.output and ids[4] in r.output and "NaN" in r.output


def test_cli_loop_with_compare_and_report(engine, ecssd, tmp_path):
    ids = ecssd_ids()
    url = str(engine.url)
    write_predictions(tmp_path / "good", ids, transform=erode(3), conf=lambda i: 0.95)
    write_predictions(tmp_path / "bad", ids, transform=erode(15), conf=lambda i: 0.95)
    for name in ("good", "bad"):
        r = runner.invoke(app, ["release", "add", name, "--predictions", str(tmp_path / name), "--database-url", url])
        assert r.exit_code == 0, r.output
        r = runner.invoke(app, ["score", "--release", name, "--dataset", ecssd, "--out", str(tmp_path / f"run-{name}"),
                                "--workers", "2", "--no-progress", "--database-url", url])
        assert r.exit_code == 0, r.output
        assert "boundary_f1" in r.output
    res = compare_runs(engine, tmp_path / "run-good", tmp_path / "run-bad")
    iou = res["overall"]["metrics"]["iou"]
    tg = pd.read_parquet(tmp_path / "run-good" / "samples.parquet")
    tb = pd.read_parquet(tmp_path / "run-bad" / "samples.parquet")
    assert iou["mean"] == pytest.approx((tb["iou"] - tg["iou"]).mean())
    assert iou["hi"] < 0 and iou["verdict"] == "regression" and iou["p"] < 0.01
    assert res["regressions"], "slices where the heavy erosion loses must be flagged"
    for s in res["slices"]:
        assert s["metrics"]["iou"]["p_holm"] >= s["metrics"]["iou"]["p"] - 1e-12
    back = compare_runs(engine, tmp_path / "run-bad", tmp_path / "run-good")
    assert back["overall"]["metrics"]["iou"]["verdict"] == "improvement" and not back["regressions"]
    r = runner.invoke(app, ["report", str(tmp_path / "run-bad"), "--compare", str(tmp_path / "run-good"), "--database-url", url])
    assert r.exit_code == 0, r.output
    html = (tmp_path / "run-bad" / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4  # reliability, risk-coverage, slice bars
    assert html.count("data:image/jpeg;base64,") == 8  # worst images as overlays
    assert "regression" in html
    rep = json.loads((tmp_path / "run-bad" / "report.json").read_text())
    assert rep["compare"]["overall"]["metrics"]["iou"]["verdict"] == "regression"


def test_workers_do_not_change_results(engine, ecssd, tmp_path):
    write_predictions(tmp_path / "p", ecssd_ids(), transform=erode(5))
    register_release(engine, "r", "predictions", str(tmp_path / "p"), threshold=0.5)
    one = score(engine, "r", ecssd, tmp_path / "one", progress=False, workers=1).table
    two = score(engine, "r", ecssd, tmp_path / "two", progress=False, workers=2).table
    pd.testing.assert_frame_equal(one, two)


def test_compare_refuses_runs_of_different_datasets(engine, ecssd, tmp_path):
    import_dataset(engine, "other", ECSSD / "images", ECSSD / "masks", limit=10)
    write_predictions(tmp_path / "p", ecssd_ids())
    register_release(engine, "r", "predictions", str(tmp_path / "p"), threshold=0.5)
    score(engine, "r", ecssd, tmp_path / "a", progress=False, workers=1)
    score(engine, "r", "other", tmp_path / "b", progress=False, workers=1, allow_missing=True)
    from evalhub.compare import CompareError

    with pytest.raises(CompareError, match="different datasets"):
        compare_runs(engine, tmp_path / "a", tmp_path / "b")


@pytest.mark.slow
def test_ray_executor_gives_the_same_table(engine, ecssd, tmp_path):
    pytest.importorskip("ray")
    write_predictions(tmp_path / "p", ecssd_ids(), transform=erode(5))
    register_release(engine, "r", "predictions", str(tmp_path / "p"), threshold=0.5)
    local = score(engine, "r", ecssd, tmp_path / "local", progress=False, workers=1).table
    on_ray = score(engine, "r", ecssd, tmp_path / "ray", progress=False, workers=2, executor="ray").table
    pd.testing.assert_frame_equal(local, on_ray)


def test_a_synth_build_is_scored_with_matting_errors(tmp_path, cache_dir, sqlite_url):
    """A synth dataset straight from the catalog: its own binary masks as predictions score IoU 1
    on every positive, negatives are judged by the gate, and the matting errors of the binary mask
    against the refined alpha matte equal their definitions over the trimap's unknown region."""
    from synth.build import build
    from synth.recipe import parse_recipe
    from tests.conftest import ecssd_recipe

    res = build(parse_recipe(ecssd_recipe(cache_dir, n_samples=12)), tmp_path / "ds", workers=1, progress=False, catalog_url=sqlite_url)
    engine = db.connect(sqlite_url)
    _, samples = dataset_samples(engine, "ecssd-small")
    preds = tmp_path / "p" / "masks"
    preds.mkdir(parents=True)
    for s in samples:
        shutil.copy(res.out_dir / s["mask_path"], preds / f"{s['sample_key']}.png")
    register_release(engine, "self", "predictions", str(tmp_path / "p"), threshold=0.5, confidence_proxy=True)
    t = score(engine, "self", "ecssd-small", tmp_path / "run", progress=False, workers=1).table.set_index("sample_key")
    pos = t[t["has_subject"]]
    assert len(pos) > 0 and (~t["has_subject"]).sum() == 3  # 25 % negatives of 12
    assert (pos["iou"] == 1.0).all() and (pos["boundary_f1"] == 1.0).all()
    assert t.loc[~t["has_subject"], "confidence"].eq(0.0).all()  # empty prediction: proxy 0, hidden
    s = next(x for x in samples if x["has_subject"])
    from evalhub.datasets import read_alpha, read_trimap

    alpha = read_alpha(res.out_dir / s["alpha_path"])
    trimap = read_trimap(res.out_dir / s["trimap_path"])
    binary = read_mask(res.out_dir / s["mask_path"]).astype(np.float64)
    u = trimap == 128
    assert t.loc[s["sample_key"], "sad"] == pytest.approx(np.abs(binary - alpha)[u].sum() / 1000, rel=1e-5)
    assert t.loc[s["sample_key"], "mse"] == pytest.approx(((binary - alpha)[u] ** 2).mean(), rel=1e-5)
    engine.dispose()


def test_import_with_an_ids_file(engine, tmp_path):
    ids = ecssd_ids(6)
    f = tmp_path / "ids.txt"
    f.write_text("# a split\n" + "\n".join(ids[1:4]) + "\nnot-a-photo\n\n")
    res = import_dataset(engine, "picked", ECSSD / "images", ECSSD / "masks", ids=f)
    _, samples = dataset_samples(engine, "picked")
    assert [s["sample_key"] for s in samples] == ids[1:4]
    assert res.quarantine == [{"id": "not-a-photo", "path": str(f), "reason": "listed in the ids file but no image has this id"}]
