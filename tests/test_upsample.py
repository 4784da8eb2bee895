"""Upsamplers: the guided filter against its definition, guided upsampling on real photos, and the
release manifest's upsampler used by ONNX inference."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from evalhub import metrics as M
from evalhub.upsample import UpsampleSpec, guided_coefficients, guided_filter, guided_upsample, upsample
from synth.io import read_rgb
from tests.conftest import ECSSD


def _definition(p, guide, r, eps):
    """He et al.'s guided filter straight from its definition: for every window (clipped to the
    frame) the ridge regression min sum_i (a^T I_i + b - p_i)^2 + eps |w| a^T a, then every pixel
    averages the linear models of the windows that contain it."""
    h, w = p.shape
    a_sum = np.zeros((h, w, 3))
    b_sum = np.zeros((h, w))
    n = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            ys, xs = slice(max(0, y - r), y + r + 1), slice(max(0, x - r), x + r + 1)
            I = guide[ys, xs].reshape(-1, 3).astype(np.float64)
            q = p[ys, xs].reshape(-1).astype(np.float64)
            k = len(q)
            Ic = I - I.mean(0)
            a = np.linalg.solve(Ic.T @ Ic / k + eps * np.eye(3), Ic.T @ (q - q.mean()) / k)
            b = q.mean() - a @ I.mean(0)
            a_sum[ys, xs] += a
            b_sum[ys, xs] += b
            n[ys, xs] += 1
    return (a_sum / n[..., None] * guide).sum(-1) + b_sum / n


def _real_crop(size=(28, 36)):
    photo = read_rgb(ECSSD / "images" / "0002.jpg")
    gt = cv2.imread(str(ECSSD / "masks" / "0002.png"), cv2.IMREAD_GRAYSCALE)
    guide = cv2.resize(photo, size[::-1], interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    p = cv2.GaussianBlur(cv2.resize(gt, size[::-1], interpolation=cv2.INTER_AREA).astype(np.float32) / 255, (0, 0), 1.5)
    return p, guide


@pytest.mark.parametrize("r,eps", [(1, 1e-4), (3, 1e-2)])
def test_guided_filter_equals_its_definition_on_a_real_photo(r, eps):
    p, guide = _real_crop()
    np.testing.assert_allclose(guided_filter(p, guide, r, eps), _definition(p, guide, r, eps), atol=1e-9)


def test_guided_filter_limits():
    p, guide = _real_crop()
    # a huge eps leaves only the windows' means of p; a constant map stays constant
    smooth = guided_filter(p, guide, 2, 1.0e6)
    count = cv2.boxFilter(np.ones_like(p, np.float64), -1, (5, 5), normalize=False, borderType=cv2.BORDER_CONSTANT)
    box = cv2.boxFilter(p.astype(np.float64), -1, (5, 5), normalize=False, borderType=cv2.BORDER_CONSTANT) / count
    np.testing.assert_allclose(smooth, cv2.boxFilter(box, -1, (5, 5), normalize=False, borderType=cv2.BORDER_CONSTANT) / count, atol=1e-6)
    np.testing.assert_allclose(guided_filter(np.full_like(p, 0.3), guide, 2, 1e-4), 0.3, atol=1e-9)
    with pytest.raises(ValueError, match="guide"):
        guided_coefficients(p, guide[:, :-1], 2, 1e-4)


def test_guided_upsampling_applies_the_coefficients_to_the_full_photo():
    photo = read_rgb(ECSSD / "images" / "0003.jpg")
    gt = cv2.imread(str(ECSSD / "masks" / "0003.png"), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
    low = cv2.resize(gt, (80, 60), interpolation=cv2.INTER_AREA)
    got = guided_upsample(low, photo, 2, 1e-3)
    guide = cv2.resize(photo, (80, 60), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    a, b = guided_coefficients(low, guide, 2, 1e-3)
    H, W = photo.shape[:2]
    a_up = cv2.resize(a.astype(np.float32), (W, H), interpolation=cv2.INTER_LINEAR)
    b_up = cv2.resize(b.astype(np.float32), (W, H), interpolation=cv2.INTER_LINEAR)
    want = np.clip((a_up * (photo.astype(np.float32) / 255)).sum(-1) + b_up, 0, 1)
    np.testing.assert_allclose(got, want, atol=1e-5)
    # the same size is left as it is; bilinear is cv2.resize
    assert upsample(gt, photo, UpsampleSpec(method="guided")) is not None
    np.testing.assert_array_equal(upsample(gt, photo, UpsampleSpec(method="guided")), gt)
    np.testing.assert_allclose(upsample(low, photo), np.clip(cv2.resize(low, (W, H), interpolation=cv2.INTER_LINEAR), 0, 1))


def test_guided_upsampling_recovers_fur_that_bilinear_blurs_on_a_real_alpha():
    # the lemur's true alpha shrunk to a model's resolution and brought back: the photo's edges put
    # the fur back (matting errors over the trimap's unknown region)
    from tests.conftest import LEMUR

    photo = read_rgb(LEMUR / "lemur.png")
    alpha = cv2.imread(str(LEMUR / "lemur_alpha.png"), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
    trimap = cv2.imread(str(LEMUR / "lemur_trimap.png"), cv2.IMREAD_GRAYSCALE)
    for side in (80, 160):
        low = cv2.resize(alpha, (side, side), interpolation=cv2.INTER_AREA)
        bilinear = upsample(low, photo)
        guided = upsample(low, photo, UpsampleSpec(method="guided", radius=1, eps=1e-4))
        assert M.sad(guided, alpha, trimap) < 0.5 * M.sad(bilinear, alpha, trimap)
        assert M.mse(guided, alpha, trimap) < 0.5 * M.mse(bilinear, alpha, trimap)
        assert M.gradient_error(guided, alpha, trimap) < 0.5 * M.gradient_error(bilinear, alpha, trimap)


def test_an_onnx_release_uses_its_manifest_upsampler(tmp_path):
    from evalhub.releases import OnnxRelease, load_manifest
    from tests.test_onnx_release import build_model, manifest

    model = build_model(tmp_path / "m.onnx")
    img = read_rgb(ECSSD / "images" / "0001.jpg")
    plain = OnnxRelease(model, load_manifest(manifest(tmp_path / "a.yaml")))
    guided = OnnxRelease(model, load_manifest(manifest(tmp_path / "b.yaml", upsample={"method": "guided", "radius": 3, "eps": 0.01})))
    (p_plain, _), = plain.predict([img])
    (p_guided, _), = guided.predict([img])
    x = cv2.resize(img, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    low = 1 / (1 + np.exp(-8 * (x[..., 0] - x[..., 1])))
    np.testing.assert_allclose(p_guided, guided_upsample(low, img, 3, 0.01), atol=1e-4)
    assert np.abs(p_guided - p_plain).max() > 0.05
    with pytest.raises(Exception, match="upsample"):
        load_manifest(manifest(tmp_path / "c.yaml", upsample={"method": "nearest"}))
