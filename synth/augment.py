"""Photometric augmentations of the final composite (the ground truth is never changed)."""

from __future__ import annotations

import math
import sys

import cv2
import numpy as np


LUMA = np.array([0.299, 0.587, 0.114], np.float32)

UNIT_8 = np.arange(256, dtype=np.float32) / np.float32(255.0)
"""``(256,)`` float32: each 8-bit level as a value in [0, 1], ``v / 255`` (a table for
``cv2.LUT`` or per-level formulas)."""

NORMAL_LEVELS = 1 << 16
"""Atoms of :func:`standard_normal`: one per 16-bit uniform draw."""


def _normal_table(levels: int = NORMAL_LEVELS) -> np.ndarray:
    """``levels`` equiprobable normal atoms: the N(0, 1) quantiles at ``(k + 0.5) / levels``,
    scaled to unit variance; ``(levels,)`` float32, increasing."""
    from scipy.special import ndtri

    q = ndtri((np.arange(levels, dtype=np.float64) + 0.5) / levels)
    return (q / np.sqrt(np.mean(q * q))).astype(np.float32)


_NORMAL = _normal_table()

BYTE_NORMAL_LEVELS = 256
"""Atoms of the 8-bit noise path (:func:`noise_by_level`): one per uniform byte."""

BYTE_NORMAL = _normal_table(BYTE_NORMAL_LEVELS)
"""``(256,)`` float32: the normal atoms of one uniform byte (:func:`_normal_table` with 256
levels). Their law is within 0.0026 of N(0, 1) in Kolmogorov distance (2**-9 from the midpoint
quantiles, the rest from the scaling to unit variance) and reaches +-2.89 sigma, where the 2**16
atoms of :func:`standard_normal` reach +-4.3: a pixel's noise is never past 2.89 of its standard
deviations, which a draw from N(0, 1) is in 0.4 % of pixels."""


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


def noise_by_level(image8: np.ndarray, table: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pixel-wise noise on an 8-bit image by one table lookup per value: ``out = table[v, r]`` for a
    value ``v`` with ``r`` a uniform byte from ``rng``, i.i.d. per value. ``table[v]`` holds the
    noisy 8-bit results of level ``v`` at the 256 atoms :data:`BYTE_NORMAL` (inverse-transform
    sampling with 256 equiprobable atoms; Devroye, *Non-Uniform Random Variate Generation*, 1986,
    II.2), so any pixel-wise law of level and one normal draw costs one gather: sensor noise on a
    1024 x 1024 photo took 3.5 ms against 13.0 ms by the 2**16 atoms and the sRGB encoding per
    pixel it replaced (renderer 2), both with freed memory kept as in a build worker
    (:func:`synth.executors.keep_freed_memory`).

    The bytes are ``rng``'s raw 64-bit words, eight per word, in order (the first ``image8.size``),
    in ``image8``'s C order; the 16-bit index ``256 v + r`` is formed by OpenCV's channel merge.

    Args:
        image8: ``(...)`` uint8. table: ``(256, 256)`` uint8, ``[level, atom]``. rng: the sample's
            generator.

    Returns:
        uint8 of ``image8``'s shape.

    Raises:
        ValueError: ``image8`` is not uint8 or ``table`` is not ``(256, 256)`` uint8.
    """
    if image8.dtype != np.uint8 or table.shape != (256, BYTE_NORMAL_LEVELS) or table.dtype != np.uint8:
        raise ValueError("noise_by_level needs a uint8 image and a (256, 256) uint8 table")
    n = image8.size
    if n == 0:
        return np.empty(image8.shape, np.uint8)
    r = rng.bit_generator.random_raw(-(-n // 8)).view(np.uint8)[:n].reshape(-1, 1)
    v = np.ascontiguousarray(image8).reshape(-1, 1)
    # two bytes per value, read as one 16-bit index: level in the high byte
    lo_hi = [r, v] if sys.byteorder == "little" else [v, r]
    index = cv2.merge(lo_hi).view(np.uint16).ravel()
    flat = np.ascontiguousarray(table).ravel()
    out = np.empty(n, np.uint8)
    step = BLOCK_BYTES // 4  # a block's indices and results stay in the CPU's cache
    for i in range(0, n, step):
        np.take(flat, index[i : i + step], out=out[i : i + step])
    return out.reshape(image8.shape)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """float32 in [0, 1] -> uint8, ``rint(255 x)`` (round half to even), any shape; values above 1
    saturate at 255. OpenCV's saturating conversion takes ``|255 x|``, so the input must not be
    negative (every image and alpha of the renderer is clipped to [0, 1])."""
    x = np.ascontiguousarray(image, dtype=np.float32)
    return cv2.convertScaleAbs(x.reshape(-1, 1), alpha=255.0).reshape(x.shape)


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
    """Additive Gaussian noise with standard deviation ``sigma_levels`` in 8-bit levels (0-255),
    clipped to the value range.

    ``(H, W[, C])`` float32 in [0, 1]: ``clip(x + sigma / 255 * z, 0, 1)`` with ``z`` from
    :func:`standard_normal` (computed in :func:`row_blocks`, the same values as on the whole
    frame); float32 out. uint8: the same formula on ``x = v / 255`` at the 256 atoms
    :data:`BYTE_NORMAL`, rounded to 8 bits (:func:`noise_by_level`); uint8 out."""
    if sigma_levels <= 0:
        return image
    if image.dtype == np.uint8:
        noisy = np.clip(UNIT_8[:, None] + BYTE_NORMAL[None, :] * np.float32(sigma_levels / 255.0), 0.0, 1.0)
        return noise_by_level(image, to_uint8(noisy), rng)
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
