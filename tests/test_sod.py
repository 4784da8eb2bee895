"""The salient-object benchmark set equals PySODMetrics on real ECSSD predictions, per image and per
dataset, and flows into the run table, the summary and the catalog (``evalhub score --sod``)."""

from __future__ import annotations

import cv2
import numpy as np
import py_sod_metrics as P
import pytest

import db
from db.catalog import register_release
from evalhub.datasets import import_dataset
from evalhub.runs import read_run
from evalhub.scoring import score
from tests.conftest import ECSSD
from tests.helpers import ecssd_ids, write_predictions


def test_sod_metrics_equal_pysodmetrics_on_real_predictions(tmp_path):
    n = 24
    ids = ecssd_ids(n)
    engine = db.connect(f"sqlite:///{tmp_path / 'c.db'}")
    import_dataset(engine, "e", ECSSD / "images", ECSSD / "masks", limit=n)
    # soft, imperfect predictions: blurred and shifted ground truth
    write_predictions(tmp_path / "p", ids, lambda m, k: np.roll(cv2.GaussianBlur(m, (0, 0), 3.0), 4 + ids.index(k) % 5, axis=1))
    register_release(engine, "blur", "predictions", str(tmp_path / "p"), 0.5)
    res = score(engine, "blur", "e", tmp_path / "run", workers=2, n_boot=50, progress=False, sod=True)
    sm, em, wfm = P.Smeasure(), P.Emeasure(), P.WeightedFmeasure()
    fm = P.FmeasureV2(metric_handlers={"fm": P.FmeasureHandler(with_dynamic=True, with_adaptive=True, beta=0.3)})
    table = read_run(engine, tmp_path / "run").table.set_index("sample_key")
    for k in ids:
        pred = cv2.imread(str(tmp_path / "run" / "predictions" / "masks" / f"{k}.png"), cv2.IMREAD_GRAYSCALE)
        gt = cv2.imread(str(ECSSD / "masks" / f"{k}.png"), cv2.IMREAD_GRAYSCALE)
        for ev in (sm, em, wfm, fm):
            ev.step(pred, gt)
        assert table.loc[k, "s_measure"] == pytest.approx(sm.sms[-1], abs=1e-9)
        assert table.loc[k, "weighted_f"] == pytest.approx(wfm.weighted_fms[-1], abs=1e-9)
        assert table.loc[k, "e_measure_adaptive"] == pytest.approx(em.adaptive_ems[-1], abs=1e-9)
        assert table.loc[k, "e_measure_mean"] == pytest.approx(np.mean(em.changeable_ems[-1]), abs=1e-9)
    ref_e, ref_f = em.get_results()["em"], fm.get_results()["fm"]
    s = res.summary
    assert s["metrics"]["s_measure"]["mean"] == pytest.approx(sm.get_results()["sm"], abs=1e-9)
    assert s["metrics"]["weighted_f"]["mean"] == pytest.approx(wfm.get_results()["wfm"], abs=1e-9)
    assert s["metrics"]["e_measure_adaptive"]["mean"] == pytest.approx(ref_e["adp"], abs=1e-9)
    assert s["metrics"]["f_measure_adaptive"]["mean"] == pytest.approx(ref_f["adaptive"], abs=1e-9)
    assert s["sod"]["n"] == n
    assert s["sod"]["e_measure_max"] == pytest.approx(ref_e["curve"].max(), abs=1e-9)
    assert s["sod"]["e_measure_mean"] == pytest.approx(ref_e["curve"].mean(), abs=1e-9)
    assert s["sod"]["f_measure_max"] == pytest.approx(ref_f["dynamic"].max(), abs=1e-9)
    assert s["sod"]["f_measure_mean"] == pytest.approx(ref_f["dynamic"].mean(), abs=1e-9)
    # the mean of the per-image means is the papers' mean E/F (mean of the mean curve)
    assert s["metrics"]["e_measure_mean"]["mean"] == pytest.approx(ref_e["curve"].mean(), abs=1e-9)
    assert s["metrics"]["f_measure_mean"]["mean"] == pytest.approx(ref_f["dynamic"].mean(), abs=1e-9)
    # without --sod nothing of it is computed or stored
    plain = score(engine, "blur", "e", tmp_path / "run-plain", workers=1, n_boot=50, progress=False)
    assert "s_measure" not in plain.summary["metrics"] and plain.summary["sod"] is None
    with engine.connect() as c:
        from sqlalchemy import text

        run_id = read_run(engine, tmp_path / "run-plain").record.id
        assert c.execute(text(f"select count(*) from metric_values mv join scores s on s.id = mv.score_id "
                              f"where s.run_id = {run_id} and mv.metric = 's_measure'")).scalar() == 0
    engine.dispose()
