"""Per-image mask and matting metrics: pure, vectorised NumPy/OpenCV functions.

Conventions shared by every function here:

- a *mask* is ``(H, W)`` bool (True = subject); a *probability map* is ``(H, W)`` float in [0, 1];
  an *alpha matte* is ``(H, W)`` float in [0, 1]; a *trimap* is ``(H, W)`` uint8 with 0 = definite
  background, 255 = definite foreground and any value in between (128 by liftlab's convention)
  marking the unknown region;
- all lengths are in pixels; the image diagonal is ``sqrt(H^2 + W^2)``;
- every metric is computed per image, never pooled over the pixels of several images;
- shapes must agree, else ``ValueError`` names both shapes.

Empty masks (written conventions, tested):

- region metrics (IoU, Dice, precision, recall): prediction and truth both empty -> 1 for all;
  prediction empty, truth not -> IoU = Dice = recall = 0, precision = 1 (nothing wrong was shown);
  truth empty, prediction not -> IoU = Dice = precision = 0, recall = 1. These mirror the DAVIS
  boundary conventions so that region and boundary scores agree on degenerate images.
- boundary F1: exactly the DAVIS conventions (both boundaries empty -> 1; one empty -> 0).
- Boundary IoU: both boundary regions empty -> 1; one empty -> 0.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from evalhub import bitmorph
from evalhub.registry import names

DAVIS_BOUND_TH = 0.008
"""Boundary F1 tolerance as a fraction of the image diagonal (DAVIS 2017 default)."""
BOUNDARY_IOU_DILATION_RATIO = 0.02
"""Boundary IoU band width as a fraction of the image diagonal (Cheng et al. 2021 default)."""
CONNECTIVITY_STEP = 0.1
GRADIENT_SIGMA = 1.4


def _check_same(a: np.ndarray, b: np.ndarray, what: str = "prediction and truth") -> None:
    if a.shape != b.shape:
        raise ValueError(f"{what} differ in shape: {a.shape} vs {b.shape}")
    if a.ndim != 2:
        raise ValueError(f"{what} must be 2-D (H, W), got shape {a.shape}")


def diagonal(shape: tuple[int, ...]) -> float:
    """Image diagonal ``sqrt(H^2 + W^2)`` in pixels of a ``(H, W, ...)`` shape."""
    return math.hypot(shape[0], shape[1])


def euclidean_disk(radius: int) -> np.ndarray:
    """Disk structuring element ``{(y, x): y^2 + x^2 <= r^2}``: ``(2r+1, 2r+1)`` uint8.

    Identical to ``skimage.morphology.disk(radius)``, the element the DAVIS code dilates with.
    """
    r = int(radius)
    y, x = np.ogrid[-r : r + 1, -r : r + 1]
    return (x * x + y * y <= r * r).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Shared machinery. Masks are packed once, one bit a pixel (evalhub.bitmorph), and cut to the
# crop that holds both (nothing outside it can change a count); the region and boundary work runs
# there.


def _u8(mask: np.ndarray) -> np.ndarray:
    if mask.dtype == np.bool_:
        return np.ascontiguousarray(mask).view(np.uint8)
    return (mask > 0).view(np.uint8)


def _span(packed: np.ndarray, axis: int) -> tuple[int, int] | None:
    """First and one-past-last row (``axis=1``) or word (``axis=0``) of a packed mask holding a set
    bit (None if none)."""
    at = np.flatnonzero(np.bitwise_or.reduce(packed, axis=axis))
    return (int(at[0]), int(at[-1]) + 1) if at.size else None


class _Pair:
    """Prediction and truth of one image, each packed once (:mod:`evalhub.bitmorph`), with their
    pixel counts and the crop every region and boundary metric runs on.

    The crop holds both masks' rows plus one, and their words plus one on each side, so every
    boundary pixel of either lies inside and the crop's edge is background or the frame's edge,
    which is what the morphology assumes. ``p`` and ``g`` are the crop's packed masks (None when
    both masks are empty), ``width`` its width in pixels, ``truth`` the truth's rows and words in
    crop coordinates (None when the truth is empty), ``truth_rows`` its rows in the frame."""

    __slots__ = ("n_p", "n_g", "p", "g", "width", "truth", "truth_rows")

    def __init__(self, pred: np.ndarray, gt: np.ndarray) -> None:
        h, w = gt.shape
        full_p, full_g = bitmorph.pack(_u8(pred)), bitmorph.pack(_u8(gt))
        self.n_p, self.n_g = bitmorph.count(full_p), bitmorph.count(full_g)
        either = full_p | full_g
        rows = _span(either, axis=1)
        self.p = self.g = self.truth = None
        self.width = 0
        self.truth_rows = (0, h)
        if rows is None:
            return
        words = _span(either, axis=0)
        y0, y1 = max(0, rows[0] - 1), min(h, rows[1] + 1)
        w0, w1 = max(0, words[0] - 1), min(full_p.shape[1], words[1] + 1)
        self.p, self.g = full_p[y0:y1, w0:w1], full_g[y0:y1, w0:w1]
        self.width = min(w, 64 * w1) - 64 * w0
        if self.n_g:
            tr, tw = _span(self.g, axis=1), _span(self.g, axis=0)
            self.truth = (tr[0], tr[1], tw[0], tw[1])
            self.truth_rows = (y0 + tr[0], y0 + tr[1])

    def tp(self) -> int:
        """Pixels in both masks."""
        return bitmorph.count(self.p & self.g) if self.p is not None else 0

    def near_truth(self, *packed: np.ndarray, margin: int) -> list[np.ndarray]:
        """``packed`` (crop arrays) cut to the rows and words within ``margin + 1`` pixels of the
        truth's rows and words (where its boundary lies); everything when the truth is empty."""
        if self.truth is None:
            return list(packed)
        y0, y1, w0, w1 = self.truth
        k, kw = margin + 1, -(-(margin + 1) // 64)
        rows, words = slice(max(0, y0 - k), y1 + k), slice(max(0, w0 - kw), w1 + kw)
        return [a[rows, words] for a in packed]


# --------------------------------------------------------------------------------------------
# Region metrics


def _region(pk: _Pair) -> dict[str, float]:
    if pk.n_p == 0 and pk.n_g == 0:
        return {"iou": 1.0, "dice": 1.0, "precision": 1.0, "recall": 1.0}
    tp = pk.tp()
    fp, fn = pk.n_p - tp, pk.n_g - tp
    return {
        "iou": tp / (tp + fp + fn),
        "dice": 2 * tp / (2 * tp + fp + fn),
        "precision": tp / pk.n_p if pk.n_p else 1.0,
        "recall": tp / pk.n_g if pk.n_g else 1.0,
    }


def confusion(pred: np.ndarray, gt: np.ndarray) -> tuple[int, int, int, int]:
    """Pixel counts ``(tp, fp, fn, tn)`` of two ``(H, W)`` bool masks of one image."""
    _check_same(pred, gt)
    pk = _Pair(pred, gt)
    tp = pk.tp()
    return tp, pk.n_p - tp, pk.n_g - tp, pred.size - pk.n_p - pk.n_g + tp


def region_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """IoU (Jaccard), Dice (F1), precision and recall of one image's masks.

    ``IoU = TP / (TP + FP + FN)``, ``Dice = 2TP / (2TP + FP + FN)``, ``precision = TP / (TP + FP)``,
    ``recall = TP / (TP + FN)``, with the empty-mask conventions of this module's docstring.

    Args:
        pred, gt: ``(H, W)`` bool masks.

    Returns:
        ``{"iou", "dice", "precision", "recall"}``, floats in [0, 1].

    Raises:
        ValueError: shapes differ.
    """
    _check_same(pred, gt)
    return _region(_Pair(pred, gt))


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Intersection over union of two ``(H, W)`` bool masks (see :func:`region_metrics`)."""
    return region_metrics(pred, gt)["iou"]


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice coefficient ``2|P∩G| / (|P| + |G|)`` of two ``(H, W)`` bool masks."""
    return region_metrics(pred, gt)["dice"]


def _mae(prob: np.ndarray, gt: np.ndarray, n_g: int, rows: tuple[int, int] | None = None) -> float:
    # sum |p - g| = sum(p) + |G| - 2 sum_{g=1} p, as |p - g| is p outside G and 1 - p inside it for
    # p in [0, 1]; both sums accumulate in float64 (the masked one is an L1 norm, p >= 0)
    p = prob.astype(np.float32, copy=False)
    total = cv2.sumElems(p)[0]
    if n_g:
        y0, y1 = rows or (0, gt.shape[0])  # the truth's rows: nothing of it lies outside
        total += n_g - 2.0 * cv2.norm(p[y0:y1], cv2.NORM_L1, mask=_u8(gt)[y0:y1])
    return float(max(total, 0.0) / p.size)


def mae(prob: np.ndarray, gt: np.ndarray) -> float:
    """Mean absolute error between a soft prediction and the binary truth.

    ``MAE = mean_{pixels} |p - g|`` as in salient object detection benchmarks (Perazzi et al.,
    "Saliency filters", CVPR 2012; Borji et al., TIP 2015). Accumulated in float64, as
    ``sum(p) + |G| - 2 sum_{G} p``, which equals ``sum |p - g|`` for ``p`` in [0, 1] (the contract
    of every probability map liftlab reads; :func:`evalhub.releases.read_probability` enforces it).

    Args:
        prob: ``(H, W)`` float in [0, 1].
        gt: ``(H, W)`` bool.

    Returns:
        A float in [0, 1].

    Raises:
        ValueError: shapes differ.
    """
    _check_same(prob, gt)
    gt8 = _u8(gt)
    return _mae(prob, gt8, cv2.countNonZero(gt8))


# --------------------------------------------------------------------------------------------
# Boundary F1 (DAVIS 2017)


def seg2bmap(mask: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundary map of a mask, as ``seg2bmap`` of the DAVIS benchmark.

    A pixel is on the boundary when it differs from its east, south or south-east neighbour
    (on the last row only the east neighbour counts, on the last column only the south one, and the
    bottom-right pixel never). The image border is not a boundary. Source: Martin et al., BSDS
    ``seg2bmap``; DAVIS 2017 ``davis2017/metrics.py`` (Pont-Tuset et al., arXiv:1704.00675).

    Args:
        mask: ``(H, W)`` bool.

    Returns:
        ``(H, W)`` bool boundary map.
    """
    return bitmorph.unpack(bitmorph.seg2bmap(bitmorph.pack(_u8(mask)), mask.shape[1]), mask.shape[1]).view(bool)


def boundary_tolerance(shape: tuple[int, ...], bound_th: float = DAVIS_BOUND_TH) -> int:
    """DAVIS tolerance in pixels: ``bound_th`` itself when >= 1, else ``ceil(bound_th * diagonal)``."""
    if bound_th <= 0:
        raise ValueError(f"boundary tolerance must be > 0, got {bound_th}")
    return int(bound_th) if bound_th >= 1 else int(math.ceil(bound_th * diagonal(shape)))


def _boundary_f1(pk: _Pair, r: int) -> dict[str, float]:
    n_fg = n_gt = 0
    if pk.p is not None:
        fg_b, gt_b = bitmorph.seg2bmap(pk.p, pk.width), bitmorph.seg2bmap(pk.g, pk.width)
        n_fg, n_gt = bitmorph.count(fg_b), bitmorph.count(gt_b)
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        # a hit needs a boundary pixel of each within r, so both dilations run only within r of
        # the true boundary; the totals n_fg and n_gt above cover the whole crop
        fg_near, gt_near = pk.near_truth(fg_b, gt_b, margin=r)
        grown_gt, grown_fg = bitmorph.dilate_disk_many([gt_near, fg_near], r)
        precision = bitmorph.count(fg_near & grown_gt) / n_fg
        recall = bitmorph.count(gt_near & grown_fg) / n_gt
    f = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return {"boundary_precision": float(precision), "boundary_recall": float(recall), "boundary_f1": float(f)}


def boundary_f1(pred: np.ndarray, gt: np.ndarray, bound_th: float = DAVIS_BOUND_TH) -> dict[str, float]:
    """Boundary precision, recall and F-measure, the DAVIS 2017 contour accuracy ``F``.

    Both masks are reduced to one-pixel boundaries with :func:`seg2bmap`; each boundary is dilated
    with a Euclidean disk of radius ``r`` = :func:`boundary_tolerance`; precision is the share of
    predicted boundary pixels within the dilated true boundary, recall the share of true boundary
    pixels within the dilated predicted one, ``F = 2PR / (P + R)`` (0 when ``P + R = 0``).
    Degenerate cases as DAVIS: no predicted boundary and a true one -> P = 1, R = 0; a predicted
    boundary and no true one -> P = 0, R = 1; neither -> P = R = 1.

    Runs on bit-packed masks (:mod:`evalhub.bitmorph`, the disk as rows of runs), equal to the
    disk dilation of the reference by construction and tested against it on real masks.

    Source: Perazzi et al., CVPR 2016 and Pont-Tuset et al., arXiv:1704.00675, reference code
    ``davis2017-evaluation/davis2017/metrics.py::f_measure``.

    Args:
        pred, gt: ``(H, W)`` bool masks.
        bound_th: tolerance: a fraction of the diagonal (< 1, default 0.008) or pixels (>= 1).

    Returns:
        ``{"boundary_precision", "boundary_recall", "boundary_f1"}``, floats in [0, 1].

    Raises:
        ValueError: shapes differ, or ``bound_th <= 0``.
    """
    _check_same(pred, gt)
    r = boundary_tolerance(pred.shape, bound_th)
    return _boundary_f1(_Pair(pred, gt), r)


# --------------------------------------------------------------------------------------------
# Boundary IoU (Cheng et al. 2021)


def boundary_band_width(shape: tuple[int, ...], dilation_ratio: float = BOUNDARY_IOU_DILATION_RATIO) -> int:
    """Boundary IoU band width ``d = max(1, round(dilation_ratio * diagonal))`` in pixels."""
    return max(1, int(round(dilation_ratio * diagonal(shape))))


def mask_to_boundary(mask: np.ndarray, d: int) -> np.ndarray:
    """Inner boundary band of a mask: the mask minus its erosion by a 3x3 square repeated ``d`` times.

    The mask is zero-padded by one pixel first, so the image border counts as boundary. ``d``
    erosions by a 3x3 square equal one erosion by a ``(2d+1) x (2d+1)`` square with background
    outside the frame, which is what runs (:func:`evalhub.bitmorph.erode_square`).
    Source: Cheng et al., "Boundary IoU", CVPR 2021, ``boundary_iou/utils/boundary_utils.py``.

    Args:
        mask: ``(H, W)`` bool.
        d: band width in pixels (>= 1).

    Returns:
        ``(H, W)`` bool band.
    """
    m = bitmorph.pack(_u8(mask))
    return bitmorph.unpack(m & ~bitmorph.erode_square(m, d), mask.shape[1]).view(bool)


def _boundary_iou(pk: _Pair, d: int) -> float:
    if pk.p is None:
        return 1.0
    core_p, core_g = bitmorph.erode_square_many([pk.p, pk.g], d)
    bp, bg = pk.p & ~core_p, pk.g & ~core_g
    inter = bitmorph.count(bp & bg)
    union = bitmorph.count(bp) + bitmorph.count(bg) - inter
    return 1.0 if union == 0 else inter / union


def boundary_iou(pred: np.ndarray, gt: np.ndarray, dilation_ratio: float = BOUNDARY_IOU_DILATION_RATIO) -> float:
    """Boundary IoU: the IoU of the two masks' inner boundary bands of width ``d``.

    ``|B(G) ∩ B(P)| / |B(G) ∪ B(P)|`` with ``B`` = :func:`mask_to_boundary` and
    ``d`` = :func:`boundary_band_width`. Both bands empty -> 1.

    Source: Cheng, Girshick, Dollár, Berg, Kirillov, "Boundary IoU: Improving Object-Centric Image
    Segmentation Evaluation", CVPR 2021.

    Args:
        pred, gt: ``(H, W)`` bool masks.
        dilation_ratio: band width as a fraction of the image diagonal (default 0.02).

    Returns:
        A float in [0, 1].

    Raises:
        ValueError: shapes differ.
    """
    _check_same(pred, gt)
    return _boundary_iou(_Pair(pred, gt), boundary_band_width(pred.shape, dilation_ratio))


# --------------------------------------------------------------------------------------------
# Matting errors over the unknown region (alphamatting.com; Rhemann et al., CVPR 2009)


def _unknown(trimap: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    _check_same(alpha, trimap, "alpha and trimap")
    return (trimap > 0) & (trimap < 255)


def sad(pred_alpha: np.ndarray, gt_alpha: np.ndarray, trimap: np.ndarray) -> float:
    """Sum of absolute differences over the unknown region, in thousands (the alphamatting.com unit).

    ``SAD = sum_{i in U} |a_i - g_i| / 1000`` with alphas in [0, 1].
    """
    _check_same(pred_alpha, gt_alpha)
    u = _unknown(trimap, gt_alpha)
    return float(np.abs(pred_alpha[u].astype(np.float64) - gt_alpha[u]).sum() / 1000.0)


def mse(pred_alpha: np.ndarray, gt_alpha: np.ndarray, trimap: np.ndarray) -> float:
    """Mean squared error over the unknown region, alphas in [0, 1] (0 when the region is empty)."""
    _check_same(pred_alpha, gt_alpha)
    u = _unknown(trimap, gt_alpha)
    if not u.any():
        return 0.0
    return float(np.mean((pred_alpha[u].astype(np.float64) - gt_alpha[u]) ** 2))


def gauss_gradient_magnitude(alpha: np.ndarray, sigma: float = GRADIENT_SIGMA) -> np.ndarray:
    """Gradient magnitude by first-order Gaussian derivative filters, as the alphamatting.com code.

    The ``(2h+1)^2`` kernel ``hx[i, j] = G(i) * G'(j)`` with ``h = ceil(sigma * sqrt(-2 ln(sqrt(2 pi)
    sigma eps)))``, ``eps = 0.01``, normalised to unit L2 norm; ``hy = hx^T``; replicate borders
    (``gaussgradient.m`` of the Deep Image Matting / alphamatting.com evaluation code). The kernel is
    separable and runs as two 1-D passes.

    Args:
        alpha: ``(H, W)`` float in [0, 1].

    Returns:
        ``(H, W)`` float64 magnitude ``sqrt(dx^2 + dy^2)``.
    """
    eps = 1e-2
    half = int(math.ceil(sigma * math.sqrt(-2.0 * math.log(math.sqrt(2 * math.pi) * sigma * eps))))
    u = np.arange(-half, half + 1, dtype=np.float64)
    g = np.exp(-(u**2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))
    dg = -u * g / sigma**2
    norm = math.sqrt(float((g**2).sum() * (dg**2).sum()))
    a = alpha.astype(np.float64, copy=False)
    # hx varies with the column through G' and with the row through G; the sign of a derivative
    # (convolution vs correlation) does not change the magnitude.
    dx = cv2.sepFilter2D(a, cv2.CV_64F, dg / norm, g, borderType=cv2.BORDER_REPLICATE)
    dy = cv2.sepFilter2D(a, cv2.CV_64F, g, dg / norm, borderType=cv2.BORDER_REPLICATE)
    return np.sqrt(dx * dx + dy * dy)


GRADIENT_NORMALIZATIONS = ("mat2gray", "none")


def mat2gray(a: np.ndarray) -> np.ndarray:
    """MATLAB's ``mat2gray``: ``(a - min) / (max - min)`` over the whole image, float64; a constant
    image gives zeros (MATLAB returns the input clipped to [0, 1] there, which for a constant alpha
    in (0, 1) has no gradient either way)."""
    a = a.astype(np.float64, copy=False)
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def gradient_error(pred_alpha: np.ndarray, gt_alpha: np.ndarray, trimap: np.ndarray, sigma: float = GRADIENT_SIGMA,
                   normalize: str = "mat2gray") -> float:
    """Gradient error over the unknown region, in thousands.

    ``sum_{i in U} (|∇a_i| - |∇g_i|)^2 / 1000`` with :func:`gauss_gradient_magnitude` (sigma 1.4).

    The published definitions differ in one step, so both are offered by name:

    * ``normalize="mat2gray"`` (the default): both mattes first go through :func:`mat2gray`, as in
      ``compute_gradient_loss.m`` of the Deep Image Matting evaluation code (Xu et al., CVPR 2017),
      which the alphamatting.com benchmark and DIM-style tables report. A matte ``0.8 g + 0.1``
      scores 0 against ``g``.
    * ``normalize="none"``: the mattes are used as they are, as the Python ports of that code
      (e.g. GCA-Matting's ``compute_gradient_loss``) do.

    Source: Rhemann et al., "A Perceptually Motivated Online Benchmark for Image Matting", CVPR 2009.

    Raises:
        ValueError: shapes differ, or an unknown ``normalize``.
    """
    _check_same(pred_alpha, gt_alpha)
    if normalize not in GRADIENT_NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {GRADIENT_NORMALIZATIONS}, got {normalize!r}")
    u = _unknown(trimap, gt_alpha)
    if normalize == "mat2gray":
        pred_alpha, gt_alpha = mat2gray(pred_alpha), mat2gray(gt_alpha)
    diff = gauss_gradient_magnitude(pred_alpha, sigma) - gauss_gradient_magnitude(gt_alpha, sigma)
    return float((diff[u] ** 2).sum() / 1000.0)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=4)
    if n <= 1:
        return np.zeros(mask.shape, dtype=bool)
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == biggest


def alpha_float64(alpha: np.ndarray) -> np.ndarray:
    """An alpha matte as float64 in [0, 1], whatever its dtype: uint8 as ``k / 255``; a float matte
    whose every value lies within 1e-6 of the 8-bit grid (a float32 copy of an 8-bit PNG) snapped to
    ``k / 255`` exactly as the uint8 one; any other float matte cast as it is."""
    if alpha.dtype == np.uint8:
        return alpha.astype(np.float64) / 255.0
    a = alpha.astype(np.float64)
    k = np.round(a * 255.0)
    return k / 255.0 if np.abs(a * 255.0 - k).max(initial=0.0) <= 255e-6 else a


def connectivity_error(pred_alpha: np.ndarray, gt_alpha: np.ndarray, trimap: np.ndarray, step: float = CONNECTIVITY_STEP) -> float:
    """Connectivity error over the unknown region, in thousands.

    For thresholds ``t = step, 2 step, ..., 1`` the source region ``Omega_t`` is the largest
    4-connected component of ``{a >= t} ∩ {g >= t}``; a pixel's level ``l_i`` is the last threshold
    at which it still belonged to it (1 if it always did). With ``d_i = a_i - l_i`` and
    ``phi(a_i) = 1 - d_i [d_i >= 0.15]``, the error is ``sum_{i in U} |phi(a_i) - phi(g_i)| / 1000``
    (p = 1). Source: Rhemann et al., CVPR 2009; ``compute_connectivity_error.m`` of the
    alphamatting.com / Deep Image Matting evaluation code.

    The thresholds are ``np.arange(0, 1 + step, step)`` in float64, as the reference's Python port
    compares them, and the mattes are compared in float64 via :func:`alpha_float64`, so an 8-bit
    matte scores the same whether it arrives as uint8, float32 or float64 (float32 ``153/255`` lies
    above the threshold ``0.6000000000000001`` where float64 ``153/255`` lies below it).
    """
    _check_same(pred_alpha, gt_alpha)
    u = _unknown(trimap, gt_alpha)
    a, g = alpha_float64(pred_alpha), alpha_float64(gt_alpha)
    steps = np.arange(0.0, 1.0 + step / 2, step)
    level = np.full(a.shape, -1.0)
    for k in range(1, len(steps)):
        omega = _largest_component((a >= steps[k]) & (g >= steps[k]))
        level[(level == -1) & ~omega] = steps[k - 1]
    level[level == -1] = 1.0
    da, dg_ = a - level, g - level
    phi_a = 1.0 - da * (da >= 0.15)
    phi_g = 1.0 - dg_ * (dg_ >= 0.15)
    return float(np.abs(phi_a - phi_g)[u].sum() / 1000.0)


def matting_errors(pred_alpha: np.ndarray, gt_alpha: np.ndarray, trimap: np.ndarray) -> dict[str, float]:
    """SAD, MSE, gradient and connectivity errors over the trimap's unknown region (see each)."""
    return {
        "sad": sad(pred_alpha, gt_alpha, trimap),
        "mse": mse(pred_alpha, gt_alpha, trimap),
        "grad": gradient_error(pred_alpha, gt_alpha, trimap),
        "conn": connectivity_error(pred_alpha, gt_alpha, trimap),
    }


# --------------------------------------------------------------------------------------------
# The per-image set

MATTING_METRICS = names(needs="alpha")
"""The matting errors (NaN where the image has no alpha matte and trimap); see :mod:`evalhub.registry`."""


def image_metrics(
    prob: np.ndarray,
    gt: np.ndarray,
    gt_alpha: np.ndarray | None = None,
    trimap: np.ndarray | None = None,
    bound_th: float = DAVIS_BOUND_TH,
    dilation_ratio: float = BOUNDARY_IOU_DILATION_RATIO,
) -> dict[str, Any]:
    """Every per-image metric of one prediction.

    The prediction is binarised at ``prob >= 0.5``; MAE and the matting errors use ``prob`` itself.

    Args:
        prob: ``(H, W)`` float32 in [0, 1], the soft prediction at ground-truth size.
        gt: ``(H, W)`` bool ground-truth mask.
        gt_alpha: optional ``(H, W)`` float alpha matte in [0, 1]; with ``trimap``, adds matting errors.
        trimap: optional ``(H, W)`` uint8 trimap (values strictly between 0 and 255 = unknown).
        bound_th: boundary F1 tolerance (fraction of the diagonal, or pixels when >= 1).
        dilation_ratio: Boundary IoU band as a fraction of the diagonal.

    Returns:
        ``iou, dice, precision, recall, boundary_f1, boundary_precision, boundary_recall,
        boundary_iou, mae`` and, with alpha and trimap, ``sad, mse, grad, conn`` (NaN otherwise).
    """
    _check_same(prob, gt)
    pk = _Pair(prob >= 0.5, gt)  # packed once, shared by the region and boundary metrics
    mae_value = _mae(prob, gt, pk.n_g, pk.truth_rows)  # while ``prob`` is still in the cache
    out: dict[str, Any] = {}
    out.update(_region(pk))
    out.update(_boundary_f1(pk, boundary_tolerance(gt.shape, bound_th)))
    out["boundary_iou"] = _boundary_iou(pk, boundary_band_width(gt.shape, dilation_ratio))
    out["mae"] = mae_value
    if gt_alpha is not None and trimap is not None:
        out.update(matting_errors(prob, gt_alpha, trimap))
    else:
        out.update({k: float("nan") for k in MATTING_METRICS})
    return out
