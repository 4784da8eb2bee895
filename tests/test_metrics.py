"""Per-image metrics against hand-computed values and straight-from-the-definition references."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from scipy import ndimage

from evalhub import calibration as C
from evalhub import metrics as M
from tests.conftest import ECSSD, LEMUR


def box(shape, r0, r1, c0, c1):
    m = np.zeros(shape, bool)
    m[r0:r1, c0:c1] = True
    return m


def test_region_metrics_by_hand():
    pred = box((10, 10), 0, 4, 0, 4)  # 16 px
    gt = box((10, 10), 0, 4, 2, 6)  # 16 px, 8 shared
    r = M.region_metrics(pred, gt)
    assert r["iou"] == pytest.approx(8 / 24)
    assert r["dice"] == pytest.approx(16 / 32)
    assert r["precision"] == pytest.approx(0.5)
    assert r["recall"] == pytest.approx(0.5)
    assert M.confusion(pred, gt) == (8, 8, 8, 76)


def test_empty_mask_conventions():
    empty, full = np.zeros((8, 8), bool), box((8, 8), 2, 6, 2, 6)
    both = M.image_metrics(empty.astype(np.float32), empty)
    assert (both["iou"], both["dice"], both["precision"], both["recall"]) == (1, 1, 1, 1)
    assert both["boundary_f1"] == 1 and both["boundary_iou"] == 1 and both["mae"] == 0
    missed = M.image_metrics(empty.astype(np.float32), full)
    assert (missed["iou"], missed["dice"], missed["precision"], missed["recall"]) == (0, 0, 1, 0)
    assert missed["boundary_f1"] == 0 and missed["boundary_iou"] == 0
    assert missed["mae"] == pytest.approx(16 / 64)
    spurious = M.image_metrics(full.astype(np.float32), empty)
    assert (spurious["iou"], spurious["precision"], spurious["recall"]) == (0, 0, 1)
    assert spurious["boundary_f1"] == 0 and spurious["boundary_iou"] == 0


def test_seg2bmap_by_hand():
    m = box((8, 8), 2, 5, 2, 5)  # 3x3 square, rows/cols 2..4
    expected = {(4, 2), (4, 3), (4, 4), (2, 4), (3, 4)}  # inner: bottom row and right column
    expected |= {(2, 1), (3, 1), (4, 1), (1, 2), (1, 3), (1, 4), (1, 1)}  # outer: west, north, NW
    got = {tuple(p) for p in np.argwhere(M.seg2bmap(m))}
    assert got == expected
    # the image border is not a boundary: a full mask has none
    assert not M.seg2bmap(np.ones((5, 7), bool)).any()


def test_euclidean_disk_matches_definition():
    from skimage.morphology import disk

    for r in (0, 1, 3, 6, 9):
        np.testing.assert_array_equal(M.euclidean_disk(r), disk(r))


def test_boundary_f1_shifted_square_by_hand():
    gt = box((40, 40), 10, 30, 10, 30)
    pred = box((40, 40), 10, 30, 15, 35)  # shifted 5 px right
    # 80 boundary pixels each; with a 2 px tolerance 40 of each side match (counted by hand:
    # 18 + 18 + 0 + 4 of the truth's, 18 + 17 + 5 + 0 of the prediction's)
    r = M.boundary_f1(pred, gt, bound_th=2)
    assert r["boundary_precision"] == pytest.approx(40 / 80)
    assert r["boundary_recall"] == pytest.approx(40 / 80)
    assert r["boundary_f1"] == pytest.approx(0.5)
    # within tolerance everything matches
    assert M.boundary_f1(pred, gt, bound_th=5)["boundary_f1"] == pytest.approx(1.0)
    # the default tolerance is ceil(0.008 * diagonal): 1 px at 40x40
    assert M.boundary_tolerance((40, 40)) == 1
    assert M.boundary_tolerance((512, 512)) == math.ceil(0.008 * math.hypot(512, 512)) == 6


def _reference_boundary_f1(pred, gt, r):
    """DAVIS f_measure as the reference code runs it: ``cv2.dilate`` with skimage's ``disk``, on the
    boundaries of the straight-from-the-definition ``seg2bmap`` below."""
    from skimage.morphology import disk

    fb, gb = _reference_seg2bmap(pred), _reference_seg2bmap(gt)
    fd = cv2.dilate(fb.astype(np.uint8), disk(r)) > 0
    gd = cv2.dilate(gb.astype(np.uint8), disk(r)) > 0
    p = (fb & gd).sum() / fb.sum()
    rc = (gb & fd).sum() / gb.sum()
    return 2 * p * rc / (p + rc) if p + rc else 0.0


def _reference_boundary_iou(pred, gt, ratio=0.02):
    """Cheng et al.'s mask_to_boundary as written: pad, iterate a 3x3 erosion d times."""
    def band(m):
        h, w = m.shape
        d = max(1, int(round(ratio * math.hypot(h, w))))
        padded = np.pad(m.astype(np.uint8), 1)
        er = ndimage.binary_erosion(padded, np.ones((3, 3)), iterations=d, border_value=1)[1:-1, 1:-1]
        return m & ~er
    bp, bg = band(pred), band(gt)
    return (bp & bg).sum() / (bp | bg).sum()


def _reference_seg2bmap(seg):
    """DAVIS ``seg2bmap`` for equal-size maps, written as the reference does with shifted copies."""
    e, s, se = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    e[:, :-1], s[:-1, :], se[:-1, :-1] = seg[:, 1:], seg[1:, :], seg[1:, 1:]
    b = seg ^ e | seg ^ s | seg ^ se
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = 0
    return b


def _real_pairs(size=None, names=("0001", "0002", "0003", "0010")):
    """Real ECSSD masks (optionally resized, nearest) with a dilated, shifted, speckled prediction."""
    rng = np.random.default_rng(3)
    for name in names:
        gt = cv2.imread(str(ECSSD / "masks" / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
        if size:
            gt = cv2.resize(gt, size, interpolation=cv2.INTER_NEAREST)
        gt = gt > 127
        pred = cv2.dilate(gt.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
        pred = np.roll(pred, (int(rng.integers(-9, 10)), int(rng.integers(-9, 10))), axis=(0, 1))
        pred ^= rng.random(gt.shape) < 0.002  # speckle, also on the frame's edges
        yield pred, gt


@pytest.mark.parametrize("size", [None, (1024, 1024), (1001, 777)], ids=["native", "1024", "odd"])
def test_boundary_metrics_equal_the_slow_definitions_on_real_masks(size):
    for pred, gt in _real_pairs(size):
        r = M.boundary_tolerance(gt.shape)
        assert M.boundary_f1(pred, gt)["boundary_f1"] == pytest.approx(_reference_boundary_f1(pred, gt, r), abs=1e-12)
        assert M.boundary_iou(pred, gt) == pytest.approx(_reference_boundary_iou(pred, gt), abs=1e-12)
        np.testing.assert_array_equal(M.seg2bmap(pred), _reference_seg2bmap(pred))
        got = M.image_metrics(pred.astype(np.float32), gt)
        assert got["boundary_f1"] == M.boundary_f1(pred, gt)["boundary_f1"]
        assert got["iou"] == pytest.approx((pred & gt).sum() / (pred | gt).sum(), abs=1e-15)


def test_boundary_metrics_at_the_frame_edge_and_with_wide_tolerances():
    # masks cut by the frame on every side, widths that are no multiple of 64, tolerances over 64 px
    gt = np.zeros((130, 200), bool)
    gt[:90, :150] = True
    gt[60:, 120:] = True
    pred = np.roll(gt, (5, -7), axis=(0, 1))
    for th in (1, 3, 70, 0.008):
        r = M.boundary_tolerance(gt.shape, th)
        assert M.boundary_f1(pred, gt, th)["boundary_f1"] == pytest.approx(_reference_boundary_f1(pred, gt, r), abs=1e-12)
    for ratio in (0.02, 0.3):
        assert M.boundary_iou(pred, gt, ratio) == pytest.approx(_reference_boundary_iou(pred, gt, ratio), abs=1e-12)


def test_bit_packed_morphology_equals_opencv():
    from evalhub import bitmorph as B

    rng = np.random.default_rng(5)
    for shape in ((97, 200), (64, 64), (40, 333)):
        m = (cv2.GaussianBlur(rng.random(shape), (0, 0), 3) > 0.5).astype(np.uint8)
        m[rng.random(shape) < 0.01] ^= 1
        packed = B.pack(m)
        np.testing.assert_array_equal(B.unpack(packed, shape[1]), m)
        assert B.count(packed) == m.sum()
        for s in (1, -1, 13, -63, 64, -70, 130):
            moved = np.zeros_like(m)
            if s > 0:
                moved[:, s:] = m[:, : max(0, shape[1] - s)]
            else:
                moved[:, : max(0, shape[1] + s)] = m[:, -s:]
            np.testing.assert_array_equal(B.unpack(B.shift_x(packed, s), shape[1]), moved)
        # the pair below shares the words per row with m but not its height: stacked runs must
        # neither reach each other nor carry bits across rows through the guard words
        other = (rng.random((shape[0] // 2 + 3, shape[1])) < 0.02).astype(np.uint8)
        other_packed = B.pack(other)
        for r in (0, 1, 2, 5, 12, 40, 70):
            want = cv2.dilate(m, M.euclidean_disk(r), borderType=cv2.BORDER_CONSTANT, borderValue=0)
            np.testing.assert_array_equal(B.unpack(B.dilate_disk(packed, r), shape[1]), want)
            want_other = cv2.dilate(other, M.euclidean_disk(r), borderType=cv2.BORDER_CONSTANT, borderValue=0)
            got, got_other = B.dilate_disk_many([packed, other_packed], r)
            np.testing.assert_array_equal(B.unpack(got, shape[1]), want)
            np.testing.assert_array_equal(B.unpack(got_other, shape[1]), want_other)
        for half in (1, 4, 29, 70):
            square = np.ones((2 * half + 1, 2 * half + 1), np.uint8)
            want = cv2.erode(m, square, borderType=cv2.BORDER_CONSTANT, borderValue=0)
            np.testing.assert_array_equal(B.unpack(B.erode_square(packed, half), shape[1]), want)
            full = np.ones_like(other)  # erodes from the frame's edge only
            got, got_full = B.erode_square_many([packed, B.pack(full)], half)
            np.testing.assert_array_equal(B.unpack(got, shape[1]), want)
            want_full = cv2.erode(full, square, borderType=cv2.BORDER_CONSTANT, borderValue=0)
            np.testing.assert_array_equal(B.unpack(got_full, shape[1]), want_full)


def test_boundary_iou_by_hand():
    full = np.ones((10, 10), bool)
    left = box((10, 10), 0, 10, 0, 5)
    assert M.boundary_band_width((10, 10)) == 1  # round(0.02 * 14.1) = 0 -> at least 1
    # the image border counts: the full mask's band is the 36-pixel outer ring
    assert M.mask_to_boundary(full, 1).sum() == 36
    assert M.mask_to_boundary(left, 1).sum() == 26
    assert M.boundary_iou(left, full) == pytest.approx(18 / 44)
    assert M.boundary_iou(full, full) == 1.0


def test_mae_by_hand():
    gt = box((4, 4), 0, 2, 0, 4)
    prob = np.full((4, 4), 0.25, np.float32)
    assert M.mae(prob, gt) == pytest.approx(0.5)


def test_shape_mismatch_is_named():
    with pytest.raises(ValueError, match=r"\(4, 4\) vs \(4, 5\)"):
        M.region_metrics(np.zeros((4, 4), bool), np.zeros((4, 5), bool))


def test_sad_mse_by_hand():
    gt = np.zeros((20, 20))
    pred = np.zeros((20, 20))
    pred[:10, :10] = 0.5
    trimap = np.zeros((20, 20), np.uint8)
    trimap[:10, :10] = 128  # 100 unknown pixels, each off by 0.5
    trimap[10:, 10:] = 255
    assert M.sad(pred, gt, trimap) == pytest.approx(50 / 1000)
    assert M.mse(pred, gt, trimap) == pytest.approx(0.25)


def _mat2gray(a):
    """MATLAB's mat2gray, written from its documentation: min-max scaling over the whole image."""
    lo, hi = a.min(), a.max()
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def _reference_gradient_error(pred, gt, trimap, sigma=1.4, normalize=True):
    """compute_gradient_loss.m + gaussgradient.m written as their loops: mat2gray on both mattes, the
    full 2-D kernel, replicate borders, convolution."""
    if normalize:
        pred, gt = _mat2gray(pred), _mat2gray(gt)
    eps = 1e-2
    half = math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * eps)))
    size = 2 * half + 1
    gauss = lambda x: math.exp(-x * x / (2 * sigma * sigma)) / (sigma * math.sqrt(2 * math.pi))  # noqa: E731
    hx = np.zeros((size, size))
    for i in range(size):
        for j in range(size):
            u = (i - half, j - half)
            hx[i, j] = gauss(u[0]) * (-u[1] * gauss(u[1]) / sigma**2)
    hx /= math.sqrt((np.abs(hx) ** 2).sum())
    hy = hx.T

    def amp(a):
        return np.hypot(ndimage.convolve(a, hx, mode="nearest"), ndimage.convolve(a, hy, mode="nearest"))

    return ((amp(pred) - amp(gt)) ** 2 * (trimap == 128)).sum() / 1000


def test_gradient_error_matches_the_definition():
    alpha = cv2.imread(str(LEMUR / "lemur_alpha.png"), cv2.IMREAD_GRAYSCALE).astype(np.float64) / 255
    trimap = cv2.imread(str(LEMUR / "lemur_trimap.png"), cv2.IMREAD_GRAYSCALE)
    alpha, trimap = alpha[::4, ::4], trimap[::4, ::4]  # keep the loop reference fast
    trimap = np.where((trimap > 0) & (trimap < 255), 128, trimap).astype(np.uint8)
    pred = cv2.GaussianBlur(alpha, (0, 0), 2.0)
    ref = _reference_gradient_error(pred, alpha, trimap)
    assert ref > 0
    assert M.gradient_error(pred, alpha, trimap) == pytest.approx(ref, rel=1e-9)
    assert M.gradient_error(pred, alpha, trimap, normalize="none") == pytest.approx(
        _reference_gradient_error(pred, alpha, trimap, normalize=False), rel=1e-9)
    assert M.gradient_error(alpha, alpha, trimap) == 0.0
    assert M.gradient_error(np.clip(alpha + 0.0, 0, 1), alpha, trimap) == 0.0


def test_gradient_error_normalises_like_the_dim_code():
    """Regression (issue 15): a matte 0.8 g + 0.1 has the gradients of g after mat2gray, so the
    reference scores it ~0; without the normalisation it scored 0.348 here."""
    alpha = cv2.imread(str(LEMUR / "lemur_alpha.png"), cv2.IMREAD_GRAYSCALE).astype(np.float64) / 255
    trimap = cv2.imread(str(LEMUR / "lemur_trimap.png"), cv2.IMREAD_GRAYSCALE)
    alpha, trimap = alpha[::4, ::4], trimap[::4, ::4]
    trimap = np.where((trimap > 0) & (trimap < 255), 128, trimap).astype(np.uint8)
    squeezed = 0.8 * alpha + 0.1
    assert M.gradient_error(squeezed, alpha, trimap) == pytest.approx(0.0, abs=1e-9)
    assert _reference_gradient_error(squeezed, alpha, trimap) == pytest.approx(0.0, abs=1e-9)
    unnormalised = M.gradient_error(squeezed, alpha, trimap, normalize="none")
    assert unnormalised == pytest.approx(_reference_gradient_error(squeezed, alpha, trimap, normalize=False), rel=1e-9)
    assert unnormalised > 0.01
    with pytest.raises(ValueError, match="normalize must be one of"):
        M.gradient_error(alpha, alpha, trimap, normalize="minmax")


def test_connectivity_error_does_not_depend_on_the_dtype():
    """Regression (issue 15): the same 8-bit matte as uint8, float32 and float64 scores the same; at
    the threshold 0.6 (np.arange gives 0.6000000000000001) float32 153/255 used to land above and
    float64 153/255 below it."""
    rng = np.random.default_rng(3)
    gt8 = np.zeros((40, 40), np.uint8)
    gt8[:, :20] = 255
    gt8[:, 18:22] = 153
    pred8 = gt8.copy()
    pred8[10:14, 25:29] = 153  # a blob at exactly the 0.6 level, cut off from the subject
    pred8[30:33, 5:9] = rng.integers(0, 256, (3, 4), dtype=np.uint8)
    trimap = np.full((40, 40), 128, np.uint8)
    f64 = M.connectivity_error(pred8.astype(np.float64) / 255, gt8.astype(np.float64) / 255, trimap)
    f32 = M.connectivity_error((pred8.astype(np.float32) / 255), (gt8.astype(np.float32) / 255), trimap)
    u8 = M.connectivity_error(pred8, gt8, trimap)
    assert f64 == f32 == u8 > 0
    # the reference reads 8-bit PNGs and divides by 255 in float64: that is the value
    a = pred8 / 255.0
    steps = np.arange(0.0, 1.1, 0.1)
    assert a[10, 25] < steps[6] and np.float32(153 / 255) >= steps[6]


def test_connectivity_error_by_hand():
    gt = np.zeros((20, 20))
    gt[:, :10] = 1.0
    pred = gt.copy()
    pred[5:8, 14:17] = 1.0  # a 9-pixel blob cut off from the subject
    trimap = np.full((20, 20), 128, np.uint8)
    # the blob leaves the source region at the first threshold (l = 0): phi(pred) = 0, phi(gt) = 1
    assert M.connectivity_error(pred, gt, trimap) == pytest.approx(9 / 1000)
    assert M.connectivity_error(gt, gt, trimap) == 0.0
    # outside the unknown region nothing counts
    trimap[5:8, 14:17] = 0
    assert M.connectivity_error(pred, gt, trimap) == 0.0


def test_matting_errors_on_lemur_rank_the_raw_mask_below_the_true_alpha():
    alpha = cv2.imread(str(LEMUR / "lemur_alpha.png"), cv2.IMREAD_GRAYSCALE).astype(np.float64) / 255
    trimap = cv2.imread(str(LEMUR / "lemur_trimap.png"), cv2.IMREAD_GRAYSCALE)
    raw = (alpha >= 0.5).astype(np.float64)
    errs = M.matting_errors(raw, alpha, trimap)
    u = (trimap > 0) & (trimap < 255)  # this trimap marks its unknown region with 102
    assert u.sum() > 10000
    assert errs["sad"] == pytest.approx(np.abs(raw - alpha)[u].sum() / 1000)
    assert errs["mse"] == pytest.approx(((raw - alpha)[u] ** 2).mean())
    assert errs["grad"] > 0 and errs["conn"] > 0
    assert M.matting_errors(alpha, alpha, trimap) == {"sad": 0.0, "mse": 0.0, "grad": 0.0, "conn": 0.0}


def test_image_metrics_binarises_at_one_half():
    gt = box((6, 6), 0, 3, 0, 6)
    prob = np.where(gt, 0.5, 0.49).astype(np.float32)  # exactly 0.5 counts as foreground
    r = M.image_metrics(prob, gt)
    assert r["iou"] == 1.0
    assert r["mae"] == pytest.approx((18 * 0.5 + 18 * 0.49) / 36, rel=1e-6)
    assert math.isnan(r["sad"])


def test_equal_mass_ece_keeps_ties_together_and_ignores_row_order():
    """Regression (issue 15): a rank split cut tied confidences across bins, so the same pairs in two
    orders gave 0.20 and 0.30. Bins by quantile value put a tie in one bin whatever the order."""
    conf = np.array([0.2, 0.2, 0.2, 0.2, 0.9, 0.9])
    correct = np.array([0, 0, 1, 1, 1, 1], bool)
    rng = np.random.default_rng(0)
    values = set()
    for _ in range(10):
        order = rng.permutation(conf.size)
        values.add(round(C.ece(conf[order], correct[order], n_bins=3, binning="mass"), 12))
    assert len(values) == 1
    # edges at the quantiles 1/3 and 2/3 = 0.2 and 0.2 + (0.9 - 0.2) * (2/3 * 5 - 3) = 0.4333:
    # bin 0 is empty, the 0.2s share bin 1 (|0.2 - 0.5| = 0.3 over 4), the 0.9s bin 2 (|0.9 - 1|)
    assert C.ece(conf, correct, n_bins=3, binning="mass") == pytest.approx((4 * 0.3 + 2 * 0.1) / 6)
    ids = C.bin_ids(conf, 3, "mass")
    assert ids.tolist() == [1, 1, 1, 1, 2, 2]
    # without ties equal-mass bins still split into equal counts
    assert np.bincount(C.bin_ids(np.linspace(0, 1, 30), 3, "mass")).tolist() == [10, 10, 10]
