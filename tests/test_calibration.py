"""Gate calibration, selective prediction and the bootstrap/correction helpers, against hand values
and loop references written from the definitions."""

from __future__ import annotations

import numpy as np
import pytest

from evalhub import calibration as C
from evalhub import stats as S


def test_ece_mce_brier_auroc_aurc_by_hand():
    conf = np.array([0.1, 0.4, 0.62, 0.9])
    ok = np.array([False, False, True, True])
    assert C.ece(conf, ok) == pytest.approx((0.1 + 0.4 + 0.38 + 0.1) / 4)
    assert C.mce(conf, ok) == pytest.approx(0.4)
    assert C.brier(conf, ok) == pytest.approx((0.01 + 0.16 + 0.38**2 + 0.01) / 4)
    assert C.auroc(conf, ok) == 1.0
    # sorted descending: T, T, F, F -> risks 0, 0, 1/3, 1/2
    assert C.aurc(conf, ok) == pytest.approx((1 / 3 + 1 / 2) / 4)
    assert C.excess_aurc(conf, ok) == pytest.approx(0.0)


def test_ties_share_a_bin_and_break_evenly():
    conf = np.full(4, 0.7)
    ok = np.array([True, True, True, False])
    assert C.ece(conf, ok) == pytest.approx(0.05)
    assert C.auroc(conf, ok) == 0.5
    assert C.aurc(conf, ok) == pytest.approx(0.25)  # expected risk 1/4 at every coverage
    assert C.optimal_aurc(ok) == pytest.approx(0.0625)
    assert C.excess_aurc(conf, ok) == pytest.approx(0.1875)


def test_bins_are_half_open_with_the_last_closed():
    conf = np.array([0.0, 1 / 15 + 1e-12, 1 / 15 - 1e-12, 0.5, 1.0])
    np.testing.assert_array_equal(C.bin_ids(conf), [0, 1, 0, 7, 14])
    assert C.ece([1.0], [True]) == 0.0
    mass = C.bin_ids(np.arange(30)[::-1] / 30.0, 15, "mass")
    np.testing.assert_array_equal(np.bincount(mass), [2] * 15)
    assert mass[-1] == 0 and mass[0] == 14  # lowest confidences in the first bin


def _ece_loop(conf, ok, n_bins):
    total = 0.0
    for k in range(n_bins):
        lo, hi = k / n_bins, (k + 1) / n_bins
        sel = [(c >= lo and (c < hi or (k == n_bins - 1 and c <= hi))) for c in conf]
        sel = np.array(sel)
        if sel.any():
            total += sel.sum() / len(conf) * abs(ok[sel].mean() - conf[sel].mean())
    return total


def test_ece_and_auroc_equal_loop_references():
    rng = np.random.default_rng(0)
    conf = rng.random(500)
    ok = rng.random(500) < conf**2
    assert C.ece(conf, ok) == pytest.approx(_ece_loop(conf, ok, 15), abs=1e-12)
    pos, neg = conf[ok], conf[~ok]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert C.auroc(conf, ok) == pytest.approx(pairs, abs=1e-12)
    # equal-mass ECE: bins between the confidences' k/15 quantiles, a confidence in the bin of the
    # number of interior edges at or below it (written as a loop)
    edges = [np.quantile(conf, k / 15) for k in range(1, 15)]
    groups: dict[int, list[int]] = {}
    for i, c in enumerate(conf):
        groups.setdefault(sum(1 for e in edges if e <= c), []).append(i)
    ref = sum(len(g) / 500 * abs(ok[g].mean() - conf[g].mean()) for g in groups.values())
    assert C.ece(conf, ok, binning="mass") == pytest.approx(ref, abs=1e-12)
    assert sorted(len(g) for g in groups.values()) in ([33] * 10 + [34] * 5, [33] * 5 + [34] * 10)  # equal mass, no ties


def test_excess_aurc_tends_to_the_closed_form():
    rng = np.random.default_rng(1)
    ok = rng.random(20000) < 0.8
    r = 1 - ok.mean()
    assert C.optimal_aurc(ok) == pytest.approx(r + (1 - r) * np.log(1 - r), abs=2e-3)


def test_gate_rates_by_hand():
    conf = np.array([0.9, 0.8, 0.3, 0.2])
    ok = np.array([True, False, True, False])
    assert C.gate_rates(conf, ok, 0.5) == {"acceptance_rate": 0.5, "far": 0.5, "frr": 0.5, "precision": 0.5}
    assert C.gate_rates(conf, ok, 0.8)["far"] == 0.5  # accepted when conf >= threshold


def test_recommended_threshold_is_the_lowest_that_reaches_the_target():
    conf = np.array([0.95, 0.9, 0.8, 0.7, 0.6])
    ok = np.array([True, True, True, False, True])
    assert C.recommend_threshold(conf, ok, 0.75) == {"threshold": 0.6, "precision": 0.8, "coverage": 1.0}
    assert C.recommend_threshold(conf, ok, 0.9) == {"threshold": 0.8, "precision": 1.0, "coverage": 0.6}
    assert C.recommend_threshold(conf, np.zeros(5, bool), 0.5) is None


def test_bad_confidences_name_the_ids():
    with pytest.raises(ValueError, match=r"NaN/outside \[0, 1\].*\['b', 'c'\]"):
        C.check_confidences([0.5, np.nan, 1.5], ids=["a", "b", "c"])
    with pytest.raises(ValueError, match="infinite"):
        C.ece([np.inf], [True])


def test_holm_and_bh_on_known_pvalues():
    p = [0.01, 0.04, 0.03, 0.005]
    np.testing.assert_allclose(S.holm(p), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(S.benjamini_hochberg(p), [0.02, 0.04, 0.04, 0.02])
    out = S.holm([0.01, np.nan, 0.02])
    assert np.isnan(out[1]) and out[0] == pytest.approx(0.02) and out[2] == pytest.approx(0.02)


def test_bootstrap_ci_covers_the_true_mean_at_about_the_nominal_rate():
    rng = np.random.default_rng(7)
    hits = 0
    trials = 300
    for t in range(trials):
        x = rng.normal(0.7, 0.1, size=60)
        ci = S.bootstrap_mean(x, n_boot=1000, seed=t)
        hits += ci["lo"] <= 0.7 <= ci["hi"]
    assert 0.90 <= hits / trials <= 0.98


def test_bootstrap_is_seeded():
    x = np.random.default_rng(0).random(40)
    assert S.bootstrap_mean(x, seed=3) == S.bootstrap_mean(x, seed=3)
    assert S.bootstrap_mean(x, seed=3) != S.bootstrap_mean(x, seed=4)


def test_paired_bootstrap_detects_a_shift_and_not_noise():
    rng = np.random.default_rng(2)
    shift = rng.normal(0.05, 0.02, size=80)
    r = S.paired_bootstrap(shift)
    assert r["lo"] > 0 and r["p"] < 0.01
    noise = rng.normal(0.0, 0.02, size=80)
    noise -= noise.mean()
    assert S.paired_bootstrap(noise)["p"] > 0.5
