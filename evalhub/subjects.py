"""Several subjects per photo: split masks into subjects, match them, and score Panoptic Quality.

The subject-lifting design binarises the predicted mask, finds its connected regions, cleans them
morphologically and lifts one cut-out per subject. This module does exactly that to the prediction
*and* the ground truth (the same :class:`SubjectSpec` for both, so neither side is favoured) and
scores the result as a one-class panoptic segmentation (Kirillov, He, Girshick, Rother, Dollár,
"Panoptic Segmentation", CVPR 2019):

- a predicted and a true subject *match* when their IoU > 0.5; with that threshold a subject has
  at most one match, so the matching is unique without any assignment step (the paper's Theorem 1);
- ``SQ = sum_{TP} IoU / |TP|`` (segmentation quality), ``RQ = |TP| / (|TP| + |FP|/2 + |FN|/2)``
  (recognition quality, an F1 over subjects), ``PQ = SQ x RQ``;
- per image; over a dataset the counts and IoU sums are pooled first (the paper's definition),
  which :func:`pooled_quality` does.

Conventions (stated, tested): an image with no subject on either side has PQ = SQ = RQ = 1 (nothing
to find, nothing false), as the region metrics treat two empty masks; with subjects but no match,
RQ = PQ = 0 and SQ is undefined (NaN, left out of means).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from evalhub.metrics import euclidean_disk

MATCH_IOU = 0.5


@functools.lru_cache(maxsize=8)
def _disk(r: int) -> np.ndarray:
    d = euclidean_disk(r)
    d.flags.writeable = False
    return d


@dataclass(frozen=True)
class SubjectSpec:
    """How a binary mask becomes subjects.

    Attributes:
        min_area: smallest subject, as a fraction of the image area (0 to 1); smaller components
            are dropped (specks, stray pixels).
        opening: radius in pixels of the Euclidean disk of a morphological opening applied before
            the components are found (removes specks and cuts one-to-two-pixel bridges); 0 = none.
        connectivity: 4 or 8 (pixels touching at a corner belong to one subject with 8).
    """

    min_area: float = 0.005
    opening: int = 1
    connectivity: int = 8

    def __post_init__(self) -> None:
        if not 0 <= self.min_area <= 1:
            raise ValueError(f"min_area must lie in [0, 1], got {self.min_area}")
        if self.opening < 0:
            raise ValueError(f"opening must be >= 0 pixels, got {self.opening}")
        if self.connectivity not in (4, 8):
            raise ValueError(f"connectivity must be 4 or 8, got {self.connectivity}")


@dataclass(frozen=True)
class Subjects:
    """The subjects of one mask.

    Attributes:
        labels: ``(H, W)`` int32, 0 = background, ``1..n`` = subject number (largest first).
        areas: ``(n,)`` int64 pixel counts.
        boxes: ``(n, 4)`` int64 ``(x, y, width, height)`` in pixels.
    """

    labels: np.ndarray
    areas: np.ndarray
    boxes: np.ndarray

    @property
    def n(self) -> int:
        return len(self.areas)


def split_subjects(mask: np.ndarray, spec: SubjectSpec = SubjectSpec()) -> Subjects:
    """Connected regions of a cleaned binary mask, one per subject, largest first.

    Args:
        mask: ``(H, W)`` bool.
        spec: cleaning and minimum area.

    Returns:
        :class:`Subjects`.

    Raises:
        ValueError: not a 2-D mask.
    """
    if mask.ndim != 2:
        raise ValueError(f"a mask must be 2-D (H, W), got shape {mask.shape}")
    m = np.ascontiguousarray(mask).view(np.uint8) if mask.dtype == np.bool_ else (mask > 0).view(np.uint8)
    labels = np.zeros(mask.shape, np.int32)
    x, y, w, h = cv2.boundingRect(m)
    if w == 0:
        return Subjects(labels, np.zeros(0, np.int64), np.zeros((0, 4), np.int64))
    # the work runs on the mask's box grown by the opening's radius (zero outside it is exact)
    k = spec.opening
    y0, y1, x0, x1 = max(0, y - k), min(mask.shape[0], y + h + k), max(0, x - k), min(mask.shape[1], x + w + k)
    crop = m[y0:y1, x0:x1]
    if k:
        crop = cv2.morphologyEx(crop, cv2.MORPH_OPEN, _disk(k), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    n, part, stats, _ = cv2.connectedComponentsWithStats(crop, connectivity=spec.connectivity, ltype=cv2.CV_32S)
    areas = stats[1:, cv2.CC_STAT_AREA].astype(np.int64)
    min_px = math.ceil(spec.min_area * mask.size)
    keep = np.flatnonzero(areas >= max(1, min_px))
    keep = keep[np.argsort(-areas[keep], kind="stable")]
    boxes = stats[1:, :4][keep].astype(np.int64) + np.array([x0, y0, 0, 0], np.int64)
    if len(keep) == n - 1 and (np.diff(keep) > 0).all():  # already kept and ordered: no relabelling
        labels[y0:y1, x0:x1] = part
    else:
        relabel = np.zeros(n, np.int32)
        relabel[keep + 1] = np.arange(1, len(keep) + 1, dtype=np.int32)
        labels[y0:y1, x0:x1] = relabel[part]
    return Subjects(labels, areas[keep], boxes)


@dataclass(frozen=True)
class SubjectMatch:
    """Matched subjects of one image.

    Attributes:
        ious: ``(tp,)`` IoU of each matched pair (> 0.5).
        pairs: ``(tp, 2)`` (predicted subject, true subject) numbers, 1-based.
        n_pred, n_true: subjects on each side.
    """

    ious: np.ndarray
    pairs: np.ndarray
    n_pred: int
    n_true: int

    @property
    def tp(self) -> int:
        return len(self.ious)

    @property
    def fp(self) -> int:
        return self.n_pred - self.tp

    @property
    def fn(self) -> int:
        return self.n_true - self.tp


def match_subjects(pred: Subjects, true: Subjects) -> SubjectMatch:
    """Pairs of predicted and true subjects with IoU > 0.5 (unique by construction, see above).

    The intersections of every pair come from one joint histogram of the two label images.

    Raises:
        ValueError: the label images differ in shape.
    """
    if pred.labels.shape != true.labels.shape:
        raise ValueError(f"prediction and truth differ in shape: {pred.labels.shape} vs {true.labels.shape}")
    kp, kt = pred.n + 1, true.n + 1
    if pred.n == 0 or true.n == 0:
        return SubjectMatch(np.zeros(0), np.zeros((0, 2), np.int64), pred.n, true.n)
    pair = pred.labels.astype(np.int64).ravel()
    pair *= kt
    pair += true.labels.ravel()
    joint = np.bincount(pair, minlength=kp * kt).reshape(kp, kt)
    inter = joint[1:, 1:].astype(np.float64)
    union = pred.areas[:, None] + true.areas[None, :] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    ip, it = np.nonzero(iou > MATCH_IOU)
    return SubjectMatch(iou[ip, it], np.stack([ip + 1, it + 1], axis=1), pred.n, true.n)


def panoptic_quality(tp: int, fp: int, fn: int, iou_sum: float) -> tuple[float, float, float]:
    """``(PQ, SQ, RQ)`` from match counts and the sum of matched IoUs (conventions above)."""
    if tp + fp + fn == 0:
        return 1.0, 1.0, 1.0
    rq = tp / (tp + 0.5 * fp + 0.5 * fn)
    if tp == 0:
        return 0.0, float("nan"), 0.0
    sq = iou_sum / tp
    return sq * rq, sq, rq


def subject_metrics(pred: np.ndarray, gt: np.ndarray, spec: SubjectSpec = SubjectSpec()) -> dict[str, float]:
    """Panoptic Quality and its factors, per-subject recall and false subjects of one image.

    Args:
        pred, gt: ``(H, W)`` bool masks (the prediction binarised at 0.5).
        spec: how masks become subjects (the same for both).

    Returns:
        ``pq``, ``sq``, ``rq`` (see the module docstring), ``subject_recall`` (matched true
        subjects / true subjects; 1 when there are none), ``false_subjects`` (predicted subjects
        without a match, a count), and the pooling inputs ``subjects_true``, ``subjects_pred``,
        ``subjects_matched``, ``subjects_iou_sum``.
    """
    m = match_subjects(split_subjects(pred, spec), split_subjects(gt, spec))
    iou_sum = float(m.ious.sum())
    pq, sq, rq = panoptic_quality(m.tp, m.fp, m.fn, iou_sum)
    return {
        "pq": pq, "sq": sq, "rq": rq,
        "subject_recall": m.tp / m.n_true if m.n_true else 1.0,
        "false_subjects": float(m.fp),
        "subjects_true": float(m.n_true), "subjects_pred": float(m.n_pred),
        "subjects_matched": float(m.tp), "subjects_iou_sum": iou_sum,
    }


def pooled_quality(matched: np.ndarray, n_pred: np.ndarray, n_true: np.ndarray, iou_sum: np.ndarray) -> dict[str, float]:
    """Dataset-level ``PQ``, ``SQ``, ``RQ`` as Kirillov et al. define them: counts and IoU sums
    pooled over the images first (the per-image mean of PQ weights every image alike instead).

    Args:
        matched, n_pred, n_true, iou_sum: per-image ``subjects_matched``, ``subjects_pred``,
            ``subjects_true`` and ``subjects_iou_sum`` (NaN rows are left out).
    """
    arrays = [np.asarray(a, float) for a in (matched, n_pred, n_true, iou_sum)]
    ok = np.all([np.isfinite(a) for a in arrays], axis=0)
    tp, n_p, n_t, s = (float(a[ok].sum()) for a in arrays)
    pq, sq, rq = panoptic_quality(int(tp), int(n_p - tp), int(n_t - tp), s)
    return {"pq": pq, "sq": sq, "rq": rq, "tp": int(tp), "fp": int(n_p - tp), "fn": int(n_t - tp)}
