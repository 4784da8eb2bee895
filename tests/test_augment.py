"""Colour jitter against its definition."""

import numpy as np
import pytest

from synth.augment import color_jitter, gaussian_noise


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
