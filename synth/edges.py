"""Trimaps, alpha refinement and foreground colour estimation.

Conventions: an alpha matte is ``(H, W)`` float32/float64 in [0, 1] (or uint8 in [0, 255] where
stated); a trimap is ``(H, W)`` uint8 with 0 = definite background, 128 = unknown region,
255 = definite foreground.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

TRIMAP_BG, TRIMAP_UNKNOWN, TRIMAP_FG = 0, 128, 255
MATTING_METHODS = ("cf", "knn", "lkm", "rw")


def band_radius(shape: tuple[int, ...], px: int | None = None, fraction: float | None = None) -> int:
    """Unknown-band half width in pixels.

    Args:
        shape: image shape ``(H, W, ...)``.
        px: the half width in pixels, if given.
        fraction: otherwise the half width as a fraction of the image diagonal
            ``sqrt(H^2 + W^2)``, rounded to the nearest pixel (at least 1 when ``fraction > 0``).

    Raises:
        ValueError: neither or both given, or a negative value.
    """
    if (px is None) == (fraction is None):
        raise ValueError("give exactly one of band px or band fraction")
    if px is not None:
        if px < 0:
            raise ValueError(f"band px must be >= 0, got {px}")
        return int(px)
    if fraction < 0:
        raise ValueError(f"band fraction must be >= 0, got {fraction}")
    r = int(round(fraction * math.hypot(shape[0], shape[1])))
    return max(r, 1) if fraction > 0 else 0


def disk(radius: int) -> np.ndarray:
    """A disk structuring element of ``radius`` pixels: ``(2r+1, 2r+1)`` uint8 (OpenCV ellipse)."""
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def trimap_from_alpha(alpha: np.ndarray, radius: int) -> np.ndarray:
    """Trimap of an alpha matte with an unknown band of half width ``radius`` pixels.

    Definite foreground is the fully opaque region (alpha == 1, i.e. 255 in 8 bits) eroded by a disk
    of ``radius``; definite background is the fully transparent region (alpha == 0) eroded by the
    same disk (the complement of the dilated support); everything else, including every partially
    transparent pixel, is unknown. On a straight hard edge the unknown band is therefore exactly
    ``2 * radius`` pixels wide (``radius`` on each side), as in the trimap generation of Xu et al.,
    "Deep Image Matting", CVPR 2017.

    Args:
        alpha: ``(H, W)`` float in [0, 1], or uint8 in [0, 255], or bool.
        radius: half width in pixels (>= 0).

    Returns:
        ``(H, W)`` uint8 trimap with values in {0, 128, 255}.
    """
    a8 = _alpha_u8(alpha)
    tri = np.zeros(a8.shape, np.uint8)  # TRIMAP_BG
    # Farther than radius + 1 px from every non-zero pixel the trimap is definite background, and
    # inside that margin the crop's replicated edge holds the zeros that really lie beyond it: the
    # erosions run on the subject's box only, with exactly the whole frame's result.
    box = tight_bbox(a8, margin=radius + 1)
    if box is None:
        return tri
    y0, y1, x0, x1 = box
    a = a8[y0:y1, x0:x1]
    fg = (a == 255).astype(np.uint8)
    bg = (a == 0).astype(np.uint8)
    if radius > 0:
        k = disk(radius)
        fg = cv2.erode(fg, k, borderType=cv2.BORDER_REPLICATE)
        bg = cv2.erode(bg, k, borderType=cv2.BORDER_REPLICATE)
    sub = np.full(a.shape, TRIMAP_UNKNOWN, np.uint8)
    sub[fg > 0] = TRIMAP_FG
    sub[bg > 0] = TRIMAP_BG
    tri[y0:y1, x0:x1] = sub
    return tri


def _alpha_u8(alpha: np.ndarray) -> np.ndarray:
    if alpha.dtype == np.uint8:
        return alpha
    if alpha.dtype == bool:
        return alpha.astype(np.uint8) * 255
    return np.clip(np.rint(np.asarray(alpha, np.float64) * 255.0), 0, 255).astype(np.uint8)


def refine_alpha(image: np.ndarray, trimap: np.ndarray, method: str = "cf") -> np.ndarray:
    """Solve for a soft alpha matte inside the trimap's unknown region with pymatting.

    Definite regions keep alpha 0 / 1; only unknown pixels are estimated. Methods (pymatting):
    ``cf`` closed-form matting (Levin, Lischinski, Weiss, "A Closed-Form Solution to Natural Image
    Matting", TPAMI 2008), ``knn`` (Chen et al. 2013), ``lkm`` (He et al. 2010), ``rw`` (random walk,
    Grady et al. 2005).

    Args:
        image: ``(H, W, 3)`` float64 RGB in [0, 1] (uint8 is scaled).
        trimap: ``(H, W)`` uint8 in {0, 128, 255}.
        method: one of :data:`MATTING_METHODS`.

    Returns:
        ``(H, W)`` float64 alpha in [0, 1].

    Raises:
        ValueError: unknown method or shape mismatch.
    """
    import pymatting

    if method not in MATTING_METHODS:
        raise ValueError(f"unknown matting method {method!r}; use one of {MATTING_METHODS}")
    if image.shape[:2] != trimap.shape:
        raise ValueError(f"image {image.shape[:2]} and trimap {trimap.shape} differ in size")
    img = image.astype(np.float64) / 255.0 if image.dtype == np.uint8 else image.astype(np.float64)
    tri = trimap.astype(np.float64) / 255.0
    if not (trimap == TRIMAP_UNKNOWN).any():
        return (trimap == TRIMAP_FG).astype(np.float64)
    fn = {
        "cf": pymatting.estimate_alpha_cf,
        "knn": pymatting.estimate_alpha_knn,
        "lkm": pymatting.estimate_alpha_lkm,
        "rw": pymatting.estimate_alpha_rw,
    }[method]
    alpha = fn(img, tri)
    alpha = np.clip(alpha, 0.0, 1.0)
    alpha[trimap == TRIMAP_FG] = 1.0
    alpha[trimap == TRIMAP_BG] = 0.0
    return alpha


def estimate_foreground(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Foreground colours F with I = alpha F + (1 - alpha) B, so pasted edges carry no old-background halo.

    Uses pymatting's multi-level ``estimate_foreground_ml`` (Germer et al., "Fast Multi-Level
    Foreground Estimation", ICPR 2020).

    Args:
        image: ``(H, W, 3)`` float64 RGB in [0, 1] (uint8 is scaled).
        alpha: ``(H, W)`` float in [0, 1].

    Returns:
        ``(H, W, 3)`` float64 RGB in [0, 1].
    """
    import pymatting

    img = image.astype(np.float64) / 255.0 if image.dtype == np.uint8 else image.astype(np.float64)
    fg = pymatting.estimate_foreground_ml(img, alpha.astype(np.float64))
    return np.clip(fg, 0.0, 1.0)


def tight_bbox(alpha: np.ndarray, margin: int = 0) -> tuple[int, int, int, int] | None:
    """Bounding box ``(y0, y1, x0, x1)`` (half-open, pixels) of ``alpha > 0``, grown by ``margin``
    and clipped to the image; None when alpha is zero everywhere."""
    ys = np.flatnonzero(alpha.any(axis=1))
    xs = np.flatnonzero(alpha.any(axis=0))
    if ys.size == 0:
        return None
    h, w = alpha.shape[:2]
    return (
        max(int(ys[0]) - margin, 0),
        min(int(ys[-1]) + 1 + margin, h),
        max(int(xs[0]) - margin, 0),
        min(int(xs[-1]) + 1 + margin, w),
    )
