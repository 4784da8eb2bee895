"""Full-resolution detail: from a model's low-resolution probability map to the photo's size.

A release predicts at a fixed input size; hair and thin parts are lost if the map is only
interpolated back to the photo. The release manifest names how its map is upsampled
(:class:`UpsampleSpec`), and scoring and ``evalhub lift`` use it:

- ``bilinear``: ``cv2.resize`` with ``INTER_LINEAR`` (the baseline).
- ``guided``: guided upsampling with the colour photo as the guide, the *fast guided filter* of He
  and Sun ("Fast Guided Filter", arXiv:1505.00996; guided filter of He, Sun and Tang, ECCV 2010 /
  TPAMI 2013): the filter's per-window linear model ``q = a^T I + b`` is fitted at the map's
  resolution against the photo shrunk to it (area interpolation), its mean coefficients are
  upsampled bilinearly, and applied to the full-resolution photo, so edges come from the photo.
  Box sums are normalised by the number of pixels inside the frame, as He's reference MATLAB code
  (``boxfilter.m`` and ``N = boxfilter(ones)``) does.
- ``matting``: closed-form matting (Levin, Lischinski and Weiss, TPAMI 2008) by ``pymatting`` on a
  trimap from the bilinear map (definite where ``p <= lo`` or ``p >= hi``, unknown between, widened
  by a band); slower, the reference for thin structures.

OpenCV's contrib build has a guided filter (``cv2.ximgproc.guidedFilter``), but it ships its own
``cv2`` package that conflicts with the ``opencv-python-headless`` that PySODMetrics requires
(whichever is installed last wins), so liftlab computes the filter itself from box filters and
tests it against a per-window least-squares fit, the filter's definition.
"""

from __future__ import annotations

import contextlib
import io
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

class UpsampleSpec(BaseModel):
    """``upsample:`` of a release manifest.

    Attributes:
        method: ``bilinear`` (default), ``guided`` or ``matting``.
        radius: guided filter window radius in pixels *of the probability map* (window
            ``2r + 1``), default 1.
        eps: guided filter regularisation on intensities in [0, 1] (larger = smoother, closer to
            bilinear), default 1e-4.
        band: matting: the unknown region grows by this many photo pixels around ``lo < p < hi``.
        lo, hi: matting: definite background at ``p <= lo``, foreground at ``p >= hi``.
    """

    model_config = ConfigDict(extra="forbid")

    method: Literal["bilinear", "guided", "matting"] = "bilinear"
    radius: int = Field(1, ge=1, le=64)
    eps: float = Field(1e-4, gt=0, le=1)
    band: int = Field(4, ge=0, le=256)
    lo: float = Field(0.05, ge=0, lt=0.5)
    hi: float = Field(0.95, gt=0.5, le=1)

    def label(self) -> str:
        """A short name for reports: ``guided(r=2, eps=1e-04)``."""
        if self.method == "guided":
            return f"guided(r={self.radius}, eps={self.eps:.0e})"
        if self.method == "matting":
            return f"matting(band={self.band}, {self.lo}-{self.hi})"
        return "bilinear"


def _box_mean(x: np.ndarray, r: int, count: np.ndarray) -> np.ndarray:
    """Mean over the ``(2r+1)^2`` window clipped to the frame (He's ``boxfilter(x) / N``)."""
    s = cv2.boxFilter(x, -1, (2 * r + 1, 2 * r + 1), normalize=False, borderType=cv2.BORDER_CONSTANT)
    return s / (count[..., None] if s.ndim == 3 else count)


def guided_coefficients(p: np.ndarray, guide: np.ndarray, r: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean coefficients ``(mean_a, mean_b)`` of the colour guided filter of ``p`` guided by ``guide``.

    For every window ``w_k`` of radius ``r``: ``a_k = (Sigma_k + eps U)^-1 cov_k(I, p)``,
    ``b_k = mean_k(p) - a_k^T mean_k(I)``; each pixel then averages the ``a_k, b_k`` of the windows
    that contain it (He et al., TPAMI 2013, Algorithm 2). The 3x3 systems are solved in closed form
    (adjugate over determinant), vectorised.

    Args:
        p: ``(h, w)`` float32 input (the probability map).
        guide: ``(h, w, 3)`` float32 guide in [0, 1].
        r: window radius in pixels (>= 1).
        eps: regularisation (> 0).

    Returns:
        ``mean_a`` ``(h, w, 3)`` and ``mean_b`` ``(h, w)``, float64; the filtered map is
        ``sum_c mean_a[..., c] * guide[..., c] + mean_b``.

    Raises:
        ValueError: shapes disagree, ``r < 1`` or ``eps <= 0``.
    """
    if guide.shape[:2] != p.shape or guide.ndim != 3 or guide.shape[2] != 3:
        raise ValueError(f"guide must be (h, w, 3) for a map of shape {p.shape}, got {guide.shape}")
    if r < 1 or eps <= 0:
        raise ValueError(f"radius must be >= 1 and eps > 0, got {r}, {eps}")
    I = guide.astype(np.float64)
    p = p.astype(np.float64)
    count = cv2.boxFilter(np.ones(p.shape, np.float64), -1, (2 * r + 1, 2 * r + 1), normalize=False, borderType=cv2.BORDER_CONSTANT)
    mean_I = _box_mean(I, r, count)
    mean_p = _box_mean(p, r, count)
    cov_Ip = _box_mean(I * p[..., None], r, count) - mean_I * mean_p[..., None]
    # the symmetric 3x3 covariance of the guide, regularised
    pairs = {(0, 0): None, (0, 1): None, (0, 2): None, (1, 1): None, (1, 2): None, (2, 2): None}
    for i, j in pairs:
        pairs[(i, j)] = _box_mean(I[..., i] * I[..., j], r, count) - mean_I[..., i] * mean_I[..., j] + (eps if i == j else 0.0)
    s00, s01, s02, s11, s12, s22 = (pairs[k] for k in ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)))
    # adjugate of the symmetric matrix
    c00 = s11 * s22 - s12 * s12
    c01 = s02 * s12 - s01 * s22
    c02 = s01 * s12 - s02 * s11
    c11 = s00 * s22 - s02 * s02
    c12 = s01 * s02 - s00 * s12
    c22 = s00 * s11 - s01 * s01
    det = s00 * c00 + s01 * c01 + s02 * c02
    v0, v1, v2 = cov_Ip[..., 0], cov_Ip[..., 1], cov_Ip[..., 2]
    a = np.stack([c00 * v0 + c01 * v1 + c02 * v2, c01 * v0 + c11 * v1 + c12 * v2, c02 * v0 + c12 * v1 + c22 * v2], axis=-1) / det[..., None]
    b = mean_p - (a * mean_I).sum(axis=-1)
    return _box_mean(a, r, count), _box_mean(b, r, count)


def guided_filter(p: np.ndarray, guide: np.ndarray, r: int, eps: float) -> np.ndarray:
    """The colour guided filter of ``p`` at its own resolution: ``(h, w)`` float64 (see
    :func:`guided_coefficients`)."""
    mean_a, mean_b = guided_coefficients(p, guide, r, eps)
    return (mean_a * guide.astype(np.float64)).sum(axis=-1) + mean_b


def guided_upsample(prob: np.ndarray, photo: np.ndarray, r: int = 1, eps: float = 1e-4) -> np.ndarray:
    """Fast guided upsampling of a low-resolution map to the photo (He and Sun 2015).

    Args:
        prob: ``(h, w)`` float32 probability map in [0, 1].
        photo: ``(H, W, 3)`` uint8 RGB photo.
        r, eps: guided filter radius (pixels of ``prob``) and regularisation.

    Returns:
        ``(H, W)`` float32 in [0, 1].
    """
    h, w = prob.shape
    H, W = photo.shape[:2]
    guide_lo = cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    mean_a, mean_b = guided_coefficients(prob, guide_lo, r, eps)
    a_up = cv2.resize(mean_a.astype(np.float32), (W, H), interpolation=cv2.INTER_LINEAR)
    b_up = cv2.resize(mean_b.astype(np.float32), (W, H), interpolation=cv2.INTER_LINEAR)
    out = b_up
    for c in range(3):
        out += a_up[..., c] * (photo[..., c].astype(np.float32) / 255.0)
    return np.clip(out, 0, 1, out=out)


def matting_upsample(prob: np.ndarray, photo: np.ndarray, band: int = 4, lo: float = 0.05, hi: float = 0.95) -> np.ndarray:
    """Closed-form matting (``pymatting.estimate_alpha_cf``) on a trimap from the bilinear map.

    Args:
        prob: ``(h, w)`` float32 in [0, 1].
        photo: ``(H, W, 3)`` uint8 RGB.
        band: pixels the unknown region grows by.
        lo, hi: definite background / foreground thresholds.

    Returns:
        ``(H, W)`` float32 alpha in [0, 1]; the bilinear map where the trimap has no unknown pixel
        or no definite foreground or background.
    """
    from pymatting import estimate_alpha_cf

    H, W = photo.shape[:2]
    up = np.clip(cv2.resize(prob, (W, H), interpolation=cv2.INTER_LINEAR), 0, 1)
    unknown = ((up > lo) & (up < hi)).astype(np.uint8)
    if band:
        unknown = cv2.dilate(unknown, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1)))
    trimap = np.where(up >= 0.5, 1.0, 0.0)
    trimap[unknown > 0] = 0.5
    if not (trimap == 0.5).any() or not (trimap == 1).any() or not (trimap == 0).any():
        return up.astype(np.float32)
    with contextlib.redirect_stdout(io.StringIO()):  # pymatting prints preconditioner retries
        alpha = estimate_alpha_cf(photo.astype(np.float64) / 255.0, trimap)
    return np.clip(alpha, 0, 1).astype(np.float32)


def upsample(prob: np.ndarray, photo: np.ndarray | None, spec: UpsampleSpec | None = None) -> np.ndarray:
    """A probability map at the photo's size by the release's upsampler.

    Args:
        prob: ``(h, w)`` float32 in [0, 1].
        photo: ``(H, W, 3)`` uint8 RGB (needed by ``guided`` and ``matting``); with ``bilinear``
            a ``(H, W)`` shape-only stand-in is fine.
        spec: the manifest's ``upsample`` (default bilinear).

    Returns:
        ``(H, W)`` float32 in [0, 1]; ``prob`` itself (clipped) when the sizes already agree.
    """
    spec = spec or UpsampleSpec()
    H, W = photo.shape[:2]
    if prob.shape == (H, W):
        return np.clip(prob, 0, 1)
    if spec.method == "guided":
        return guided_upsample(prob, photo, spec.radius, spec.eps)
    if spec.method == "matting":
        return matting_upsample(prob, photo, spec.band, spec.lo, spec.hi)
    up = cv2.resize(prob, (W, H), interpolation=cv2.INTER_LINEAR)
    return np.clip(up, 0, 1, out=up)

