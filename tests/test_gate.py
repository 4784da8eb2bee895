"""Gate calibration: each calibrator against its reference fit, out-of-sample improvement on a
constructed miscalibrated gate, a calibrated gate left alone, and a calibrated release revision
applied by scoring."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from evalhub import calibration as C
from evalhub.gate import GateCalibrator, cross_fit, fit_calibrator


def _gate(n, seed, power, sharpness=1.0):
    """True acceptance probabilities q ~ U(0, 1), outcomes y ~ Bernoulli(q), and a gate score
    c = sigmoid(sharpness * logit(q ** power)): power 1 and sharpness 1 is calibrated; power < 1
    shifts every score up (like a has-subject gate); sharpness > 1 is over-confident."""
    rng = np.random.default_rng(seed)
    q = np.clip(rng.random(n), 1e-4, 1 - 1e-4)
    y = rng.random(n) < q
    z = np.log(q ** power) - np.log1p(-(q ** power))
    return 1 / (1 + np.exp(-sharpness * z)), y


def test_platt_equals_unpenalised_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    c, y = _gate(600, 1, 0.3)
    cal = fit_calibrator(c, y, "platt")
    z = np.log(np.clip(c, 1e-6, 1 - 1e-6) / (1 - np.clip(c, 1e-6, 1 - 1e-6)))
    ref = LogisticRegression(penalty=None, tol=1e-12, max_iter=10_000).fit(z[:, None], y)
    assert cal.params["a"] == pytest.approx(ref.coef_[0, 0], rel=1e-6)
    assert cal.params["b"] == pytest.approx(ref.intercept_[0], rel=1e-6, abs=1e-7)


def test_temperature_is_the_nll_optimum():
    c, y = _gate(500, 2, 0.5)
    t = fit_calibrator(c, y, "temperature").params["temperature"]
    z = np.log(np.clip(c, 1e-6, 1 - 1e-6) / (1 - np.clip(c, 1e-6, 1 - 1e-6)))

    def nll(temp):
        p = np.clip(1 / (1 + np.exp(-z / temp)), 1e-15, 1 - 1e-15)
        return -np.where(y, np.log(p), np.log(1 - p)).sum()

    grid = np.linspace(0.2, 5, 4801)
    assert t == pytest.approx(grid[np.argmin([nll(g) for g in grid])], abs=2e-3)


def test_isotonic_pools_ties_and_ignores_row_order():
    c = np.array([0.1, 0.2, 0.2, 0.2, 0.4, 0.9, 0.9])
    y = np.array([0, 1, 0, 0, 1, 1, 0], bool)
    cal = fit_calibrator(c, y, "isotonic")
    # by hand (pool adjacent violators on the tie-pooled points): 0.1 -> 0, 0.2 -> 1/3, 0.4 -> 1 and
    # 0.9 -> 1/2 violate, pooled to 2/3
    np.testing.assert_allclose(cal.apply([0.1, 0.2, 0.4, 0.9]), [0, 1 / 3, 2 / 3, 2 / 3])
    order = np.random.default_rng(0).permutation(len(c))
    np.testing.assert_allclose(fit_calibrator(c[order], y[order], "isotonic").apply(c), cal.apply(c))
    assert GateCalibrator.from_dict(cal.to_dict()).apply([0.3]) == pytest.approx(cal.apply([0.3]))


@pytest.mark.parametrize("method", ["platt", "temperature", "isotonic"])
def test_out_of_sample_ece_improves_on_a_miscalibrated_gate_and_a_calibrated_one_is_left_alone(method):
    # over-confident: every method can undo it; shifted up (has-subject-like): temperature cannot
    # (it has no bias term), the others can
    for power, sharpness in ((1.0, 3.0), (0.25, 1.0)) if method != "temperature" else ((1.0, 3.0),):
        c, y = _gate(2000, 3, power, sharpness)
        before, after = C.ece(c, y), C.ece(cross_fit(c, y, method, folds=5), y)
        assert before > 0.1 and after < 0.05, (power, sharpness, before, after)
    c, y = _gate(2000, 4, 1.0)
    before, after = C.ece(c, y), C.ece(cross_fit(c, y, method, folds=5), y)
    assert before < 0.04 and after < before + 0.02, (before, after)
    if method != "isotonic":
        cal = fit_calibrator(c, y, method)
        np.testing.assert_allclose(cal.apply([0.1, 0.5, 0.9]), [0.1, 0.5, 0.9], atol=0.05)


def test_refusals():
    with pytest.raises(ValueError, match="both acceptable and unacceptable"):
        fit_calibrator([0.2, 0.8], [True, True], "platt")
    with pytest.raises(ArithmeticError, match="separated"):
        fit_calibrator([0.1, 0.2, 0.8, 0.9], [False, False, True, True], "platt")
    with pytest.raises(ValueError, match="5-fold"):
        cross_fit([0.1, 0.2, 0.8, 0.9], [False, False, True, True], "isotonic")
    with pytest.raises(ValueError, match="calibration.method"):
        GateCalibrator.from_dict({"method": "beta"})


def test_a_calibrated_release_revision_is_applied_by_scoring(tmp_path, sqlite_url):
    import db
    from db.catalog import get_release, register_release
    from evalhub.cli import app
    from evalhub.datasets import import_dataset
    from evalhub.scoring import score
    from tests.conftest import ECSSD
    from tests.helpers import ecssd_ids, write_predictions

    engine = db.connect(sqlite_url)
    try:
        n = 60
        import_dataset(engine, "e60", ECSSD / "images", ECSSD / "masks", limit=n)
        ids = ecssd_ids(n)
        # a has-subject gate: erosion by 0..25 px in turn makes IoU vary; the gate says 0.9-1.0 always
        ks = {k: 1 + 4 * (i % 7) for i, k in enumerate(ids)}
        write_predictions(tmp_path / "p", ids, transform=lambda m, key: cv2.erode(m, np.ones((ks[key], ks[key]), np.uint8)),
                          conf=lambda i: round(1.0 - 0.1 * (1 + 4 * (i % 7)) / 25, 4))
        register_release(engine, "hs", "predictions", str(tmp_path / "p"), threshold=0.5)
        raw = score(engine, "hs", "e60", tmp_path / "raw", progress=False, workers=1, min_n=5, accept_iou=0.9)
        res = CliRunner().invoke(app, ["calibrate", str(tmp_path / "raw"), "--method", "isotonic", "--folds", "3",
                                       "--target-precision", "0.9", "--database-url", sqlite_url])
        assert res.exit_code == 0, res.output
        assert "hs@2: isotonic calibration of hs@1" in res.output
        rel = get_release(engine, "hs")
        assert rel["revision"] == 2 and rel["manifest"]["calibration"]["base"] == "hs@1"
        cal = GateCalibrator.from_dict(rel["manifest"]["calibration"])
        again = score(engine, "hs", "e60", tmp_path / "cal", progress=False, workers=1, min_n=5, accept_iou=0.9)
        t = again.table.set_index("sample_key")
        r = raw.table.set_index("sample_key")
        np.testing.assert_allclose(t["raw_confidence"], r["confidence"])
        np.testing.assert_allclose(t["confidence"], cal.apply(r["confidence"].to_numpy()))
        assert again.summary["calibration"]["ece"] < 0.5 * raw.summary["calibration"]["ece"]
        assert again.summary["gate_calibration"]["method"] == "isotonic"
        np.testing.assert_array_equal(t["accepted"], t["confidence"] >= rel["threshold"])
        # a run of the calibrated revision is refused for another fit, naming the base
        res = CliRunner().invoke(app, ["calibrate", str(tmp_path / "cal"), "--database-url", sqlite_url])
        assert res.exit_code == 2 and "already calibrated" in res.output and "hs@1" in res.output
    finally:
        engine.dispose()
