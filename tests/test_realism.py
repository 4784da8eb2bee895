"""Harmonization measured on real photos (iHarmony4 protocol) and illumination harmonization
against its definition."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from synth import harmonize, realism
from synth.cli import app
from synth.harmonize import IlluminationPrior, apply_illumination, illumination_harmonize, illumination_stats, surround_band
from synth.io import read_gray, read_rgb
from synth.sources import read_ids
from tests.conftest import CCP, ECSSD, ROOT

TEST_IDS = read_ids(ROOT / "examples" / "splits" / "ecssd-test.txt")


def _photo(stem: str) -> tuple[np.ndarray, np.ndarray]:
    return read_rgb(ECSSD / "images" / f"{stem}.jpg").astype(np.float32) / 255.0, read_gray(ECSSD / "masks" / f"{stem}.png") > 127


def test_scores_follow_dovenet_definitions():
    target = np.zeros((2, 2, 3), np.float32)
    result = target.copy()
    result[0, 0] = [10 / 255, 20 / 255, 0]  # squared errors 100, 400, 0 on one pixel
    mask = np.array([[True, True], [False, False]])
    mse, fmse, psnr = realism.harmonization_scores(result, target, mask)
    assert mse == pytest.approx(500 / 12)  # over 4 pixels x 3 channels
    assert fmse == pytest.approx(500 / 6)  # over the 2 subject pixels x 3 channels
    assert psnr == pytest.approx(10 * np.log10(255**2 / (500 / 12)))
    assert realism.harmonization_scores(target, target, mask)[2] == float("inf")


def test_illumination_stats_by_hand():
    # a flat patch: linear value of sRGB 0.5 is ((0.5 + 0.055) / 1.055) ** 2.4
    lin = ((0.5 + 0.055) / 1.055) ** 2.4
    rgb = np.full((4, 4, 3), 0.5, np.float32)
    rgb[..., 2] = 0.25
    lin_b = ((0.25 + 0.055) / 1.055) ** 2.4
    y = 0.2126 * lin + 0.7152 * lin + 0.0722 * lin_b
    s = illumination_stats(rgb, np.ones((4, 4)))
    np.testing.assert_allclose(s[:3], [np.log(y + 1e-3), 0.0, np.log((lin_b + 1e-3) / (lin + 1e-3))], rtol=1e-5)
    assert s[3] == pytest.approx(np.log(1e-3), abs=1e-3)  # no spread of log luminance


def test_apply_illumination_inverts_a_known_gain():
    rgb, mask = _photo(TEST_IDS[0])
    alpha = mask.astype(np.float32)
    # a known exposure (-0.5 stop) and white-balance change in linear light
    gains = np.exp(np.array([0.1, 0.0, -0.1])) * 2**-0.5
    lin = harmonize.srgb_to_linear(rgb)
    changed = np.where(mask[..., None], harmonize.linear_to_srgb(lin * gains.astype(np.float32)), rgb)
    true, seen = illumination_stats(rgb, alpha), illumination_stats(changed, alpha)
    # the correction that maps the changed statistics back (what a perfect prior would predict)
    delta = true - seen
    delta[3] = 0.0
    back = apply_illumination(changed, alpha, delta)
    unclipped = mask & (rgb.max(axis=2) < 0.95)
    assert np.abs(back - rgb)[unclipped].mean() < 2.0 / 255  # within 8-bit rounding, except clipped highlights
    np.testing.assert_allclose(illumination_stats(back, alpha)[:3], true[:3], atol=0.02)


def test_oracle_prior_recovers_exposure_and_white_balance():
    """With a prior that predicts the subject's true statistics, strength 1 undoes a darkening
    (-0.6 stop) and a colour-temperature change (no clipped highlights to lose)."""
    rgb, mask = _photo(TEST_IDS[1])
    alpha = mask.astype(np.float32)
    gains = np.exp(np.array([0.15, 0.0, -0.15])) * 2**-0.6
    comp = np.where(mask[..., None], harmonize.linear_to_srgb(harmonize.srgb_to_linear(rgb) * gains.astype(np.float32)), rgb)
    band = surround_band(alpha, 0.15)
    true, sb = illumination_stats(rgb, alpha), illumination_stats(rgb, band)
    oracle = IlluminationPrior(tuple(true - sb), (1.0,) * 4, (1.0,) * 4)
    out, delta = illumination_harmonize(comp, alpha, comp, 1.0, oracle)
    np.testing.assert_allclose(delta[:3], true[:3] - illumination_stats(comp, alpha)[:3])
    _, f_none, _ = realism.harmonization_scores(comp, rgb, mask)
    _, f_fixed, _ = realism.harmonization_scores(out, rgb, mask)
    assert f_fixed < 0.05 * f_none


def test_correction_is_bounded():
    prior = harmonize.DEFAULT_PRIOR
    huge = prior.predict(np.zeros(4)) + np.array([5.0, -5.0, 5.0, -5.0])
    delta = harmonize.illumination_correction(huge, np.zeros(4), 1.0, prior)
    np.testing.assert_allclose(np.abs(delta), harmonize.MAX_CORRECTION)
    assert not np.any(harmonize.illumination_correction(np.full(4, np.nan), np.zeros(4), 1.0))


def test_illumination_beats_doing_nothing_on_real_photos_and_colour_transfer_does_not():
    """A known exposure (+-1 stop) and white-balance (+-0.25 log gain) change of the subject of 60
    real ECSSD test-split photos (never used to fit the prior or pick the strength)."""
    photos = list(realism.iter_photos(ECSSD / "images", ECSSD / "masks", TEST_IDS, limit=60))
    methods = [realism.MethodSpec.parse(m) for m in ("illumination@0.1", "reinhard@0.5", "histogram@0.5")]
    ranges = realism.Perturbation(exposure_stops=1.0, temperature=0.25, contrast=1.0, saturation=1.0)
    res = realism.evaluate(photos, methods, seed=0, ranges=ranges, n_boot=1000)
    by = {s.method: s for s in res.summaries}
    assert res.n_photos == 60 and not res.skipped
    ill = by["illumination@0.1"]
    assert ill.fmse_ratio_to_none <= 0.90  # at least 10 % of the fMSE recovered
    assert ill.fmse_vs_none[2] < 0  # the paired CI lies below zero
    assert ill.share_improved > 0.6
    for colour_transfer in ("reinhard@0.5", "histogram@0.5"):
        assert by[colour_transfer].fmse_ratio_to_none > 2.0  # camouflage: far worse than doing nothing
        assert by[colour_transfer].fmse_vs_none[1] > 0


def test_fit_equals_least_squares_by_numpy():
    photos = list(realism.iter_photos(ECSSD / "images", ECSSD / "masks", TEST_IDS, limit=25))
    prior = realism.fit_illumination_prior(photos, 0.15, "test")
    s, b = [], []
    for _, ip, mp in photos:
        rgb, mask = read_rgb(ip).astype(np.float32) / 255.0, read_gray(mp) > 127
        s.append(illumination_stats(rgb, mask))
        b.append(illumination_stats(rgb, surround_band(mask.astype(np.float32), 0.15)))
    s, b = np.array(s), np.array(b)
    for k in range(4):
        slope, icpt = np.polyfit(b[:, k], s[:, k], 1)
        assert prior.slope[k] == pytest.approx(slope, abs=1e-9) and prior.intercept[k] == pytest.approx(icpt, abs=1e-9)
        resid = s[:, k] - (icpt + slope * b[:, k])
        assert prior.residual_sd[k] == pytest.approx(np.sqrt((resid**2).sum() / (len(resid) - 2)), rel=1e-9)
    assert prior.n == 25


def test_realism_command_on_ccp_with_a_bad_photo(tmp_path):
    imgs, masks = tmp_path / "images", tmp_path / "masks"
    imgs.mkdir()
    masks.mkdir()
    for stem in ("0001", "0002", "0003"):
        (imgs / f"{stem}.jpg").write_bytes((CCP / "images" / f"{stem}.jpg").read_bytes())
        (masks / f"{stem}.png").write_bytes((CCP / "masks" / f"{stem}.png").read_bytes())
    (imgs / "0004.jpg").write_bytes(b"not a jpeg")
    (masks / "0004.png").write_bytes((CCP / "masks" / "0004.png").read_bytes())
    r = CliRunner().invoke(app, ["realism", "--images", str(imgs), "--masks", str(masks), "-m", "illumination@0.1", "-m", "poisson",
                                 "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert "| illumination@0.1 | 3 |" in r.output and "skipped 0004" in r.output
    doc = json.loads((tmp_path / "out" / "realism.json").read_text())
    assert [s["method"] for s in doc["summaries"]] == ["none", "illumination@0.1", "poisson@1"]
    assert doc["skipped"][0][0] == "0004" and len(doc["rows"]) == 9
    bad = CliRunner().invoke(app, ["realism", "--images", str(imgs), "--masks", str(masks), "-m", "reinhard@2"])
    assert bad.exit_code == 2 and "strength must lie in [0, 1]" in bad.output
