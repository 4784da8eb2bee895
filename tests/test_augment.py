"""Colour jitter against its definition."""

import numpy as np
import pytest

from synth.augment import NORMAL_LEVELS, color_jitter, gaussian_noise, row_blocks, standard_normal


@pytest.fixture
def img():
    return np.random.default_rng(0).uniform(0.2, 0.8, (16, 16, 3)).astype(np.float32)


def test_identity_and_brightness(img):
    np.testing.assert_allclose(color_jitter(img, 1.0, 1.0, 1.0, 0.0), img, atol=1e-6)
    np.testing.assert_allclose(color_jitter(img, 1.2, 1.0, 1.0, 0.0), np.clip(img * 1.2, 0, 1), atol=1e-6)


def test_contrast_about_mean_luma(img):
    luma = img @ np.array([0.299, 0.587, 0.114], np.float32)
    m = luma.mean()
    np.testing.assert_allclose(color_jitter(img, 1.0, 0.5, 1.0, 0.0), 0.5 * img + 0.5 * m, atol=1e-5)


def test_zero_saturation_gives_grey(img):
    out = color_jitter(img, 1.0, 1.0, 0.0, 0.0)
    luma = img @ np.array([0.299, 0.587, 0.114], np.float32)
    np.testing.assert_allclose(out, np.repeat(luma[..., None], 3, axis=2), atol=1e-5)


def test_hue_rotation_by_120_degrees_cycles_primaries():
    red = np.zeros((2, 2, 3), np.float32)
    red[..., 0] = 1.0
    out = color_jitter(red, 1.0, 1.0, 1.0, 120.0)
    np.testing.assert_allclose(out[0, 0], [0.0, 1.0, 0.0], atol=1e-5)
    grey = np.full((2, 2, 3), 0.4, np.float32)
    np.testing.assert_allclose(color_jitter(grey, 1.0, 1.0, 1.0, 37.0), grey, atol=1e-6)  # grey axis fixed


def test_noise_level_in_8bit_levels():
    flat = np.full((256, 256, 3), 0.5, np.float32)
    out = gaussian_noise(flat, 4.0, np.random.default_rng(0))
    assert (out - flat).std() * 255 == pytest.approx(4.0, rel=0.03)


def test_standard_normal_atoms_are_the_normal_quantiles():
    """Inverse-transform sampling from 2**16 equiprobable atoms: the atoms are the N(0, 1) quantiles
    at the bin midpoints (scaled to unit variance), so the sampled law is within 1.1e-5 of N(0, 1)
    in Kolmogorov distance (2**-17 = 7.6e-6 unscaled), checked against scipy's normal CDF at every
    atom, where the step CDF jumps."""
    from scipy import stats

    from synth.augment import _NORMAL

    k = np.arange(NORMAL_LEVELS)
    assert _NORMAL.dtype == np.float32 and np.all(np.diff(_NORMAL) > 0)
    assert float(np.mean(_NORMAL.astype(np.float64) ** 2)) == pytest.approx(1.0, abs=1e-6)
    assert float(np.mean(_NORMAL)) == pytest.approx(0.0, abs=1e-9)
    cdf = stats.norm.cdf(_NORMAL.astype(np.float64))
    # the step CDF of the atoms jumps from k / N to (k + 1) / N at atom k
    assert max(np.abs(cdf - k / NORMAL_LEVELS).max(), np.abs(cdf - (k + 1) / NORMAL_LEVELS).max()) <= 1.1e-5
    assert 4.2 < _NORMAL.max() < 4.4


def test_standard_normal_draws_follow_the_normal_law_and_repeat_with_the_seed():
    from scipy import stats

    x = standard_normal(np.random.default_rng(5), (512, 512, 3))
    assert x.dtype == np.float32 and x.shape == (512, 512, 3)
    y = x.astype(np.float64).ravel()
    assert abs(y.mean()) < 4 * 1 / np.sqrt(y.size) and y.var() == pytest.approx(1.0, abs=0.005)
    assert stats.kstest(y[:200_000], "norm").pvalue > 0.001
    assert np.mean(np.abs(y) > 2) == pytest.approx(2 * stats.norm.sf(2), abs=0.001)
    np.testing.assert_array_equal(x, standard_normal(np.random.default_rng(5), (512, 512, 3)))


@pytest.mark.parametrize("shape", [(1024, 1024, 3), (700, 513, 3), (1, 1, 3), (301, 7)])
def test_gaussian_noise_in_row_blocks_is_the_whole_frame_formula(shape):
    """Block by block in the CPU's cache, the same values as clip(x + sigma / 255 * z) on the whole
    frame with the same draws, and the generator left where one whole-frame draw leaves it."""
    image = np.random.default_rng(1).random(shape, dtype=np.float32)
    rng, ref = np.random.default_rng(8), np.random.default_rng(8)
    got = gaussian_noise(image, 3.0, rng)
    want = np.clip(image + standard_normal(ref, shape) * np.float32(3.0 / 255), 0.0, 1.0)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    assert rng.integers(1 << 62) == ref.integers(1 << 62)
    blocks = row_blocks(shape)
    assert len(blocks) == -(-shape[0] // blocks[0].stop) and blocks[-1].stop >= shape[0]
