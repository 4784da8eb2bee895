"""Harmonization: make a pasted subject look as if it was photographed in the background's scene.

Colour arrays are ``(H, W, 3)`` float32 RGB in [0, 1]; alphas ``(H, W)`` float32 in [0, 1]; subject
statistics are alpha-weighted. CIELAB values follow OpenCV's float conversion (L in [0, 100],
a and b roughly in [-127, 127]).
"""

from __future__ import annotations

import cv2
import numpy as np

METHODS = ("none", "reinhard", "histogram", "poisson")

# Standard deviation of BT.601 luma for unit i.i.d. noise in each RGB channel.
LUMA_NOISE_GAIN = float(np.sqrt(0.299**2 + 0.587**2 + 0.114**2))

# Immerkaer's noise-estimation kernel (difference of two Laplacians).
_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


def to_lab(rgb: np.ndarray) -> np.ndarray:
    """RGB float in [0, 1] -> CIELAB float32 (D65, OpenCV float conversion)."""
    return cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.float32), cv2.COLOR_RGB2Lab)


def from_lab(lab: np.ndarray) -> np.ndarray:
    """CIELAB float32 -> RGB float32 clipped to [0, 1]."""
    return np.clip(cv2.cvtColor(np.ascontiguousarray(lab, dtype=np.float32), cv2.COLOR_Lab2RGB), 0.0, 1.0)


def weighted_stats(values: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel weighted mean and standard deviation of ``(H, W, C)`` values.

    Computed with two dot products in float64 (sum w x, sum w x^2) over the bounding box of the
    positive weights.

    Returns:
        ``(mean, std)``, each ``(C,)`` float64. A zero total weight gives NaNs.
    """
    c = values.shape[-1]
    if weights is None:
        mean, std = cv2.meanStdDev(np.ascontiguousarray(values, dtype=np.float32))
        return mean.reshape(-1)[:c].astype(np.float64), std.reshape(-1)[:c].astype(np.float64)
    rows = np.flatnonzero(weights.any(axis=1))
    cols = np.flatnonzero(weights.any(axis=0))
    if rows.size == 0:
        return np.full(c, np.nan), np.full(c, np.nan)
    sl = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    v = values[sl].reshape(-1, c).astype(np.float64)
    w = weights[sl].reshape(-1).astype(np.float64)
    total = w.sum()
    if total <= 0:
        return np.full(c, np.nan), np.full(c, np.nan)
    mean = (w @ v) / total
    var = np.maximum((w @ (v * v)) / total - mean * mean, 0.0)
    return mean, np.sqrt(var)


def plate_lab_stats(background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of a background plate in CIELAB, ``((3,), (3,))`` float64."""
    return weighted_stats(to_lab(background), None)


def subject_box(alpha: np.ndarray) -> tuple[slice, slice] | None:
    """Row and column slices of the bounding box of ``alpha > 0``; None when empty."""
    rows = np.flatnonzero(alpha.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(alpha.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def lab_distance(
    subject: np.ndarray, alpha: np.ndarray, background: np.ndarray | None = None,
    background_stats: tuple[np.ndarray, np.ndarray] | None = None,
) -> float:
    """Distance between subject and background colour statistics in CIELAB.

    Defined as the Euclidean distance between the 6-vectors (mean L, a, b, std L, a, b) of the
    alpha-weighted subject colours and of the background plate: the mean term is the CIE76 colour
    difference of the two mean colours, the std term compares contrast. Lower means better matched.

    Args:
        subject: ``(H, W, 3)`` float RGB in [0, 1] (the subject colours or the composite).
        alpha: ``(H, W)`` weights in [0, 1].
        background: ``(H, W, 3)`` float RGB in [0, 1], or its ``background_stats`` from
            :func:`plate_lab_stats`.

    Returns:
        Distance in Lab units (>= 0); NaN when alpha is zero everywhere.
    """
    box = subject_box(alpha)
    if box is None:
        return float("nan")
    ms, ss = weighted_stats(to_lab(subject[box]), alpha[box])
    mb, sb = background_stats if background_stats is not None else plate_lab_stats(background)
    return float(np.sqrt(((ms - mb) ** 2).sum() + ((ss - sb) ** 2).sum()))


def reinhard(
    subject: np.ndarray, alpha: np.ndarray, background: np.ndarray | None, strength: float,
    background_stats: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Colour transfer of Reinhard et al., "Color Transfer between Images" (IEEE CG&A 2001), in CIELAB.

    Each Lab channel of the subject is standardised with its alpha-weighted mean and std and
    re-scaled to target statistics moved ``strength`` of the way towards the background's:
    ``mu_t = mu_s + strength (mu_b - mu_s)``, ``sd_t = sd_s + strength (sd_b - sd_s)``.

    Args:
        subject: ``(H, W, 3)`` float32 RGB in [0, 1]; alpha: ``(H, W)`` weights; background:
            ``(H', W', 3)`` float32 RGB in [0, 1]; strength: in [0, 1] (0 = unchanged, 1 = full).

        background_stats: optional precomputed :func:`plate_lab_stats` of ``background``.

    Returns:
        ``(H, W, 3)`` float32 RGB in [0, 1]; only the subject's bounding box (alpha > 0) changes.
    """
    box = subject_box(alpha)
    if box is None:
        return subject.astype(np.float32)
    lab = to_lab(subject[box])
    ms, ss = weighted_stats(lab, alpha[box])
    mb, sb = background_stats if background_stats is not None else plate_lab_stats(background)
    mt = ms + strength * (mb - ms)
    st = ss + strength * (sb - ss)
    gain = np.divide(st, ss, out=np.ones_like(st), where=ss > 1e-6)
    out = subject.astype(np.float32, copy=True)
    out[box] = from_lab((lab - ms.astype(np.float32)) * gain.astype(np.float32) + mt.astype(np.float32))
    return out


def _weighted_quantile_map(src: np.ndarray, w: np.ndarray, ref: np.ndarray, bins: int = 256) -> np.ndarray:
    """Map values in [0, 1] so their w-weighted CDF matches ``ref``'s CDF (classic histogram matching).

    Each source bin goes to the reference value at the source bin's mid-CDF; the reference CDF is
    inverted over its strictly increasing steps only, so empty reference bins (CDF plateaus) never
    send a source value to the wrong end of the range.
    """
    edges = np.linspace(0.0, 1.0, bins + 1)
    hs, _ = np.histogram(src, bins=edges, weights=w)
    hr, _ = np.histogram(ref, bins=edges)
    total_s = max(hs.sum(), 1e-12)
    cs_mid = (np.cumsum(hs) - 0.5 * hs) / total_s
    cr = np.concatenate([[0.0], np.cumsum(hr) / max(hr.sum(), 1e-12)])
    cr_steps, first = np.unique(cr, return_index=True)
    lut = np.interp(cs_mid, cr_steps, edges[first])
    idx = np.clip((src * bins).astype(np.int64), 0, bins - 1)
    return lut[idx]


def histogram_match(subject: np.ndarray, alpha: np.ndarray, background: np.ndarray, strength: float) -> np.ndarray:
    """Histogram matching of each RGB channel of the subject to the background's
    (Gonzalez and Woods, *Digital Image Processing*, §3.3.2), the subject histogram alpha-weighted.

    The result is blended ``(1 - strength) subject + strength matched``.

    Args: as :func:`reinhard`. Returns ``(H, W, 3)`` float32 RGB in [0, 1].
    """
    if alpha.sum() <= 0:
        return subject.astype(np.float32)
    out = np.empty_like(subject, dtype=np.float32)
    w = alpha.reshape(-1)
    for c in range(3):
        src = subject[..., c].reshape(-1)
        matched = _weighted_quantile_map(src, w, background[..., c].reshape(-1))
        out[..., c] = matched.reshape(subject.shape[:2])
    return np.clip((1.0 - strength) * subject + strength * out, 0.0, 1.0).astype(np.float32)


def poisson_blend(
    image: np.ndarray, alpha: np.ndarray, background: np.ndarray, mode: str = "normal", strength: float = 1.0
) -> np.ndarray:
    """Gradient-domain blending (Perez, Gangnet, Blake, "Poisson Image Editing", SIGGRAPH 2003) with
    OpenCV's ``seamlessClone``.

    The composite's subject region (alpha > 0, dilated by 3 px) is cloned into the background plate,
    so the subject keeps its gradients but takes the plate's colour at its border. ``mode``
    ``"normal"`` uses the subject's gradients, ``"mixed"`` the stronger of subject and plate. The
    images are padded by reflection so a subject touching the frame can be cloned. The result is
    blended ``(1 - strength) image + strength cloned``. The ground-truth alpha is not changed.

    Args:
        image: ``(H, W, 3)`` float32 composite in [0, 1]; alpha: ``(H, W)`` float32;
        background: ``(H, W, 3)`` float32 plate; mode: ``normal`` or ``mixed``; strength in [0, 1].

    Returns:
        ``(H, W, 3)`` float32 RGB in [0, 1].

    Raises:
        ValueError: unknown mode.
    """
    if mode not in ("normal", "mixed"):
        raise ValueError(f"poisson mode must be 'normal' or 'mixed', got {mode!r}")
    region = (alpha > 0).astype(np.uint8) * 255
    if not region.any():
        return image.astype(np.float32)
    region = cv2.dilate(region, np.ones((7, 7), np.uint8))
    pad = 8
    src = cv2.copyMakeBorder(_u8(image), pad, pad, pad, pad, cv2.BORDER_REFLECT)
    dst = cv2.copyMakeBorder(_u8(background), pad, pad, pad, pad, cv2.BORDER_REFLECT)
    msk = cv2.copyMakeBorder(region, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    x, y, w, h = cv2.boundingRect(msk)
    # seamlessClone centres the mask's bounding box on `center`; crop src/mask to that box so the
    # placement is exact for odd and even sizes alike.
    src_c = np.ascontiguousarray(src[y : y + h, x : x + w])
    msk_c = np.ascontiguousarray(msk[y : y + h, x : x + w])
    center = (x + w // 2, y + h // 2)
    flag = cv2.NORMAL_CLONE if mode == "normal" else cv2.MIXED_CLONE
    cloned = cv2.seamlessClone(src_c, dst, msk_c, center, flag)
    cloned = cloned[pad:-pad, pad:-pad].astype(np.float32) / 255.0
    return np.clip((1.0 - strength) * image + strength * cloned, 0.0, 1.0).astype(np.float32)


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def light_wrap(image: np.ndarray, alpha: np.ndarray, background: np.ndarray, radius_px: float, strength: float) -> np.ndarray:
    """Light wrap: background light spilling over the subject's edge, as in film compositing.

    ``wrap = alpha * (1 - G_r * alpha)`` is large just inside the edge; the output is
    ``I (1 - s wrap) + s wrap (G_r * B)`` where ``G_r *`` is a Gaussian blur of sigma ``radius_px``
    pixels and ``s = strength`` in [0, 1]. For sigma >= 4 px the blurs run at 1/4 resolution
    (area-averaged down, bilinear up), which a blur that wide cannot tell apart.

    Returns:
        ``(H, W, 3)`` float32 RGB in [0, 1].
    """
    if radius_px <= 0 or strength <= 0:
        return image.astype(np.float32)
    blur_a = _wide_blur(alpha.astype(np.float32), radius_px)
    blur_b = _wide_blur(background.astype(np.float32), radius_px)
    wrap = (strength * alpha * np.clip(1.0 - blur_a, 0.0, 1.0))[..., None]
    return np.clip(image * (1.0 - wrap) + wrap * blur_b, 0.0, 1.0).astype(np.float32)


def _wide_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    if sigma < 4.0:
        return cv2.GaussianBlur(x, (0, 0), sigma)
    h, w = x.shape[:2]
    small = cv2.resize(x, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / 4.0)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def noise_sigma(rgb: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Gaussian noise standard deviation (in [0, 1] units) by Immerkaer, "Fast Noise Variance
    Estimation", CVIU 1996: sigma = sqrt(pi / 2) / 6 * mean |I * N| on the luma channel.

    ``weights`` (``(H, W)`` in [0, 1]) restricts the mean to a region (e.g. the subject).
    """
    gray = cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.float32), cv2.COLOR_RGB2GRAY)
    resp = np.abs(cv2.filter2D(gray, cv2.CV_32F, _IMMERKAER, borderType=cv2.BORDER_REFLECT))
    if weights is None:
        return float(np.sqrt(np.pi / 2.0) / 6.0 * resp[1:-1, 1:-1].mean())
    w = weights.astype(np.float32)
    total = float(w.sum())
    return float(np.sqrt(np.pi / 2.0) / 6.0 * (resp * w).sum() / total) if total > 0 else 0.0


def sharpness(rgb: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Mean absolute Laplacian response of the luma (a focus measure, in [0, 1] units per pixel)."""
    gray = cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.float32), cv2.COLOR_RGB2GRAY)
    lap = np.abs(cv2.Laplacian(gray, cv2.CV_32F, ksize=3))
    if weights is None:
        return float(lap.mean())
    total = float(weights.sum())
    return float((lap * weights).sum() / total) if total > 0 else 0.0


def match_blur(subject: np.ndarray, alpha: np.ndarray, background: np.ndarray) -> tuple[np.ndarray, float]:
    """Blur the subject when it is sharper than the background.

    Tries Gaussian sigmas 0.5 to 3 px and keeps the one whose subject sharpness (mean |Laplacian|
    over the subject's interior) is closest to the background's. Returns ``(subject, sigma)``;
    sigma 0 means unchanged.
    """
    interior = (cv2.erode((alpha > 0.99).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0).astype(np.float32)
    if interior.sum() < 64:
        return subject, 0.0
    target = sharpness(background)
    best, best_sigma = subject, 0.0
    best_gap = abs(sharpness(subject, interior) - target)
    if sharpness(subject, interior) <= target:
        return subject, 0.0
    for sigma in (0.5, 0.75, 1.0, 1.5, 2.0, 3.0):
        cand = cv2.GaussianBlur(subject, (0, 0), sigma)
        gap = abs(sharpness(cand, interior) - target)
        if gap < best_gap:
            best, best_sigma, best_gap = cand, sigma, gap
    return best, best_sigma


def match_noise(subject: np.ndarray, alpha: np.ndarray, background: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Add Gaussian noise to the subject so its noise level matches the background's.

    Added luma sigma = sqrt(max(0, sigma_bg^2 - sigma_subject^2)) (Immerkaer estimates on luma,
    [0, 1] units); the noise is drawn i.i.d. per RGB channel with sigma / :data:`LUMA_NOISE_GAIN` so
    its luma has exactly that sigma. Returns ``(subject, added_luma_sigma)``.
    """
    s_bg = noise_sigma(background)
    s_fg = noise_sigma(subject, alpha)
    add = float(np.sqrt(max(0.0, s_bg**2 - s_fg**2)))
    if add <= 1e-4:
        return subject, 0.0
    noise = rng.standard_normal(subject.shape).astype(np.float32) * (add / LUMA_NOISE_GAIN)
    return np.clip(subject + noise, 0.0, 1.0).astype(np.float32), add
