"""Trimap band widths and alpha refinement against a real ground-truth alpha matte."""

import cv2
import numpy as np
import pytest

from synth.edges import band_radius, estimate_foreground, refine_alpha, tight_bbox, trimap_from_alpha
from synth.io import read_gray, read_rgb
from tests.conftest import ECSSD, LEMUR


@pytest.mark.parametrize("radius", [0, 1, 4, 10])
def test_trimap_band_width_on_straight_edge(radius):
    alpha = np.zeros((100, 60), np.float32)
    alpha[:50] = 1.0
    tri = trimap_from_alpha(alpha, radius)
    assert set(np.unique(tri)) <= {0, 128, 255}
    unknown_rows = np.flatnonzero((tri == 128).all(axis=1))
    # radius rows inside (eroded foreground) + radius rows outside (dilated support)
    assert len(unknown_rows) == 2 * radius
    if radius:
        assert unknown_rows[0] == 50 - radius and unknown_rows[-1] == 50 + radius - 1
    assert (tri[: 50 - radius] == 255).all() and (tri[50 + radius :] == 0).all()


def test_soft_pixels_are_always_unknown():
    alpha = np.zeros((10, 10), np.float32)
    alpha[4, 4] = 0.5
    alpha[:2] = 1.0
    tri = trimap_from_alpha(alpha, 0)
    assert tri[4, 4] == 128 and tri[0, 0] == 255 and tri[9, 9] == 0


def _whole_frame_trimap(a8: np.ndarray, radius: int) -> np.ndarray:
    """The trimap's definition on the whole frame: both erosions over every pixel."""
    fg, bg = (a8 == 255).astype(np.uint8), (a8 == 0).astype(np.uint8)
    if radius:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        fg = cv2.erode(fg, k, borderType=cv2.BORDER_REPLICATE)
        bg = cv2.erode(bg, k, borderType=cv2.BORDER_REPLICATE)
    return np.where(fg > 0, 255, np.where(bg > 0, 0, 128)).astype(np.uint8)


def test_trimap_on_the_subjects_box_equals_the_whole_frame_erosions():
    # real soft edges (the lemur's alpha) shifted against each border, and random specks
    lemur = read_gray(LEMUR / "lemur_alpha.png")
    rng = np.random.default_rng(3)
    cases = [lemur, np.zeros((5, 7), np.uint8), np.full((9, 9), 255, np.uint8)]
    for dy, dx in ((0, 0), (-60, 0), (0, -90), (80, 40)):
        cases.append(np.roll(np.roll(lemur, dy, axis=0), dx, axis=1))
    for _ in range(40):
        h, w = rng.integers(3, 48, 2)
        a = np.where(rng.random((h, w)) < 0.04, rng.integers(1, 256, (h, w)), 0).astype(np.uint8)
        a[rng.random((h, w)) < 0.03] = 255
        cases.append(a)
    for a in cases:
        for radius in (0, 1, 5, 10):
            np.testing.assert_array_equal(trimap_from_alpha(a, radius), _whole_frame_trimap(a, radius))


def test_band_radius_from_fraction_of_diagonal():
    assert band_radius((300, 400, 3), fraction=0.01) == 5  # 0.01 * 500
    assert band_radius((300, 400), px=7) == 7
    with pytest.raises(ValueError):
        band_radius((10, 10))


def test_tight_bbox():
    a = np.zeros((10, 10))
    a[2:5, 3:7] = 1
    assert tight_bbox(a) == (2, 5, 3, 7)
    assert tight_bbox(a, margin=3) == (0, 8, 0, 10)
    assert tight_bbox(np.zeros((4, 4))) is None


def _sad(a, gt):
    """Sum of absolute differences / 1000 (alphamatting.com convention)."""
    return np.abs(a - gt).sum() / 1000.0


def test_refinement_lowers_sad_against_lemur_ground_truth():
    image = read_rgb(LEMUR / "lemur.png").astype(np.float64) / 255.0
    gt = read_gray(LEMUR / "lemur_alpha.png").astype(np.float64) / 255.0
    mask = gt >= 0.5
    raw = _sad(mask.astype(np.float64), gt)
    r = band_radius(image.shape, fraction=0.01)  # the recipe default
    refined = refine_alpha(image, trimap_from_alpha(mask, r), "cf")
    assert refined.min() >= 0.0 and refined.max() <= 1.0
    # measured: raw 3.20, refined about 1.2; demand at least a 40 % cut
    assert _sad(refined, gt) < 0.6 * raw


def test_foreground_estimation_removes_old_background_colour():
    # a red subject over a green background with a soft edge column: I = aF + (1-a)B
    h, w = 20, 20
    alpha = np.zeros((h, w))
    alpha[:, :8] = 1.0
    alpha[:, 8:12] = np.linspace(0.8, 0.2, 4)
    fg, bg = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    image = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
    est = estimate_foreground(image, alpha)
    # at the soft edge the raw pixel is half green; the estimate must be close to pure red
    assert image[5, 10, 1] > 0.4
    assert est[5, 10, 0] > 0.9 and est[5, 10, 1] < 0.1


def test_disk_morphology_is_opencvs_with_its_ellipse():
    """erode_disk / dilate_disk / open_disk (row runs of the ellipse, built one from another)
    against cv2.erode / dilate / morphologyEx with the same element and borders: real ECSSD masks
    (also cut by the frame), random grey levels and specks, every radius 0-16 and 24, thin and
    one-row frames."""
    from synth.edges import dilate_disk, disk, disk_half_widths, erode_disk, open_disk

    rng = np.random.default_rng(4)
    cases = []
    for stem in ("0001", "0017", "0123"):
        m = (read_gray(ECSSD / "masks" / f"{stem}.png") > 127).astype(np.uint8)
        cases += [m, np.roll(m, 150, axis=1) * 255]
    cases += [rng.integers(0, 256, (37, 53), dtype=np.uint8), (rng.random((60, 45)) < 0.9).astype(np.uint8),
              (rng.random((1, 40)) < 0.7).astype(np.uint8), np.full((3, 2), 200, np.uint8)]
    for radius in [*range(17), 24]:
        k = disk(radius)
        assert sum(2 * w + 1 for w in disk_half_widths(radius)) == int(k.sum())
        for a in cases:
            np.testing.assert_array_equal(erode_disk(a, radius), cv2.erode(a, k))
            np.testing.assert_array_equal(erode_disk(a, radius), cv2.erode(a, k, borderType=cv2.BORDER_REPLICATE))
            np.testing.assert_array_equal(dilate_disk(a, radius), cv2.dilate(a, k))
            np.testing.assert_array_equal(open_disk(a, radius), cv2.morphologyEx(a, cv2.MORPH_OPEN, k))
