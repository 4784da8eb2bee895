"""Raters' corrections become data: brush strokes against their distance definition, edge snapping
on constructed and real photos, correction campaigns storing ground-truth versions (who, when,
never replaced) on SQLite and PostgreSQL, scoring against corrected ground truth, and the export
synth reads as a foreground source."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
from sqlalchemy import func, select

from db.catalog import DeleteRefused, delete, truth_versions
from db.engine import session_scope
from db.models import TruthVersion
from evalhub.releases import read_probability
from evalhub.scoring import score
from raters import service as S
from raters.campaigns import CampaignError, create_campaign
from raters.corrections import (
    Stroke, apply_strokes, export_corrections, mask_to_png, png_to_mask, snap_to_edges, stroke_footprint, stroke_work,
)
from raters.results import campaign_results
from synth.io import read_binary_mask, read_rgb
from tests.conftest import ECSSD
from tests.helpers import add_raters, ecssd_ids, scored_catalog


def _segment_distance2(px, py, a, b):
    """Squared distance of points to the segment a-b, straight from the definition (float64)."""
    (ax, ay), (bx, by) = a, b
    dx, dy = bx - ax, by - ay
    l2 = dx * dx + dy * dy
    t = np.zeros_like(px) if l2 == 0 else np.clip(((px - ax) * dx + (py - ay) * dy) / l2, 0, 1)
    return (px - ax - t * dx) ** 2 + (py - ay - t * dy) ** 2


def test_a_stroke_paints_the_pixels_within_its_radius_of_the_polyline():
    rng = np.random.default_rng(3)
    shape = (70, 90)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    for _ in range(5):
        pts = [tuple(p) for p in rng.uniform([-10, -10], [100, 80], size=(int(rng.integers(1, 6)), 2))]
        r = float(rng.uniform(1, 9))
        want = np.zeros(shape, bool)
        segs = [(pts[0], pts[0])] if len(pts) == 1 else list(zip(pts[:-1], pts[1:]))
        for a, b in segs:
            want |= _segment_distance2(xx, yy, a, b) <= r * r
        np.testing.assert_array_equal(stroke_footprint(shape, Stroke(mode="add", radius=r, points=pts)), want)
    # a lone point of radius 2 is the 13-pixel digital disk
    assert stroke_footprint((9, 9), Stroke(mode="add", radius=2, points=[(4, 4)])).sum() == 13


def test_strokes_apply_in_order():
    start = np.zeros((20, 20), bool)
    add = Stroke(mode="add", radius=3, points=[(5, 10), (15, 10)])
    erase = Stroke(mode="erase", radius=1, points=[(10, 0), (10, 19)])
    got = apply_strokes(start, [add, erase])
    want = stroke_footprint(start.shape, add) & ~stroke_footprint(start.shape, erase)
    np.testing.assert_array_equal(got, want)
    assert not got[:, 9:12].any() and got[10, 5] and got[10, 15]
    # erase first, then add: the add wins where they overlap
    np.testing.assert_array_equal(apply_strokes(start, [erase, add]), stroke_footprint(start.shape, add))
    assert not start.any()  # the starting mask is not modified
    with pytest.raises(ValueError):
        Stroke(mode="paint", radius=3, points=[(1, 1)])
    with pytest.raises(ValueError):
        Stroke(mode="add", radius=0, points=[(1, 1)])


def test_snapping_moves_a_sloppy_edge_onto_the_photo_edge():
    rng = np.random.default_rng(0)
    h, w = 160, 200
    yy, xx = np.mgrid[0:h, 0:w]
    truth = (yy - 80) ** 2 + (xx - 100) ** 2 <= 40 ** 2
    rgb = np.where(truth[..., None], [200, 40, 40], [40, 150, 60]).astype(np.float64)
    rgb = np.clip(rgb + rng.normal(0, 12, rgb.shape), 0, 255).astype(np.uint8)
    sloppy = (yy - 80) ** 2 + (xx - 100) ** 2 <= 45 ** 2  # a rater's add stroke overshooting by 5 px
    start = (yy - 80) ** 2 + (xx - 100) ** 2 <= 30 ** 2
    snapped = snap_to_edges(rgb, sloppy, sloppy != start)

    def iou(a, b):
        return (a & b).sum() / (a | b).sum()

    assert iou(sloppy, truth) < 0.8 and iou(snapped, truth) > 0.97
    far = np.zeros_like(truth)  # nothing changed near the boundary: nothing moves
    far[:5, :5] = True
    np.testing.assert_array_equal(snap_to_edges(rgb, sloppy, far), sloppy)


def test_snapping_brings_dilated_masks_closer_to_the_truth_on_real_photos():
    before, after = [], []
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))
    for key in ecssd_ids(6):
        rgb = read_rgb(ECSSD / "images" / f"{key}.jpg")
        truth = read_binary_mask(ECSSD / "masks" / f"{key}.png")
        sloppy = cv2.dilate(truth.astype(np.uint8), k) > 0  # a 4 px overshoot all round
        snapped = snap_to_edges(rgb, sloppy, sloppy != truth)
        before.append((sloppy & truth).sum() / (sloppy | truth).sum())
        after.append((snapped & truth).sum() / (snapped | truth).sum())
    assert np.mean(after) > np.mean(before) + 0.02, (before, after)


def test_mask_png_round_trip():
    m = np.random.default_rng(1).random((31, 47)) > 0.5
    np.testing.assert_array_equal(png_to_mask(mask_to_png(m)), m)
    assert cv2.imdecode(np.frombuffer(mask_to_png(m), np.uint8), cv2.IMREAD_UNCHANGED).max() == 255


# --- correction campaigns -------------------------------------------------------------------------

STROKES = [{"mode": "add", "radius": 6, "points": [[20, 20], [60, 40]]}, {"mode": "erase", "radius": 4, "points": [[100, 100]]}]


def _iou(a, b):
    u = np.count_nonzero(a | b)
    return 1.0 if u == 0 else np.count_nonzero(a & b) / u


@pytest.fixture
def corrections_world(catalog_url, tmp_path):
    w = scored_catalog(catalog_url, tmp_path, n=10)
    w["passwords"] = add_raters(w["engine"], ["r1", "r2"])
    w["tmp"] = tmp_path
    return w


def test_a_correction_is_a_new_ground_truth_version_used_by_scoring_and_synth(corrections_world):
    w = corrections_world
    e, run = w["engine"], str(w["runs"]["good"])
    with pytest.raises(CampaignError, match="correction campaign takes one --run"):
        create_campaign(e, "bad", [run, str(w["runs"]["eroded"])], 2, correct="prediction")
    create_campaign(e, "fix", [run], n_items=3, raters_per_item=1, raters=["r1"], correct="prediction")
    t1 = S.login(e, "r1", w["passwords"]["r1"])
    t2 = S.login(e, "r2", w["passwords"]["r2"])
    item = S.next_item(e, t1)
    assert item["kind"] == "correct" and item["total"] == 3
    start = S.correction_start(e, t1, item["assignment_id"])
    key = start.sample_key
    prob = read_probability(str(w["runs"]["good"] / "predictions" / "masks" / f"{key}.png"), "probability")
    np.testing.assert_array_equal(start.mask, prob >= 0.5)  # the run's maps are at the photo's size
    assert start.base == "prediction"
    with pytest.raises(S.AccessDenied):
        S.correction_start(e, t2, item["assignment_id"])
    with pytest.raises(ValueError, match="strokes"):
        S.submit(e, t1, item["assignment_id"], {"strokes": [{"mode": "add", "radius": -1, "points": [[1, 1]]}]})
    preview = S.corrected_mask(e, t1, start, {"strokes": STROKES})
    with pytest.raises(S.AccessDenied):
        S.corrected_mask(e, t2, start, {"strokes": STROKES})
    res = S.submit(e, t1, item["assignment_id"], {"strokes": STROKES, "comment": "tail was missing"})
    assert res["created"]
    assert not S.submit(e, t1, item["assignment_id"], {"strokes": []})["created"]  # a repeat stores nothing new
    want = apply_strokes(start.mask, [Stroke(**s) for s in STROKES])
    np.testing.assert_array_equal(preview, want)
    newest = truth_versions(e, "ecssd")
    assert list(newest) == [key]
    tv = newest[key][0]
    assert (tv.version, tv.rater, tv.base, tv.campaign, tv.snapped) == (2, "r1", "prediction", "fix", False)
    np.testing.assert_array_equal(png_to_mask(tv.mask_png), want)
    with pytest.raises(ValueError, match="is a correction"):
        S.edit_rating(e, t1, res["rating_id"], {"strokes": []})

    # a second campaign starts from the newest truth and adds version 3; version 2 stays
    create_campaign(e, "fix-again", [run], n_items=10, raters_per_item=1, raters=["r2"], correct="truth", seed=0)
    seen = []
    while (it := S.next_item(e, t2)) is not None:
        st = S.correction_start(e, t2, it["assignment_id"])
        seen.append(st.sample_key)
        if st.sample_key == key:
            np.testing.assert_array_equal(st.mask, want)
            assert st.base == "truth v2"
            S.submit(e, t2, it["assignment_id"], {"strokes": [{"mode": "erase", "radius": 3, "points": [[30, 25]]}], "snap": True})
        else:
            S.report_problem(e, t2, it["assignment_id"], "fine as it is")
    assert key in seen
    every = truth_versions(e, "ecssd", newest_only=False)[key]
    assert [v.version for v in every] == [2, 3] and every[1].rater == "r2" and every[1].snapped and every[1].base == "truth v2"
    np.testing.assert_array_equal(png_to_mask(every[0].mask_png), want)  # version 2 is kept as it was
    final = png_to_mask(truth_versions(e, "ecssd")[key][0].mask_png)

    # results: how the corrected truth differs from the original and what it does to the metric
    res_fix = campaign_results(e, "fix")
    row = res_fix["corrections"]["rows"][0]
    original = read_binary_mask(ECSSD / "masks" / f"{key}.png")
    assert row["iou_with_original"] == pytest.approx(_iou(want, original))
    assert row["pred_iou_corrected"] == pytest.approx(_iou(start.mask, want))

    # scoring against corrected truth: that photo's IoU is against the correction, the rest unchanged
    out = w["tmp"] / "run-corrected"
    res_run = score(e, "good", "ecssd", out, workers=1, n_boot=20, progress=False, truth="corrected")
    table = res_run.table.set_index("sample_key")
    assert res_run.summary["settings"]["truth_versions"] == {key: truth_versions(e, "ecssd")[key][0].version}
    assert table.loc[key, "iou"] == pytest.approx(_iou(start.mask, final), abs=1e-12)
    plain = score(e, "good", "ecssd", w["tmp"] / "run-good-again", workers=1, n_boot=20, progress=False).table.set_index("sample_key")
    others = [k for k in table.index if k != key]
    np.testing.assert_allclose(table.loc[others, "iou"].to_numpy(float), plain.loc[others, "iou"].to_numpy(float))

    # deleting the dataset would remove the corrections: refused, naming them
    with pytest.raises(DeleteRefused, match="ground-truth correction"):
        delete(e, "dataset", "ecssd")

    # the export is a foreground folder synth reads: the corrected mask, with who and which version
    exp = export_corrections(e, "ecssd", w["tmp"] / "corrected-fg")
    assert exp.n == 1 and not exp.reused
    assert export_corrections(e, "ecssd", w["tmp"] / "corrected-fg").reused
    from synth.recipe import ForegroundPool
    from synth.sources import scan_foregrounds

    pool = ForegroundPool(name="corrected", kind="image_mask", images=exp.out / "images", masks=exp.out / "masks",
                          metadata=exp.out / "corrections.csv")
    items, quarantine, _ = scan_foregrounds(pool)
    assert [i.fg_id for i in items] == [f"corrected/{key}"] and not quarantine
    assert items[0].attributes["rater"] in ("r1", "r2")
    np.testing.assert_array_equal(read_binary_mask(items[0].matte), final)
    with open(exp.out / "corrections.csv", newline="") as fh:
        assert next(csv.DictReader(fh))["sample_id"] == key
    with session_scope(e) as s:
        assert s.scalar(select(func.count()).select_from(TruthVersion)) == 2
    # the command line: one line per failure, exit 2; the export itself
    from typer.testing import CliRunner

    from raters.cli import app

    url = e.url.render_as_string(hide_password=False)
    res = CliRunner().invoke(app, ["corrections", "export", "--dataset", "ecssd", "--out", str(w["tmp"] / "cli-fg"), "--database-url", url])
    assert res.exit_code == 0 and "1 corrected photo(s) written" in res.output
    res = CliRunner().invoke(app, ["corrections", "export", "--dataset", "nope", "--out", str(w["tmp"] / "x"), "--database-url", url])
    assert res.exit_code == 2 and res.output.strip().count("\n") == 0 and "no dataset named 'nope'" in res.output
    (w["tmp"] / "foreign").mkdir()
    (w["tmp"] / "foreign" / "notes.txt").write_text("mine")
    res = CliRunner().invoke(app, ["corrections", "export", "--dataset", "ecssd", "--out", str(w["tmp"] / "foreign"), "--database-url", url])
    assert res.exit_code == 2 and "holds files no liftlab command wrote" in res.output
    assert (w["tmp"] / "foreign" / "notes.txt").read_text() == "mine"


def test_an_answer_whose_strokes_would_take_too_long_is_refused_by_name():
    from raters.service import validate_answer

    big = {"mode": "add", "radius": 400, "points": [[float(i % 2), 0.0] for i in range(1000)]}  # 999 x 802 x 803 px
    with pytest.raises(ValueError, match="strokes: .*pixel visits"):
        validate_answer("correct", {"strokes": [big]})
    ok = validate_answer("correct", {"strokes": [{"mode": "add", "radius": 8, "points": [[0, 0], [100, 50]]}]})
    assert ok.strokes[0].radius == 8
    assert stroke_work(Stroke(mode="add", radius=2, points=[(0, 0), (3, 4)])) == (3 + 5) * (4 + 5)
