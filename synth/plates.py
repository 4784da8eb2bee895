"""Background plates: crop windows and how much of each is inpainted.

A ``masked`` background is a photo whose subject was inpainted away; the inpainted hole (the
subject mask dilated by ``dilate_px``) is invented texture, often a smooth blob as salient as a
subject. A plate's crop is a window of the photo, resized to the output: its *inpainted share* is
the fraction of the window's pixels inside the hole. Windows are chosen by their share
(``max_inpainted_fraction``) and can zoom in (``crop_zoom``), so a crop can avoid the hole.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from synth.compositing import cover_crop

GRID = 9
"""Candidate window positions per axis (offsets 0, 1/8, ..., 1) at each zoom level."""
ZOOM_LEVELS = 4
"""Candidate zoom levels, evenly spaced over the recipe's ``crop_zoom`` range."""


@dataclass(frozen=True)
class Window:
    """A crop window in photo pixels: top-left ``(x, y)`` and size ``(w, h)``, floats."""

    x: float
    y: float
    w: float
    h: float


def cover_window(photo_hw: tuple[int, int], out_hw: tuple[int, int], offset: tuple[float, float], zoom: float = 1.0) -> Window:
    """The window of the photo that a cover crop takes: the largest window of the output's aspect
    that fits in the photo, scaled by ``zoom`` in (0, 1], placed at ``offset`` (fractions of the spare
    width and height)."""
    h, w = photo_hw
    oh, ow = out_hw
    s = min(h / oh, w / ow) * zoom
    wh, ww = oh * s, ow * s
    return Window(offset[0] * (w - ww), offset[1] * (h - wh), ww, wh)


def integral(hole: np.ndarray) -> np.ndarray:
    """``(H + 1, W + 1)`` float64 summed-area table of a ``(H, W)`` bool hole mask."""
    return cv2.integral(hole.astype(np.uint8), sdepth=cv2.CV_64F)


def window_shares(table: np.ndarray, x: np.ndarray, y: np.ndarray, w: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Inpainted shares of many windows at once (vectorised :func:`window_share`).

    Args:
        table: :func:`integral` of the hole. x, y, w, h: ``(N,)`` float window corners and sizes in
            photo pixels.

    Returns:
        ``(N,)`` float64 in [0, 1]: the hole's pixel count inside each window (rounded to whole
        pixels, at least one pixel, clipped to the photo) over the window's pixel count.
    """
    H, W = table.shape[0] - 1, table.shape[1] - 1
    x0 = np.clip(np.rint(x), 0, None).astype(np.int64)
    y0 = np.clip(np.rint(y), 0, None).astype(np.int64)
    x1 = np.minimum(W, np.maximum(x0 + 1, np.rint(x + w).astype(np.int64)))
    y1 = np.minimum(H, np.maximum(y0 + 1, np.rint(y + h).astype(np.int64)))
    s = table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]
    return s / ((x1 - x0) * (y1 - y0))


def window_share(table: np.ndarray, win: Window) -> float:
    """Inpainted share of one window (see :func:`window_shares`), in [0, 1]."""
    return float(window_shares(table, *(np.array([v], np.float64) for v in (win.x, win.y, win.w, win.h)))[0])


def candidates(photo_hw: tuple[int, int], out_hw: tuple[int, int], zoom: tuple[float, float]) -> np.ndarray:
    """Candidate ``(offset_x, offset_y, zoom)`` triples, ``(N, 3)`` float64: a :data:`GRID` x
    :data:`GRID` grid at each of :data:`ZOOM_LEVELS` zoom levels over ``zoom``, zoom-major."""
    zs = np.array(sorted({round(z, 6) for z in np.linspace(zoom[0], zoom[1], ZOOM_LEVELS)}))
    g = np.linspace(0.0, 1.0, GRID)
    z, v, u = np.meshgrid(zs, g, g, indexing="ij")
    return np.stack([u.ravel(), v.ravel(), z.ravel()], axis=1)


def _candidate_shares(table: np.ndarray, photo_hw: tuple[int, int], out_hw: tuple[int, int], cand: np.ndarray) -> np.ndarray:
    h, w = photo_hw
    oh, ow = out_hw
    s = np.minimum(h / oh, w / ow) * cand[:, 2]
    wh, ww = oh * s, ow * s
    return window_shares(table, cand[:, 0] * (w - ww), cand[:, 1] * (h - wh), ww, wh)


def min_share(hole: np.ndarray, out_hw: tuple[int, int], zoom: tuple[float, float]) -> float:
    """The smallest inpainted share over the :func:`candidates` windows of a plate."""
    cand = candidates(hole.shape, out_hw, zoom)
    return float(_candidate_shares(integral(hole), hole.shape, out_hw, cand).min())


def choose_window(
    hole: np.ndarray | None, out_hw: tuple[int, int], drawn: tuple[float, float, float], max_share: float, zoom: tuple[float, float],
) -> tuple[tuple[float, float, float], float]:
    """The crop of a sample: the drawn ``(offset_x, offset_y, zoom)`` when its inpainted share is at
    most ``max_share``, else the candidate within the bound nearest to it (Euclidean in
    ``(offset_x, offset_y, zoom)``; ties to the first in :func:`candidates` order), else the
    candidate with the smallest share. Deterministic.

    Returns:
        ``((offset_x, offset_y, zoom), share)``; share 0 for a plate without a hole.
    """
    if hole is None or not hole.any():
        return drawn, 0.0
    t = integral(hole)
    share = window_share(t, cover_window(hole.shape, out_hw, drawn[:2], drawn[2]))
    if share <= max_share:
        return drawn, share
    cand = candidates(hole.shape, out_hw, zoom)
    shares = _candidate_shares(t, hole.shape, out_hw, cand)
    ok = shares <= max_share
    if ok.any():
        d = np.sqrt(((cand - np.asarray(drawn)) ** 2).sum(axis=1))
        i = int(np.argmin(np.where(ok, d, np.inf)))
    else:
        i = int(np.argmin(shares))
    return (float(cand[i, 0]), float(cand[i, 1]), float(cand[i, 2])), float(shares[i])


def crop_plate(photo: np.ndarray, out_hw: tuple[int, int], offset: tuple[float, float], zoom: float) -> np.ndarray:
    """Crop a window (:func:`cover_window`) of ``photo`` and resize it to ``out_hw`` (area
    averaging when shrinking, bilinear when enlarging). ``zoom == 1`` is exactly
    :func:`synth.compositing.cover_crop`."""
    if zoom >= 1.0:
        return cover_crop(photo, out_hw, offset)
    win = cover_window(photo.shape[:2], out_hw, offset, zoom)
    x0, y0 = int(round(win.x)), int(round(win.y))
    x1, y1 = max(x0 + 1, int(round(win.x + win.w))), max(y0 + 1, int(round(win.y + win.h)))
    crop = photo[y0:y1, x0:x1]
    oh, ow = out_hw
    interp = cv2.INTER_AREA if crop.shape[0] > oh else cv2.INTER_LINEAR
    return cv2.resize(crop, (ow, oh), interpolation=interp)
