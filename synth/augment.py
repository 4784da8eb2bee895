"""Photometric augmentations of the final composite (the ground truth is never changed)."""

from __future__ import annotations

import cv2
import numpy as np


def color_jitter(image: np.ndarray, brightness: float, contrast: float, saturation: float, hue_deg: float) -> np.ndarray:
    """Brightness, contrast, saturation and hue changes, in that order.

    Args:
        image: ``(H, W, 3)`` float32 RGB in [0, 1].
        brightness: multiplicative factor (1 = unchanged). contrast: factor about the mean luma.
        saturation: factor on the distance to the luma. hue_deg: hue rotation in degrees.

    Returns:
        ``(H, W, 3)`` float32 RGB in [0, 1].
    """
    out = image.astype(np.float32) * brightness
    gray = cv2.cvtColor(np.clip(out, 0, 1), cv2.COLOR_RGB2GRAY)
    out = (out - gray.mean()) * contrast + gray.mean()
    gray = cv2.cvtColor(np.clip(out, 0, 1), cv2.COLOR_RGB2GRAY)[..., None]
    out = np.clip((out - gray) * saturation + gray, 0.0, 1.0).astype(np.float32)
    if hue_deg:
        hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV)  # H in degrees [0, 360) for float input
        hsv[..., 0] = np.mod(hsv[..., 0] + hue_deg, 360.0)
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of ``sigma`` pixels (no-op for sigma <= 0)."""
    if sigma <= 0:
        return image
    return cv2.GaussianBlur(image, (0, 0), sigma)


def gaussian_noise(image: np.ndarray, sigma_levels: float, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise with standard deviation ``sigma_levels`` in 8-bit levels (0-255)."""
    if sigma_levels <= 0:
        return image
    noise = rng.standard_normal(image.shape).astype(np.float32) * (sigma_levels / 255.0)
    return np.clip(image + noise, 0.0, 1.0).astype(np.float32)
