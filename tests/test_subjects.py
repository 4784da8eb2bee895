"""Several subjects per photo: splitting, matching and Panoptic Quality by hand, and in a run."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from evalhub.subjects import SubjectSpec, match_subjects, panoptic_quality, pooled_quality, split_subjects, subject_metrics

SPEC = SubjectSpec(min_area=0.0, opening=0)


def box(mask, r0, r1, c0, c1):
    mask[r0:r1, c0:c1] = True
    return mask


def test_two_subjects_one_shifted_and_a_false_one_by_hand():
    gt = np.zeros((100, 100), bool)
    box(gt, 10, 30, 10, 30)  # A: 400 px
    box(gt, 50, 90, 50, 90)  # B: 1600 px
    pred = np.zeros_like(gt)
    box(pred, 10, 30, 10, 30)  # A exactly
    box(pred, 50, 90, 58, 98)  # B shifted 8 px: 32 x 40 = 1280 shared, union 1920
    box(pred, 0, 4, 90, 96)  # a false subject, 24 px
    got = subject_metrics(pred, gt, SPEC)
    iou_b = 1280 / 1920
    sq, rq = (1 + iou_b) / 2, 2 / (2 + 0.5 * 1 + 0.5 * 0)
    assert got["sq"] == pytest.approx(sq) and got["rq"] == pytest.approx(rq) and got["pq"] == pytest.approx(sq * rq)
    assert got["subject_recall"] == 1.0 and got["false_subjects"] == 1
    assert (got["subjects_true"], got["subjects_pred"], got["subjects_matched"]) == (2, 3, 2)


def test_a_merged_prediction_matches_neither_subject():
    gt = box(box(np.zeros((60, 100), bool), 10, 50, 5, 45), 10, 50, 55, 95)  # two 1600 px subjects
    pred = box(np.zeros_like(gt), 10, 50, 5, 95)  # one 3600 px blob over both: IoU 1600 / 3600 each
    got = subject_metrics(pred, gt, SPEC)
    assert got["pq"] == 0 and got["rq"] == 0 and math.isnan(got["sq"])
    assert got["subject_recall"] == 0 and got["false_subjects"] == 1
    # the same blob cut in two by a one-pixel gap is two matches
    pred[:, 50] = False
    assert subject_metrics(pred, gt, SPEC)["rq"] == 1.0


def test_cleaning_and_minimum_area_are_applied_to_both_sides():
    m = np.zeros((100, 100), bool)
    box(m, 10, 40, 10, 40)
    box(m, 10, 40, 60, 90)
    m[25, 40:60] = True  # a 1-px bridge joins the two squares
    m[80, 80] = True  # a speck
    assert split_subjects(m, SPEC).n == 2  # bridge joins, speck counts
    opened = split_subjects(m, SubjectSpec(min_area=0.0, opening=1))
    # the opening by a 3x3 cross takes the squares' 4 corners, the speck and the bridge but for the
    # one bridge pixel next to each square (the dilation puts it back from the square's edge)
    assert opened.n == 2 and opened.areas.tolist() == [900 - 4 + 1, 900 - 4 + 1]
    assert split_subjects(m, SubjectSpec(min_area=0.05, opening=0)).n == 1  # 920 px of 10000 kept, 1 px dropped
    s = split_subjects(m, SubjectSpec(min_area=0.0, opening=1))
    assert s.boxes.tolist() == [[10, 10, 31, 30], [59, 10, 31, 30]] and s.labels.max() == 2
    with pytest.raises(ValueError, match="min_area"):
        SubjectSpec(min_area=1.5)


def test_conventions_for_empty_sides_and_pooling_by_hand():
    empty = np.zeros((20, 20), bool)
    assert subject_metrics(empty, empty, SPEC)["pq"] == 1.0
    assert panoptic_quality(0, 0, 0, 0.0) == (1.0, 1.0, 1.0)
    assert panoptic_quality(0, 2, 0, 0.0)[0] == 0
    # image 1: 1 match IoU 0.9, 1 miss; image 2: 2 matches IoU 0.6 and 0.8, 1 false
    pooled = pooled_quality(np.array([1, 2]), np.array([1, 3]), np.array([2, 2]), np.array([0.9, 1.4]))
    sq, rq = (0.9 + 1.4) / 3, 3 / (3 + 0.5 * 1 + 0.5 * 1)
    assert pooled["sq"] == pytest.approx(sq) and pooled["rq"] == pytest.approx(rq) and pooled["pq"] == pytest.approx(sq * rq)
    assert (pooled["tp"], pooled["fp"], pooled["fn"]) == (3, 1, 1)


def test_matching_is_unique_above_one_half():
    rng = np.random.default_rng(0)
    gt = np.zeros((120, 120), bool)
    for r, c in ((10, 10), (10, 70), (70, 10), (70, 70)):
        box(gt, r, r + 40, c, c + 40)
    pred = np.roll(gt, (int(rng.integers(-12, 13)), int(rng.integers(-12, 13))), axis=(0, 1))
    m = match_subjects(split_subjects(pred, SPEC), split_subjects(gt, SPEC))
    assert len(set(m.pairs[:, 0])) == m.tp and len(set(m.pairs[:, 1])) == m.tp
    for (p, t), v in zip(m.pairs, m.ious):
        a = split_subjects(pred, SPEC).labels == p
        b = split_subjects(gt, SPEC).labels == t
        assert v == pytest.approx((a & b).sum() / (a | b).sum()) and v > 0.5


def test_a_run_reports_subjects_per_image_and_pooled(tmp_path, sqlite_url):
    import db
    from db.catalog import register_release
    from evalhub.datasets import import_dataset, read_mask
    from evalhub.scoring import score
    from tests.conftest import ECSSD
    from tests.helpers import ecssd_ids, write_predictions

    engine = db.connect(sqlite_url)
    try:
        import_dataset(engine, "e12", ECSSD / "images", ECSSD / "masks", limit=12)
        ids = ecssd_ids(12)
        write_predictions(tmp_path / "p", ids, transform=lambda m, key: cv2.erode(m, np.ones((9, 9), np.uint8)))
        register_release(engine, "eroded", "predictions", str(tmp_path / "p"), threshold=0.5)
        res = score(engine, "eroded", "e12", tmp_path / "run", progress=False, workers=1, min_n=3)
        t = res.table.set_index("sample_key")
        for k in ids[:4]:
            gt = read_mask(ECSSD / "masks" / f"{k}.png")
            pred = cv2.imread(str(tmp_path / "p" / "masks" / f"{k}.png"), cv2.IMREAD_GRAYSCALE) >= 128
            want = subject_metrics(pred, gt)
            for m in ("pq", "rq", "subject_recall", "false_subjects"):
                assert t.loc[k, m] == pytest.approx(want[m]), (k, m)
        # pooling every pixel, straight from the files
        inter = union = 0
        for k in ids:
            gt = read_mask(ECSSD / "masks" / f"{k}.png")
            pred = cv2.imread(str(tmp_path / "p" / "masks" / f"{k}.png"), cv2.IMREAD_GRAYSCALE) >= 128
            inter, union = inter + (gt & pred).sum(), union + (gt | pred).sum()
        po = res.summary["pooled"]["overall"]
        assert po["iou"] == pytest.approx(inter / union) and po["mean_iou"] == pytest.approx(t["iou"].mean())
        assert po["gap"] == pytest.approx(inter / union - t["iou"].mean())
        for sl in res.summary["pooled"]["slices"]:
            part = t[t["attr_" + sl["attribute"]].astype(str) == sl["value"]]
            assert sl["n"] == len(part) and sl["mean_iou"] == pytest.approx(part["iou"].mean())
            assert sl["iou"] == pytest.approx(part["tp_px"].sum() / (part["pred_px"].sum() + part["true_px"].sum() - part["tp_px"].sum()))
        pooled = res.summary["subjects"]["pooled"]
        want = pooled_quality(t["subjects_matched"], t["subjects_pred"], t["subjects_true"], t["subjects_iou_sum"])
        assert pooled == pytest.approx(want)
        assert res.summary["metrics"]["pq"]["mean"] == pytest.approx(t["pq"].mean())
    finally:
        engine.dispose()
