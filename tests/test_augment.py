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
    assert float(np.mean(_NORMAL.astype(np.float64))) == pytest.approx(0.0, abs=1e-9)  # summed in float64: float32 sums differ by NumPy version
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


def _bytes(seed: int, n: int) -> np.ndarray:
    """The uniform bytes :func:`noise_by_level` draws from ``default_rng(seed)``: the raw 64-bit
    words, eight bytes each, in order."""
    return np.random.default_rng(seed).bit_generator.random_raw(-(-n // 8)).view(np.uint8)[:n]


def test_byte_normal_atoms_are_the_normal_quantiles_of_256_levels():
    """256 equiprobable atoms at the N(0, 1) quantiles of the bin midpoints, scaled to unit
    variance: within 0.0026 of N(0, 1) in Kolmogorov distance, +-2.89 sigma at most."""
    from scipy import stats
    from scipy.special import ndtri

    from synth.augment import BYTE_NORMAL

    k = np.arange(256)
    q = ndtri((k + 0.5) / 256)
    np.testing.assert_allclose(BYTE_NORMAL, q / np.sqrt(np.mean(q * q)), rtol=1e-6)
    assert BYTE_NORMAL.dtype == np.float32 and np.all(np.diff(BYTE_NORMAL) > 0)
    cdf = stats.norm.cdf(BYTE_NORMAL.astype(np.float64))
    assert max(np.abs(cdf - k / 256).max(), np.abs(cdf - (k + 1) / 256).max()) <= 0.0026
    assert BYTE_NORMAL.max() == pytest.approx(2.893, abs=1e-3)


@pytest.mark.parametrize("shape", [(1024, 1024, 3), (333, 517, 3), (7, 5), (1,), (0, 4, 3)])
def test_noise_by_level_looks_up_each_value_with_its_own_byte(shape):
    """``out = table[v, r]`` with ``r`` the generator's bytes in C order (NumPy fancy indexing as
    the reference), every shape and block remainder, and the generator left where drawing those
    bytes leaves it."""
    from synth.augment import noise_by_level

    n = int(np.prod(shape))
    image = np.random.default_rng(2).integers(0, 256, shape, dtype=np.uint8)
    table = np.random.default_rng(3).integers(0, 256, (256, 256), dtype=np.uint8)
    rng, ref = np.random.default_rng(11), np.random.default_rng(11)
    got = noise_by_level(image, table, rng)
    want = table[image.ravel(), _bytes(11, n)].reshape(shape)
    assert got.dtype == np.uint8 and got.shape == shape
    np.testing.assert_array_equal(got, want)
    ref.bit_generator.random_raw(-(-n // 8))
    assert rng.integers(1 << 62) == ref.integers(1 << 62)
    # a view with strides reads its own values
    view = image[..., ::-1] if image.ndim == 3 else image
    np.testing.assert_array_equal(noise_by_level(view, table, np.random.default_rng(11)), table[view.ravel(), _bytes(11, n)].reshape(shape))


def test_noise_by_level_refuses_other_types():
    from synth.augment import noise_by_level

    table = np.zeros((256, 256), np.uint8)
    with pytest.raises(ValueError):
        noise_by_level(np.zeros((4, 4), np.float32), table, np.random.default_rng(0))
    with pytest.raises(ValueError):
        noise_by_level(np.zeros((4, 4), np.uint8), table[:128], np.random.default_rng(0))


def test_gaussian_noise_on_8_bits_is_the_float_formula_at_its_atom():
    """On uint8, each pixel is ``rint(255 clip(v / 255 + sigma / 255 a, 0, 1))`` for its byte's atom
    ``a``, written out per pixel here; and the noise keeps its standard deviation in levels (the
    atoms' variance is 1; rounding an integer level plus the noise adds about 1/12)."""
    from synth.augment import BYTE_NORMAL

    photo = np.random.default_rng(4).integers(0, 256, (300, 200, 3), dtype=np.uint8)
    got = gaussian_noise(photo, 2.5, np.random.default_rng(6))
    a = BYTE_NORMAL[_bytes(6, photo.size)].reshape(photo.shape)
    x = np.clip(photo.astype(np.float32) / np.float32(255) + a * np.float32(2.5 / 255), 0, 1)
    np.testing.assert_array_equal(got, np.rint(x * np.float32(255)).astype(np.uint8))
    flat = np.full((512, 512, 3), 128, np.uint8)
    d = gaussian_noise(flat, 3.0, np.random.default_rng(0)).astype(np.float64) - 128
    assert abs(d.mean()) < 0.02 and d.var() == pytest.approx(9.0 + 1 / 12, rel=0.02)


@pytest.mark.parametrize("sigma", [1.0, 2.5, 4.0])
def test_gaussian_noise_on_8_bits_has_the_float_paths_law_within_the_atoms_distance(sigma):
    """Per level, the law of the 8-bit path's output (each of the 256 atoms once) against the
    float path's rounded output (each of the 2**16 atoms of :func:`standard_normal` once):
    Kolmogorov distance at most the two atom sets' distance (0.0026 + 1.1e-5), as the output is
    monotone in the atom; means within a hundredth of a level; variances within 1.5 % away from
    the clipped ends (256 atoms put multiples of 1/256 on each output level, which moves the
    rounded variance by up to 0.13 level^2 at 3 levels)."""
    from synth.augment import _NORMAL, BYTE_NORMAL

    levels = np.arange(256, dtype=np.float32)[:, None] / np.float32(255)

    def law(atoms):
        out = np.rint(np.clip(levels + atoms[None, :] * np.float32(sigma / 255), 0, 1) * 255).astype(np.int64)
        return np.stack([np.bincount(row, minlength=256) / row.size for row in out])

    p8, p16 = law(BYTE_NORMAL), law(_NORMAL)
    assert np.abs(np.cumsum(p8, axis=1) - np.cumsum(p16, axis=1)).max() <= 0.0026 + 1.1e-5
    v = np.arange(256)
    mean8, mean16 = p8 @ v, p16 @ v
    assert np.abs(mean8 - mean16).max() < 0.01
    var8, var16 = p8 @ v**2 - mean8**2, p16 @ v**2 - mean16**2
    assert (np.abs(var8 - var16) / var16)[20:-20].max() < 0.015
