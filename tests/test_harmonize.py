"""Harmonization moves subject statistics towards the background's."""

import numpy as np
import pytest

from synth import harmonize
from synth.harmonize import histogram_match, lab_distance, light_wrap, match_noise, noise_sigma, poisson_blend, reinhard, to_lab, weighted_stats


@pytest.fixture
def scene():
    rng = np.random.default_rng(3)
    h, w = 64, 64
    bg = np.clip(np.array([0.2, 0.3, 0.8]) + rng.normal(0, 0.05, (h, w, 3)), 0, 1).astype(np.float32)
    subject = np.clip(np.array([0.9, 0.5, 0.2]) + rng.normal(0, 0.1, (h, w, 3)), 0, 1).astype(np.float32)
    alpha = np.zeros((h, w), np.float32)
    alpha[16:48, 16:48] = 1.0
    return subject, alpha, bg


def test_weighted_stats_match_numpy():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(8, 9, 3))
    w = rng.uniform(size=(8, 9))
    mean, std = weighted_stats(v, w)
    ref_mean = np.average(v.reshape(-1, 3), axis=0, weights=w.reshape(-1))
    ref_std = np.sqrt(np.average((v.reshape(-1, 3) - ref_mean) ** 2, axis=0, weights=w.reshape(-1)))
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-10)
    np.testing.assert_allclose(std, ref_std, rtol=1e-8)


def test_reinhard_full_strength_matches_background_statistics(scene):
    subject, alpha, bg = scene
    out = reinhard(subject, alpha, bg, 1.0)
    ms, ss = weighted_stats(to_lab(out), alpha)
    mb, sb = weighted_stats(to_lab(bg), None)
    np.testing.assert_allclose(ms, mb, atol=1.0)  # within 1 Lab unit (clipping to RGB gamut)
    np.testing.assert_allclose(ss, sb, atol=1.0)
    assert lab_distance(out, alpha, bg) < 2.0 < lab_distance(subject, alpha, bg)


def test_reinhard_strength_moves_part_way(scene):
    subject, alpha, bg = scene
    d0 = lab_distance(subject, alpha, bg)
    d_half = lab_distance(reinhard(subject, alpha, bg, 0.5), alpha, bg)
    # strength 0 is the identity up to OpenCV's Lab round trip (< one 8-bit level)
    np.testing.assert_allclose(reinhard(subject, alpha, bg, 0.0), subject, atol=3e-3)
    assert d_half == pytest.approx(0.5 * d0, rel=0.1)


def test_histogram_matching_moves_channel_means(scene):
    subject, alpha, bg = scene
    out = histogram_match(subject, alpha, bg, 1.0)
    m = alpha > 0
    for c in range(3):
        assert abs(out[..., c][m].mean() - bg[..., c].mean()) < 0.02
    assert lab_distance(out, alpha, bg) < 0.2 * lab_distance(subject, alpha, bg)


@pytest.mark.parametrize("mode", ["normal", "mixed"])
def test_poisson_pulls_subject_towards_background(scene, mode):
    subject, alpha, bg = scene
    image = subject * alpha[..., None] + bg * (1 - alpha[..., None])
    out = poisson_blend(image, alpha, bg, mode, 1.0)
    assert lab_distance(out, alpha, bg) < 0.8 * lab_distance(image, alpha, bg)
    # far from the subject the background is untouched (up to 8-bit rounding)
    np.testing.assert_allclose(out[:4, :4], bg[:4, :4], atol=1 / 255 + 1e-6)


def test_light_wrap_only_touches_the_edge(scene):
    subject, alpha, bg = scene
    image = subject * alpha[..., None] + bg * (1 - alpha[..., None])
    out = light_wrap(image, alpha, bg, radius_px=2.0, strength=1.0)
    edge_change = np.abs(out[16, 20:44] - image[16, 20:44]).mean()
    centre_change = np.abs(out[30:34, 30:34] - image[30:34, 30:34]).max()
    outside_change = np.abs(out[:8, :8] - image[:8, :8]).max()
    assert edge_change > 0.05 and centre_change < 1e-3 and outside_change == 0.0


def test_noise_estimate_and_matching():
    rng = np.random.default_rng(1)
    flat = np.full((128, 128, 3), 0.5, np.float32)
    noisy = np.clip(flat + rng.normal(0, 0.04, flat.shape), 0, 1).astype(np.float32)
    # Immerkaer on the luma of i.i.d. channel noise: sigma_luma = 0.04 * sqrt(.299^2 + .587^2 + .114^2)
    expected = 0.04 * np.sqrt(0.299**2 + 0.587**2 + 0.114**2)
    assert noise_sigma(noisy) == pytest.approx(expected, rel=0.1)
    alpha = np.ones((128, 128), np.float32)
    matched, added = match_noise(flat, alpha, noisy, np.random.default_rng(2))
    assert added > 0 and noise_sigma(matched) == pytest.approx(noise_sigma(noisy), rel=0.15)


def test_match_blur_softens_a_sharper_subject():
    rng = np.random.default_rng(5)
    sharp = rng.uniform(size=(64, 64, 3)).astype(np.float32)
    import cv2

    soft_bg = cv2.GaussianBlur(sharp, (0, 0), 1.5)
    alpha = np.ones((64, 64), np.float32)
    out, sigma = harmonize.match_blur(sharp, alpha, soft_bg)
    assert sigma >= 1.0
    assert abs(harmonize.sharpness(out) - harmonize.sharpness(soft_bg)) < abs(harmonize.sharpness(sharp) - harmonize.sharpness(soft_bg))


def test_srgb_transfer_functions_stay_within_float32_precision_of_the_numpy_expressions():
    """The OpenCV power path against the IEC 61966-2-1 expressions as NumPy evaluates them in
    float32 (the implementation before it), on a dense grid of [0, 1] and a real photo."""
    import cv2

    from synth.harmonize import linear_to_srgb, srgb_to_linear
    from tests.conftest import ECSSD

    def s2l(x):
        return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)

    def l2s(x):
        x = np.clip(x, 0.0, 1.0)
        return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055).astype(np.float32)

    grid = np.linspace(-0.01, 1.01, 1_000_001, dtype=np.float32)
    photo = cv2.imread(str(ECSSD / "images" / "0001.jpg"))[..., ::-1].astype(np.float32) / 255
    for x in (grid, photo):
        assert np.abs(srgb_to_linear(x) - s2l(x)).max() <= 5e-7
        assert np.abs(linear_to_srgb(x) - l2s(x)).max() <= 5e-7
        assert srgb_to_linear(x).dtype == np.float32 and srgb_to_linear(x).shape == x.shape
    # 8-bit round trip is exact
    levels = np.arange(256, dtype=np.float32) / 255
    np.testing.assert_array_equal(np.round(linear_to_srgb(srgb_to_linear(levels)) * 255), np.arange(256))


def test_linear_to_srgb_rounded_to_8_bits_in_one_pass():
    """The fused 8-bit encoder against its definition, rint(255 * linear_to_srgb(x)), on a dense
    grid through both branches and past both ends, and the 8-bit table against the float function."""
    from synth.harmonize import SRGB_TO_LINEAR_8, linear_to_srgb, linear_to_srgb_u8, srgb_to_linear

    grid = np.linspace(-0.05, 1.05, 2_000_000, dtype=np.float32).reshape(-1, 1000)
    want = np.rint(linear_to_srgb(grid) * np.float32(255)).astype(np.uint8)
    got = linear_to_srgb_u8(grid)
    assert got.dtype == np.uint8 and got.shape == grid.shape
    diff = np.abs(got.astype(int) - want)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-5  # float32 rounding at a half level only
    assert got[grid <= 0].max() == 0 and got[grid >= 1].min() == 255
    levels = np.arange(256, dtype=np.float32) / np.float32(255)
    np.testing.assert_array_equal(SRGB_TO_LINEAR_8, srgb_to_linear(levels))
    np.testing.assert_array_equal(linear_to_srgb_u8(SRGB_TO_LINEAR_8), np.arange(256))  # exact round trip
    empty = np.zeros((0, 3), np.float32)
    assert linear_to_srgb_u8(empty).shape == srgb_to_linear(empty).shape == linear_to_srgb(empty).shape == (0, 3)


def test_the_contrast_change_pivots_on_the_weighted_mean_log_luminance():
    from synth.harmonize import apply_illumination

    subject = np.zeros((4, 6, 3), np.float32)
    subject[:, :3] = 0.3
    subject[:, 3:] = 0.7
    alpha = np.ones((4, 6), np.float32)
    delta = np.array([0.0, 0.0, 0.0, np.log(1.5)])
    seen = np.zeros_like(alpha)
    seen[:, :3] = 1.0  # the centre read on the left half only: that half keeps its light
    out = apply_illumination(subject, alpha, delta, seen)
    np.testing.assert_allclose(out[:, :3], 0.3, atol=1e-6)
    assert (out[:, 3:] > 0.7 + 0.02).all()  # the brighter half moves away from the centre
    # default weights: the alpha-weighted centre lies between the halves, both move
    both = apply_illumination(subject, alpha, delta)
    assert (both[:, :3] < 0.3 - 0.01).all() and (both[:, 3:] > 0.7 + 0.01).all()
    np.testing.assert_array_equal(both, apply_illumination(subject, alpha, delta, alpha))
