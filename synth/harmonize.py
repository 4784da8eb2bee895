"""Harmonization: make a pasted subject look as if it was photographed in the background's scene.

Two families live here. *Illumination harmonization* (:func:`illumination_harmonize`, the recipe
default) transfers the scene's light: exposure, white balance and contrast read in a band around the
subject, a bounded, shrunk correction towards what real subjects under that light show, and the
subject's own colours kept. *Colour transfer* (:func:`reinhard`, :func:`histogram_match`) and
gradient-domain blending (:func:`poisson_blend`) are kept as options; ``synth realism``
(:mod:`synth.realism`) measures all of them on real photos against doing nothing.

Colour arrays are ``(H, W, 3)`` float32 RGB in [0, 1]; alphas ``(H, W)`` float32 in [0, 1]; subject
statistics are alpha-weighted. CIELAB values follow OpenCV's float conversion (L in [0, 100],
a and b roughly in [-127, 127]).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from synth.augment import UNIT_8

METHODS = ("none", "illumination", "reinhard", "histogram", "poisson")

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


# --------------------------------------------------------------------------------------------------
# Illumination harmonization: transfer the scene's light, keep the subject's own colours.
# --------------------------------------------------------------------------------------------------

ILLUMINATION_STATS = ("log_luminance", "log_r_over_g", "log_b_over_g", "log_contrast")
"""The four illumination statistics, in this order (natural logs of linear-light quantities)."""

_REC709 = np.array([0.2126, 0.7152, 0.0722], np.float64)
_EPS = 1e-3


def _pow(x: np.ndarray, p: float) -> np.ndarray:
    """``x ** p`` for float32 ``x >= 0`` by ``cv2.pow`` (vectorised; within 2e-7 of NumPy's float32
    power on [0, 1], tested), any shape."""
    flat = np.ascontiguousarray(x).reshape(-1, 1)
    return cv2.pow(flat, p).reshape(x.shape)


def _where_le(x: np.ndarray, bound: float, low: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out`` with ``low`` copied in where ``x <= bound`` (all ``(N, 1)``, same depth as needed): an
    OpenCV masked copy, several times faster than NumPy's ``copyto(where=)``."""
    cv2.copyTo(low, cv2.compare(x, float(bound), cv2.CMP_LE), out)
    return out


def srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    """The sRGB electro-optical transfer function (IEC 61966-2-1): ``(..., 3)`` float in [0, 1] to
    linear light in [0, 1], float32.

    ``x / 12.92`` where ``x <= 0.04045``, else ``((x + 0.055) / 1.055) ** 2.4``; the power runs in
    OpenCV, within 1e-6 of the float32 NumPy expression (tested), about 4x faster. For 8-bit input,
    :data:`SRGB_TO_LINEAR_8` by table is the same function exactly."""
    x = np.asarray(rgb, dtype=np.float32)
    if x.size == 0:
        return x.copy()
    v = np.ascontiguousarray(x).reshape(-1, 1)
    base = v * np.float32(1 / 1.055)
    base += np.float32(0.055 / 1.055)
    np.maximum(base, np.float32(0), out=base)
    out = cv2.pow(base, 2.4)
    return _where_le(v, 0.04045, v * np.float32(1 / 12.92), out).reshape(x.shape)


def linear_to_srgb(lin: np.ndarray) -> np.ndarray:
    """Inverse of :func:`srgb_to_linear`; the input is clipped to [0, 1] first. float32.

    ``12.92 x`` where ``x <= 0.0031308``, else ``1.055 x ** (1 / 2.4) - 0.055`` (power in OpenCV,
    within 1e-6 of the float32 NumPy expression, tested)."""
    x = np.asarray(lin, dtype=np.float32)
    if x.size == 0:
        return x.copy()
    v = np.clip(x.reshape(-1, 1), 0.0, 1.0)
    out = cv2.pow(v, 1.0 / 2.4)
    out *= np.float32(1.055)
    out -= np.float32(0.055)
    return _where_le(v, 0.0031308, v * np.float32(12.92), out).reshape(x.shape)


def linear_to_srgb_u8(lin: np.ndarray) -> np.ndarray:
    """:func:`linear_to_srgb` rounded to 8 bits, ``rint(255 * linear_to_srgb(lin))``, in one pass
    per branch: each branch's affine step is fused into OpenCV's saturating conversion to uint8
    (values above 1 saturate at 255). Equal to the two steps apart except where float32 rounding
    puts a value within about 1e-5 of a half level (a few pixels in a million, by one level; tested).

    Args:
        lin: ``(...)`` float linear light (negative values count as 0).

    Returns:
        ``(...)`` uint8 sRGB.
    """
    x = np.asarray(lin, dtype=np.float32)
    if x.size == 0:
        return np.zeros(x.shape, np.uint8)
    v = np.maximum(np.ascontiguousarray(x).reshape(-1, 1), np.float32(0))
    out = cv2.convertScaleAbs(cv2.pow(v, 1.0 / 2.4), alpha=255.0 * 1.055, beta=-255.0 * 0.055)
    return _where_le(v, 0.0031308, cv2.convertScaleAbs(v, alpha=255.0 * 12.92), out).reshape(x.shape)


SRGB_TO_LINEAR_8 = srgb_to_linear(UNIT_8)
"""``(256,)`` float32: :func:`srgb_to_linear` of each 8-bit level (``cv2.LUT`` of a uint8 image)."""


def surround_band(alpha: np.ndarray, band_fraction: float) -> np.ndarray:
    """The band of background around a subject, where the light that falls on it is read.

    Pixels within Euclidean distance ``r = max(4, round(band_fraction * d))`` of the subject
    (``alpha > 0.5``) and outside its
    support (``alpha > 0``, grown by 2 px so no edge pixel counts), with ``d`` the diagonal of the
    subject's bounding box.

    Args:
        alpha: ``(H, W)`` float in [0, 1]. band_fraction: > 0.

    Returns:
        ``(H, W)`` bool; all False for an empty subject.
    """
    inside = alpha > 0.5
    box = subject_box(inside.astype(np.float32))
    if box is None:
        return np.zeros(alpha.shape, bool)
    d = float(np.hypot(box[0].stop - box[0].start, box[1].stop - box[1].start))
    r = max(4, int(round(band_fraction * d)))
    # Only the subject's box grown by r + 3 px can hold band pixels (farther ones are more than r
    # from every subject pixel, and the support grows by 2 px), and the whole subject lies inside
    # it, so distances computed there are exact.
    h, w = alpha.shape
    y0, y1 = max(0, box[0].start - r - 3), min(h, box[0].stop + r + 3)
    x0, x1 = max(0, box[1].start - r - 3), min(w, box[1].stop + r + 3)
    out = np.zeros(alpha.shape, bool)
    # exact Euclidean distance to the subject (Felzenszwalb-Huttenlocher in OpenCV): linear time,
    # where a dilation by a disk of radius r costs O(r) per pixel
    dist = cv2.distanceTransform((~inside[y0:y1, x0:x1]).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    support = cv2.dilate((alpha[y0:y1, x0:x1] > 0).astype(np.uint8), np.ones((5, 5), np.uint8))
    out[y0:y1, x0:x1] = (dist <= r) & (support == 0)
    return out


def illumination_stats(rgb: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Illumination statistics of a region, in the order of :data:`ILLUMINATION_STATS`.

    With linear light ``(R, G, B)`` (:func:`srgb_to_linear`), Rec. 709 luminance
    ``Y = .2126 R + .7152 G + .0722 B`` and w-weighted means ``<.>``:

    - ``log_luminance = ln(<Y> + 1e-3)``: the exposure level;
    - ``log_r_over_g = ln((<R> + 1e-3) / (<G> + 1e-3))``, ``log_b_over_g`` likewise: the white
      balance (the grey-world illuminant estimate of Buchsbaum 1980 on the region);
    - ``log_contrast = ln(sd_w(ln(Y + 1e-3)) + 1e-3)``: the spread of log luminance.

    Args:
        rgb: ``(H, W, 3)`` float sRGB in [0, 1]. weights: ``(H, W)`` float or bool, >= 0.

    Returns:
        ``(4,)`` float64; NaNs when the weights sum to 0.
    """
    w = np.asarray(weights, dtype=np.float64)
    box = subject_box(w)
    if box is None or w[box].sum() <= 0:
        return np.full(4, np.nan)
    ww = w[box].reshape(-1)
    keep = np.flatnonzero(ww > 0)  # pixels of weight 0 add nothing: a band's box is mostly those
    ww = ww[keep]
    lin = srgb_to_linear(rgb[box].reshape(-1, 3)[keep]).astype(np.float64)
    total = ww.sum()
    mean = (ww @ lin) / total
    y = lin @ _REC709
    ly = np.log(y + _EPS)
    m_ly = (ww @ ly) / total
    sd_ly = np.sqrt(max((ww @ (ly * ly)) / total - m_ly * m_ly, 0.0))
    y_mean = float(mean @ _REC709)
    return np.array([
        np.log(y_mean + _EPS),
        np.log((mean[0] + _EPS) / (mean[1] + _EPS)),
        np.log((mean[2] + _EPS) / (mean[1] + _EPS)),
        np.log(sd_ly + _EPS),
    ])


@dataclass(frozen=True)
class IlluminationPrior:
    """How a real subject's illumination statistics relate to its surround's, per statistic ``k``:
    ``s_subject_k = intercept_k + slope_k * s_band_k + e_k`` with ``sd(e_k) = residual_sd_k``
    (ordinary least squares on real photos; :func:`synth.realism.fit_illumination_prior`).

    ``intercept``, ``slope``, ``residual_sd``: ``(4,)`` tuples in the order of
    :data:`ILLUMINATION_STATS`; ``band_fraction``: the surround band used for the fit
    (:func:`surround_band`); ``n``: photos fitted; ``source``: what they were.
    """

    intercept: tuple[float, float, float, float]
    slope: tuple[float, float, float, float]
    residual_sd: tuple[float, float, float, float]
    band_fraction: float = 0.15
    n: int = 0
    source: str = ""

    def predict(self, band_stats: np.ndarray) -> np.ndarray:
        """Expected subject statistics ``(4,)`` given the surround's ``(4,)``."""
        return np.asarray(self.intercept) + np.asarray(self.slope) * np.asarray(band_stats)


DEFAULT_PRIOR = IlluminationPrior(
    intercept=(-1.947001, 0.29243, -0.152979, 0.0555),
    slope=(-0.172731, 0.13806, 0.278665, 0.177146),
    residual_sd=(0.620077, 0.494796, 0.55927, 0.383183),
    band_fraction=0.15, n=693, source="ECSSD train split (examples/splits/ecssd-train.txt)",
)
"""The prior fitted on the 693 ECSSD train-split photos (``benchmarks/harmonization_realism.py --fit``
prints it again). Real salient subjects are brighter against darker surrounds (a negative
luminance slope) and only weakly share their surround's white balance, so the fitted lines predict
little: the correction is a small shrinkage, which is what beats "do nothing" on real photos."""

MAX_CORRECTION = (float(np.log(2.0)), 0.25, 0.25, float(np.log(1.5)))
"""Largest change per statistic: one stop of exposure, about 28 % in a white-balance gain, and a
factor 1.5 in log-luminance contrast."""


def illumination_correction(
    subject_stats: np.ndarray, band_stats: np.ndarray, strength: float, prior: IlluminationPrior | None = None
) -> np.ndarray:
    """The bounded change ``(4,)`` of each illumination statistic that :func:`illumination_harmonize`
    applies: ``delta_k = clip(-strength * (s_subject_k - predicted_k), -MAX_k, MAX_k)``, where
    ``predicted`` is :meth:`IlluminationPrior.predict` of the surround. It moves the subject
    ``strength`` of the way towards the statistics a real subject under that light would have (a
    shrinkage estimate of the illumination mismatch), never further than :data:`MAX_CORRECTION`.
    NaN inputs give no change.
    """
    prior = prior or DEFAULT_PRIOR
    resid = np.asarray(subject_stats, np.float64) - prior.predict(band_stats)
    delta = np.clip(-float(strength) * resid, -np.asarray(MAX_CORRECTION), np.asarray(MAX_CORRECTION))
    return np.where(np.isfinite(delta), delta, 0.0)


def apply_illumination(subject: np.ndarray, alpha: np.ndarray, delta: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Apply an illumination change ``delta`` ``(4,)`` (see :data:`ILLUMINATION_STATS`) to a subject.

    In linear light: per-channel gains ``exp(delta_lum) * (exp(delta_rg), 1, exp(delta_bg))``,
    normalised so the luminance gain is exactly ``exp(delta_lum)``, then log-luminance contrast
    scaled by ``exp(delta_contrast)`` about the subject's mean log luminance (weighted by
    ``weights``, default ``alpha``), by scaling each pixel's RGB with its luminance ratio (hue and
    saturation kept). Only the subject's box changes.

    Args:
        subject: ``(H, W, 3)`` float sRGB in [0, 1]. alpha: ``(H, W)`` in [0, 1].
        delta: ``(4,)`` float. weights: optional ``(H, W)`` >= 0, zero outside ``alpha > 0``, where
            the contrast's centre is read (the pixels a viewer sees, say).

    Returns:
        ``(H, W, 3)`` float32 sRGB in [0, 1].
    """
    out = np.asarray(subject, dtype=np.float32).copy()
    box = subject_box(alpha)
    if box is None or not np.any(delta):
        return out
    lin = srgb_to_linear(out[box])
    wb = np.exp(np.array([delta[1], 0.0, delta[2]]))
    wb = wb / float(wb @ _REC709)  # white balance leaves luminance unchanged
    lin = lin * (np.exp(delta[0]) * wb).astype(np.float32)
    if delta[3] != 0.0:
        y = np.maximum(lin @ _REC709.astype(np.float32), 0.0)
        ly = np.log(y + _EPS)
        w = (alpha if weights is None else weights)[box].astype(np.float64)
        total = w.sum()
        centre = float((w * ly).sum() / total) if total > 0 else 0.0  # the subject's mean log luminance
        ratio = np.exp((np.exp(delta[3]) - 1.0) * (ly - centre)).astype(np.float32)
        lin = lin * ratio[..., None]
    out[box] = linear_to_srgb(lin)
    return out


def illumination_harmonize(
    subject: np.ndarray, alpha: np.ndarray, background: np.ndarray, strength: float,
    prior: IlluminationPrior | None = None, band: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Illumination harmonization: give the subject the light of the scene around it, not its colours.

    The surround's light (exposure, white balance, contrast; :func:`illumination_stats`) is read in a
    band around the subject (:func:`surround_band`, not the whole plate), the statistics a real
    subject under that light would have are predicted with ``prior`` (fitted on real photos), and
    the subject is moved ``strength`` of the way towards them within :data:`MAX_CORRECTION`
    (:func:`illumination_correction`, :func:`apply_illumination`). Colour transfer (Reinhard et al.
    2001) instead copies the background's colour distribution onto the subject; the grey-world
    white balance is Buchsbaum (1980); the subject-vs-surround regression is this module's.

    Args:
        subject: ``(H, W, 3)`` float sRGB in [0, 1], the subject's colours in output coordinates.
        alpha: ``(H, W)`` float in [0, 1]. background: ``(H, W, 3)`` float sRGB plate in [0, 1].
        strength: shrinkage in [0, 1] (0 = unchanged). prior: default :data:`DEFAULT_PRIOR`.
        band: optional ``(H, W)`` bool surround (default :func:`surround_band` of ``alpha``).

    Returns:
        ``(colours, delta)``: ``(H, W, 3)`` float32 sRGB and the applied ``(4,)`` change.
    """
    prior = prior or DEFAULT_PRIOR
    if band is None:
        band = surround_band(alpha, prior.band_fraction)
    s_sub = illumination_stats(subject, alpha)
    s_band = illumination_stats(background, band)
    delta = illumination_correction(s_sub, s_band, strength, prior)
    return apply_illumination(subject, alpha, delta), delta
