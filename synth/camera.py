"""Camera-consistent effects applied to the scene, not to the pasted subject alone.

A real photo of a subject has the subject in focus and its background out of focus (depth of field),
one sensor's noise over the whole frame, one JPEG encoding, and the subject's shadow on the ground.
Pasted composites break each of these; the functions here restore them on the whole scene
(Li et al., "Bridging Composite and Real: Towards End-to-end Deep Image Matting", IJCV 2022: RSSN
blurs the background, denoises the foreground and re-noises the composite).

Images are ``(H, W, 3)`` float32 sRGB in [0, 1]; alphas ``(H, W)`` float32 in [0, 1].
"""

from __future__ import annotations

import cv2
import numpy as np

from synth.augment import BYTE_NORMAL, noise_by_level, normal_atoms, normal_words, row_blocks
from synth.harmonize import SRGB_TO_LINEAR_8, linear_to_srgb, linear_to_srgb_u8, srgb_to_linear


def disk_kernel(radius_px: float) -> np.ndarray:
    """A normalised disk (the defocus point-spread function of a thin lens with a round aperture),
    anti-aliased at its rim by 4x4 supersampling.

    Args:
        radius_px: radius in pixels (> 0).

    Returns:
        ``(2R + 1, 2R + 1)`` float32 summing to 1, ``R = ceil(radius_px)``.
    """
    r = max(radius_px, 0.5)
    R = int(np.ceil(r))
    sub = (np.arange(4) + 0.5) / 4.0 - 0.5
    ys = np.arange(-R, R + 1)[:, None, None, None] + sub[None, None, :, None]
    xs = np.arange(-R, R + 1)[None, :, None, None] + sub[None, None, None, :]
    k = ((xs**2 + ys**2) <= r * r).mean(axis=(2, 3)).astype(np.float32)
    return k / k.sum()


def defocus(image: np.ndarray, radius_px: float, fast: bool = True) -> np.ndarray:
    """Lens blur: convolution with :func:`disk_kernel` in linear light (so bright points spread
    into bokeh discs as in a camera), borders reflected. ``radius_px <= 0`` returns the input.

    With ``fast`` and a radius of 8 px or more, the convolution runs at ``1/f`` resolution,
    ``f = floor(radius_px / 4)`` (area-averaged down, a disk of radius ``radius_px / f``, bilinear
    up): a blur that wide hides the difference (mean absolute difference below 1/255 on real
    photos, tested), at a fraction of the cost.

    Returns:
        ``(H, W, 3)`` float32 sRGB in [0, 1].
    """
    if radius_px <= 0:
        return image
    lin = srgb_to_linear(image)
    h, w = lin.shape[:2]
    f = int(radius_px // 4) if fast else 1
    if f >= 2 and min(h, w) >= 8 * f:
        small = cv2.resize(lin, (max(1, round(w / f)), max(1, round(h / f))), interpolation=cv2.INTER_AREA)
        small = cv2.filter2D(small, -1, disk_kernel(radius_px / f), borderType=cv2.BORDER_REFLECT)
        out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    else:
        out = cv2.filter2D(lin, -1, disk_kernel(radius_px), borderType=cv2.BORDER_REFLECT)
    return linear_to_srgb(out)


def sensor_noise(image: np.ndarray, shot: float, read: float, rng: np.random.Generator) -> np.ndarray:
    """Signal-dependent sensor noise on the whole frame: the Poisson-Gaussian model of Foi et al.,
    "Practical Poissonian-Gaussian Noise Modeling and Fitting for Single-Image Raw-Data" (IEEE TIP
    2008), ``y = x + sqrt(shot * x + read^2) * n``, ``n ~ N(0, 1)`` i.i.d. per pixel and channel,
    in linear light ``x`` in [0, 1], then back to sRGB.

    Args:
        image: ``(H, W, 3)`` float32 sRGB in [0, 1]: ``n`` from
            :func:`synth.augment.standard_normal` (2**16 atoms). Or uint8 sRGB, the last step of a
            render: ``x`` is the level's linear value (:data:`synth.harmonize.SRGB_TO_LINEAR_8`),
            ``n`` one of the 256 atoms :data:`synth.augment.BYTE_NORMAL`, and the sRGB encoding is
            rounded straight to 8 bits (:func:`synth.harmonize.linear_to_srgb_u8`): every
            (level, atom) result is computed once, in a 256 x 256 table, and each pixel looks its
            own up (:func:`synth.augment.noise_by_level`).
        shot: the Poisson (signal-dependent) variance gain, >= 0. read: the Gaussian read-noise
            standard deviation in linear units, >= 0.

    Returns:
        ``(H, W, 3)`` sRGB: float32 in [0, 1] for float input, uint8 for uint8 input.
    """
    if shot <= 0 and read <= 0:
        return image
    if image.dtype == np.uint8:
        return noise_by_level(image, sensor_noise_table(shot, read), rng)
    words = normal_words(rng, image.size).reshape(image.shape)
    out = np.empty(image.shape, np.float32)
    for rows in row_blocks(image.shape):  # pixel-wise: block by block, in the CPU's cache
        lin = srgb_to_linear(image[rows])
        sd = lin * np.float32(shot)
        sd += np.float32(read * read)
        np.maximum(sd, 0.0, out=sd)
        np.sqrt(sd, out=sd)
        noisy = normal_atoms(words[rows])
        noisy *= sd
        noisy += lin
        out[rows] = linear_to_srgb(noisy)
    return out


def sensor_noise_table(shot: float, read: float) -> np.ndarray:
    """The 8-bit sensor noise of :func:`sensor_noise` at every level and atom: ``(256, 256)`` uint8,
    ``[level, atom]`` = ``linear_to_srgb_u8(x + sqrt(max(shot * x + read^2, 0)) * a)`` with ``x``
    the level's linear value and ``a`` the atom (:data:`synth.augment.BYTE_NORMAL`), in float32."""
    sd = np.sqrt(np.maximum(np.float32(shot) * SRGB_TO_LINEAR_8 + np.float32(read * read), 0))
    return linear_to_srgb_u8(SRGB_TO_LINEAR_8[:, None] + sd[:, None] * BYTE_NORMAL[None, :])


def contact_shadow(plate: np.ndarray, alpha: np.ndarray, opacity: float, blur_px: float, offset_px: float) -> np.ndarray:
    """A soft contact shadow cast by the subject on the plate below and behind it.

    The shadow is the subject's alpha moved down by ``offset_px``, squashed to its lower third
    (where the subject meets the ground) and blurred with a Gaussian of sigma ``blur_px``; the plate
    is darkened multiplicatively in linear light, ``B (1 - opacity * shadow)``. Apply it to the plate
    before the subject is composited, so the subject itself is never darkened.

    Args:
        plate: ``(H, W, 3)`` float32 sRGB. alpha: ``(H, W)`` subject alpha. opacity in [0, 1];
        blur_px > 0; offset_px >= 0.

    Returns:
        ``(H, W, 3)`` float32 sRGB in [0, 1].
    """
    rows = np.flatnonzero(alpha.max(axis=1) > 0.5)
    if opacity <= 0 or rows.size == 0:
        return plate
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    foot = np.zeros_like(alpha, dtype=np.float32)
    cut = y0 + 2 * (y1 - y0) // 3
    foot[cut:y1] = alpha[cut:y1]
    m = np.float32([[1, 0, 0], [0, 1, offset_px]])
    shadow = cv2.warpAffine(foot, m, (alpha.shape[1], alpha.shape[0]), flags=cv2.INTER_LINEAR, borderValue=0)
    shadow = cv2.GaussianBlur(shadow, (0, 0), max(blur_px, 0.5))
    lin = srgb_to_linear(plate) * (1.0 - opacity * np.clip(shadow, 0, 1))[..., None]
    return linear_to_srgb(lin)
