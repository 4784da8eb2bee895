"""What the rating page shows: the cut-out over a checkerboard and plain backgrounds, the mask
overlaid with an opacity, and zoomed crops of the boundary where the extraction is most uncertain.
Pure NumPy/OpenCV on ``(H, W, 3)`` uint8 RGB photos and ``(H, W)`` float32 alpha in [0, 1]."""

from __future__ import annotations

import cv2
import numpy as np

PLAIN_BACKGROUNDS = {"white": (255, 255, 255), "black": (0, 0, 0), "grey": (128, 128, 128), "green": (0, 177, 64)}


def fit_alpha(alpha: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``alpha`` resized (bilinear) to ``shape`` = (H, W) when it differs; float32 in [0, 1]."""
    a = alpha.astype(np.float32)
    if a.shape != shape:
        a = cv2.resize(a, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return np.clip(a, 0, 1)


def checkerboard(height: int, width: int, cell: int = 16, light: int = 235, dark: int = 190) -> np.ndarray:
    """``(height, width, 3)`` uint8 grey checkerboard of ``cell``-pixel squares (the usual
    transparency pattern); the top-left square is light."""
    y = (np.arange(height) // cell)[:, None]
    x = (np.arange(width) // cell)[None, :]
    board = np.where((x + y) % 2 == 0, light, dark).astype(np.uint8)
    return np.repeat(board[:, :, None], 3, axis=2)


def composite(rgb: np.ndarray, alpha: np.ndarray, background: np.ndarray | tuple[int, int, int]) -> np.ndarray:
    """``alpha * rgb + (1 - alpha) * background`` rounded to uint8.

    Args:
        rgb: ``(H, W, 3)`` uint8 photo.
        alpha: ``(H, W)`` float in [0, 1] (resized to the photo if needed).
        background: ``(H, W, 3)`` uint8 image or an RGB colour.

    Raises:
        ValueError: a background image of another size.
    """
    h, w = rgb.shape[:2]
    a = fit_alpha(alpha, (h, w))[:, :, None]
    bg = np.broadcast_to(np.asarray(background, np.float32), (h, w, 3)) if np.ndim(background) == 1 else np.asarray(background, np.float32)
    if bg.shape != (h, w, 3):
        raise ValueError(f"background is {bg.shape}, the photo {(h, w, 3)}")
    return np.clip(np.rint(a * rgb.astype(np.float32) + (1 - a) * bg), 0, 255).astype(np.uint8)


def overlay(rgb: np.ndarray, alpha: np.ndarray, opacity: float = 0.5, color: tuple[int, int, int] = (255, 0, 96)) -> np.ndarray:
    """The photo with the mask tinted ``color`` at ``opacity`` (in [0, 1]) times alpha, uint8.

    Raises:
        ValueError: opacity outside [0, 1].
    """
    if not 0 <= opacity <= 1:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    a = fit_alpha(alpha, rgb.shape[:2])[:, :, None] * opacity
    return np.clip(np.rint((1 - a) * rgb + a * np.asarray(color, np.float32)), 0, 255).astype(np.uint8)


def uncertainty(alpha: np.ndarray) -> np.ndarray:
    """Boundary uncertainty ``1 - |2 a_s - 1|`` of the alpha smoothed by a Gaussian of sigma
    ``0.005 x diagonal`` px (so a binary mask is uncertain along its edge, a soft one where it is
    near 0.5); ``(H, W)`` float32 in [0, 1]."""
    h, w = alpha.shape
    sigma = max(1.0, 0.005 * float(np.hypot(h, w)))
    smooth = cv2.GaussianBlur(alpha.astype(np.float32), (0, 0), sigma)
    return 1 - np.abs(2 * smooth - 1)


def uncertain_boxes(alpha: np.ndarray, k: int = 3, size: int | None = None) -> list[tuple[int, int, int, int]]:
    """Up to ``k`` non-overlapping square windows ``(x, y, w, h)`` with the most boundary
    uncertainty (window sums of :func:`uncertainty`, greedy, each next window's centre outside the
    previous ones); ``size`` defaults to 25 % of the shorter side (at least 48 px), large enough to
    judge an edge in context. Empty when the alpha has no uncertain pixel."""
    h, w = alpha.shape
    size = size or max(48, int(0.25 * min(h, w)))
    size = min(size, h, w)
    u = uncertainty(alpha)
    score = cv2.boxFilter(u, -1, (size, size), normalize=False, borderType=cv2.BORDER_CONSTANT)
    half = size // 2
    boxes: list[tuple[int, int, int, int]] = []
    for _ in range(k):
        idx = int(np.argmax(score))
        cy, cx = divmod(idx, w)
        if score[cy, cx] <= 1e-3 * size:
            break
        x0, y0 = min(max(0, cx - half), w - size), min(max(0, cy - half), h - size)
        boxes.append((x0, y0, size, size))
        score[max(0, cy - size):cy + size, max(0, cx - size):cx + size] = -1
    return boxes


LOCATOR_COLOUR = (255, 0, 96)


def crop_locator(rgb: np.ndarray, boxes: list[tuple[int, int, int, int]], width: int = 320) -> np.ndarray:
    """A thumbnail of the photo (``width`` px wide) with each box of :func:`uncertain_boxes` drawn
    and numbered 1, 2, ... in its order, so a zoomed crop can be found in the photo; uint8 RGB."""
    h, w = rgb.shape[:2]
    s = width / w
    thumb = cv2.resize(rgb, (width, max(1, round(h * s))), interpolation=cv2.INTER_AREA).copy()
    for i, (x, y, bw, bh) in enumerate(boxes, 1):
        p0, p1 = (round(x * s), round(y * s)), (round((x + bw) * s) - 1, round((y + bh) * s) - 1)
        cv2.rectangle(thumb, p0, p1, LOCATOR_COLOUR, 2)
        cv2.putText(thumb, str(i), (p0[0] + 3, p0[1] + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, LOCATOR_COLOUR, 1, cv2.LINE_AA)
    return thumb


def zoomed_crops(rgb: np.ndarray, alpha: np.ndarray, k: int = 3, zoom: int = 2) -> list[np.ndarray]:
    """The :func:`uncertain_boxes` of the cut-out on a checkerboard, each enlarged ``zoom`` times
    (nearest neighbour, so pixels stay visible) with the alpha = 0.5 contour drawn; uint8 RGB."""
    h, w = rgb.shape[:2]
    a = fit_alpha(alpha, (h, w))
    cut = composite(rgb, a, checkerboard(h, w))
    out = []
    for x, y, bw, bh in uncertain_boxes(a, k):
        crop = cv2.resize(cut[y:y + bh, x:x + bw], (bw * zoom, bh * zoom), interpolation=cv2.INTER_NEAREST)
        m = cv2.resize((a[y:y + bh, x:x + bw] >= 0.5).astype(np.uint8), (bw * zoom, bh * zoom), interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(m, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(crop, contours, -1, (255, 0, 96), 1)
        out.append(crop)
    return out
