"""Photometric augmentations of the final composite (the ground truth is never changed)."""

from __future__ import annotations

import math

import cv2
import numpy as np


LUMA = np.array([0.299, 0.587, 0.114], np.float32)

NORMAL_LEVELS = 1 << 16
"""Atoms of :func:`standard_normal`: one per 16-bit uniform draw."""


def _normal_table() -> np.ndarray:
    from scipy.special import ndtri

    q = ndtri((np.arange(NORMAL_LEVELS, dtype=np.float64) + 0.5) / NORMAL_LEVELS)
    return (q / np.sqrt(np.mean(q * q))).astype(np.float32)


_NORMAL = _normal_table()


def normal_words(rng: np.random.Generator, n: int) -> np.ndarray:
    """The ``n`` 16-bit uniforms :func:`standard_normal` maps to normal draws: four from each of the
    generator's raw 64-bit words, in order. ``(n,)`` uint16. Drawing them all first lets a caller map
    them block by block (:func:`row_blocks`) with the same result as one :func:`standard_normal`."""
    # the bit generator's raw 64-bit words (half the time of integers())
    return rng.bit_generator.random_raw(-(-n // 4)).view(np.uint16)[:n]


def normal_atoms(words: np.ndarray) -> np.ndarray:
    """The normal atoms of 16-bit uniforms (:func:`normal_words`): float32 of ``words``' shape."""
    return np.take(_NORMAL, words, mode="clip")


def standard_normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """I.i.d. standard normal noise for images by inverse-transform sampling (Devroye, *Non-Uniform
    Random Variate Generation*, 1986, II.2) of 16-bit uniforms (:func:`normal_words`): each draw
    picks one of :data:`NORMAL_LEVELS` equiprobable atoms, the normal quantiles at
    ``(k + 0.5) / 65536`` scaled to unit variance.

    The atoms' law is within 1.1e-5 of N(0, 1) in Kolmogorov distance (2**-17 from the midpoint
    quantiles, the rest from the scaling) and reaches +-4.3 sigma; an 8-bit image never sees the
    difference. It costs a quarter of NumPy's float32 ziggurat (``Generator.standard_normal``)
    per value. Deterministic in ``rng``.

    Args:
        rng: the sample's generator (``default_rng([seed, index])``). shape: output shape.

    Returns:
        ``shape`` float32, mean 0, variance 1.
    """
    return normal_atoms(normal_words(rng, math.prod(shape))).reshape(shape)


BLOCK_BYTES = 256 << 10
"""The float32 working size of one block of :func:`row_blocks`: a pixel-wise chain of several
passes (noise, transfer functions) then runs in the CPU's cache instead of memory: on a 1024 x 1024
photo, sensor noise and Gaussian noise measured 15-20 % faster than on the whole frame at once."""


def row_blocks(shape: tuple[int, ...]) -> list[slice]:
    """Row slices that cover an image of ``shape`` (``(H, W[, C])``) in blocks of about
    :data:`BLOCK_BYTES` as float32 (at least one row each)."""
    row = 4 * math.prod(shape[1:])
    step = max(1, BLOCK_BYTES // max(row, 1))
    return [slice(y, y + step) for y in range(0, shape[0], step)]


def jitter_matrix(mean_luma: float, brightness: float, contrast: float, saturation: float, hue_deg: float) -> np.ndarray:
    """The ``(3, 4)`` affine RGB map of :func:`color_jitter` (last column: offset)."""
    eye = np.eye(3, dtype=np.float64)
    luma = np.tile(LUMA.astype(np.float64), (3, 1))
    b = brightness * eye
    # contrast about the mean luma of the brightened image: c x + (1 - c) m
    m = mean_luma * brightness
    s = saturation * eye + (1.0 - saturation) * luma
    # hue rotation about the grey axis (exact rotation in RGB by Rodrigues' formula)
    th = np.deg2rad(hue_deg)
    k = np.full((3, 3), 1.0 / 3.0)
    cross = np.array([[0, -1, 1], [1, 0, -1], [-1, 1, 0]]) / np.sqrt(3.0)
    hue = np.cos(th) * eye + (1 - np.cos(th)) * k + np.sin(th) * cross
    lin = hue @ s @ (contrast * b)
    offset = hue @ s @ np.full(3, (1.0 - contrast) * m)
    return np.hstack([lin, offset[:, None]]).astype(np.float32)


def color_jitter(image: np.ndarray, brightness: float, contrast: float, saturation: float, hue_deg: float) -> np.ndarray:
    """Brightness, contrast, saturation and hue changes, applied as one affine RGB map.

    In order: multiply by ``brightness``; scale by ``contrast`` about the mean luma (BT.601);
    scale the distance to the pixel's luma by ``saturation``; rotate about the grey axis by
    ``hue_deg`` degrees. The result is clipped to [0, 1] once, at the end.

    Args:
        image: ``(H, W, 3)`` float32 RGB in [0, 1]; brightness, contrast, saturation: factors
            (1 = unchanged); hue_deg: degrees.

    Returns:
        ``(H, W, 3)`` float32 RGB in [0, 1].
    """
    mean_luma = float(np.dot(np.asarray(cv2.mean(image)[:3], np.float32), LUMA))
    m = jitter_matrix(mean_luma, brightness, contrast, saturation, hue_deg)
    return np.clip(cv2.transform(np.ascontiguousarray(image, dtype=np.float32), m), 0.0, 1.0)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of ``sigma`` pixels (no-op for sigma <= 0)."""
    if sigma <= 0:
        return image
    return cv2.GaussianBlur(image, (0, 0), sigma)


def gaussian_noise(image: np.ndarray, sigma_levels: float, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise (:func:`standard_normal`) with standard deviation ``sigma_levels`` in
    8-bit levels (0-255), clipped to [0, 1]. ``(H, W[, C])`` float32 in, float32 out (computed in
    :func:`row_blocks`, the same values as on the whole frame)."""
    if sigma_levels <= 0:
        return image
    x = np.asarray(image, dtype=np.float32)
    words = normal_words(rng, x.size).reshape(x.shape)
    out = np.empty(x.shape, np.float32)
    scale = np.float32(sigma_levels / 255.0)
    for rows in row_blocks(x.shape):
        noise = normal_atoms(words[rows])
        noise *= scale
        noise += x[rows]
        np.clip(noise, 0.0, 1.0, out=out[rows])
    return out
