"""The compositing equation, subject placement and layered composites.

All colour arrays are float32 RGB in [0, 1]; alphas are float32 in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


def composite(fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """The compositing equation I = alpha F + (1 - alpha) B (Porter and Duff, "Compositing Digital
    Images", SIGGRAPH 1984; the matting equation of Smith and Blinn 1996).

    Args:
        fg: ``(H, W, 3)`` float foreground colours F in [0, 1].
        alpha: ``(H, W)`` float alpha in [0, 1].
        bg: ``(H, W, 3)`` float background colours B in [0, 1].

    Returns:
        ``(H, W, 3)`` float32 image I.

    Raises:
        ValueError: shapes disagree.
    """
    if fg.shape != bg.shape or fg.shape[:2] != alpha.shape:
        raise ValueError(f"shape mismatch: fg {fg.shape}, alpha {alpha.shape}, bg {bg.shape}")
    a = alpha.astype(np.float32)[..., None]
    return a * fg.astype(np.float32) + (1.0 - a) * bg.astype(np.float32)


def alpha_union(alpha_top: np.ndarray, alpha_bottom: np.ndarray) -> np.ndarray:
    """Coverage of two layers stacked with the "over" operator: a_t + (1 - a_t) a_b, in [0, 1]."""
    return alpha_top + (1.0 - alpha_top) * alpha_bottom


@dataclass
class Layer:
    """One warped layer in output coordinates.

    ``premult``: ``(H, W, 3)`` float32 premultiplied colour alpha*F; ``alpha``: ``(H, W)`` float32.
    ``is_subject``: False for an occluder, whose coverage is removed from the subject alpha.
    """

    premult: np.ndarray
    alpha: np.ndarray
    is_subject: bool = True

    def colours(self) -> np.ndarray:
        """Un-premultiplied colours F (0 where alpha is 0)."""
        a = self.alpha[..., None]
        return np.divide(self.premult, a, out=np.zeros_like(self.premult), where=a > 1e-6)


def subject_alpha(layers: list[Layer], shape: tuple[int, int]) -> np.ndarray:
    """The alpha :func:`composite_layers` returns for ``layers``, without compositing colours:
    subject layers unioned with :func:`alpha_union`, occluders removing their coverage.

    Returns:
        ``(H, W)`` float32 in [0, 1] (``shape`` when there is no layer).
    """
    alpha = np.zeros(shape, np.float32)
    for layer in layers:
        a = layer.alpha
        alpha = alpha_union(a, alpha) if layer.is_subject else (1.0 - a) * alpha
    return np.clip(alpha, 0.0, 1.0)


def composite_layers(bg: np.ndarray, layers: list[Layer]) -> tuple[np.ndarray, np.ndarray]:
    """Composite layers back to front over ``bg``.

    Each layer is laid "over" what is below: I <- aF + (1 - a) I. The subject alpha is the union of
    the subject layers' alphas (a <- a_t + (1 - a_t) a), and an occluder removes its coverage from it
    (a <- (1 - a_o) a), so the returned alpha is exactly the visible subject coverage.

    Args:
        bg: ``(H, W, 3)`` float32 in [0, 1].
        layers: back to front.

    Returns:
        ``(image, alpha)``: ``(H, W, 3)`` float32 and ``(H, W)`` float32, both in [0, 1].
    """
    image = bg.astype(np.float32).copy()
    for layer in layers:
        image = layer.premult + (1.0 - layer.alpha)[..., None] * image
    return np.clip(image, 0.0, 1.0), subject_alpha(layers, bg.shape[:2])


def placement_matrix(
    src_hw: tuple[int, int], out_hw: tuple[int, int], scale: float, angle_deg: float, center_xy: tuple[float, float]
) -> tuple[np.ndarray, float]:
    """Affine map placing a subject crop in the output frame.

    The crop's longer side becomes ``scale * min(out_h, out_w)`` pixels, it is rotated by
    ``angle_deg`` (counter-clockwise, degrees) about its centre, and its centre lands at
    ``center_xy`` given as fractions of the output width and height.

    Returns:
        ``(M, s)``: the ``(2, 3)`` float64 matrix from crop to output pixels, and the isotropic
        scale factor ``s``.
    """
    h, w = src_hw
    oh, ow = out_hw
    s = scale * min(oh, ow) / max(h, w)
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle_deg, s)
    m[0, 2] += center_xy[0] * ow - w / 2.0
    m[1, 2] += center_xy[1] * oh - h / 2.0
    return m, s


def warp_layer(
    fg: np.ndarray, alpha: np.ndarray, out_hw: tuple[int, int], scale: float, angle_deg: float,
    center_xy: tuple[float, float], anchor: tuple[str, ...] | list[str] = (),
) -> Layer:
    """Warp a subject crop into the output frame as a premultiplied layer.

    Colours are premultiplied before resampling so the transparent surround never bleeds into the
    edge. A downscale by more than 2x is done first with area averaging (anti-aliased), the
    remaining rotation and translation with bilinear interpolation.

    Args:
        fg: ``(h, w, 3)`` float32 colours in [0, 1]; alpha: ``(h, w)`` float32 in [0, 1].
        out_hw: output ``(H, W)`` in pixels; scale, angle_deg, center_xy: see :func:`placement_matrix`.
        anchor: output borders (``top``, ``bottom``, ``left``, ``right``) the crop's matching edge is
            moved onto, overriding the centre along that axis (use with ``angle_deg = 0``).
    """
    premult = fg.astype(np.float32) * alpha.astype(np.float32)[..., None]
    a = alpha.astype(np.float32)
    _, s = placement_matrix(a.shape, out_hw, scale, angle_deg, center_xy)
    if s < 0.5:
        nh, nw = max(1, round(a.shape[0] * s)), max(1, round(a.shape[1] * s))
        premult = cv2.resize(premult, (nw, nh), interpolation=cv2.INTER_AREA)
        a = cv2.resize(a, (nw, nh), interpolation=cv2.INTER_AREA)
        # the placement below sizes the pre-shrunk crop to the same output size
    m, _ = placement_matrix(a.shape, out_hw, scale, angle_deg, center_xy)
    oh, ow = out_hw
    if anchor:
        h, w = a.shape
        corners = m @ np.array([[0, w, 0, w], [0, 0, h, h], [1, 1, 1, 1]], np.float64)
        if "bottom" in anchor:
            m[1, 2] += oh - corners[1].max()
        elif "top" in anchor:
            m[1, 2] -= corners[1].min()
        if "right" in anchor:
            m[0, 2] += ow - corners[0].max()
        elif "left" in anchor:
            m[0, 2] -= corners[0].min()
    flags = cv2.INTER_LINEAR
    w_premult = cv2.warpAffine(premult, m, (ow, oh), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    w_alpha = cv2.warpAffine(a, m, (ow, oh), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    w_alpha = np.clip(w_alpha, 0.0, 1.0)
    w_premult = np.clip(w_premult, 0.0, w_alpha[..., None])
    return Layer(w_premult, w_alpha, True)


def cover_crop(image: np.ndarray, out_hw: tuple[int, int], offset: tuple[float, float]) -> np.ndarray:
    """Resize ``image`` to cover ``out_hw`` (keeping its aspect) and crop.

    Args:
        image: ``(h, w, 3)`` array. out_hw: ``(H, W)``.
        offset: ``(fx, fy)`` in [0, 1], where the crop window sits along the spare width / height.
    """
    h, w = image.shape[:2]
    oh, ow = out_hw
    s = max(oh / h, ow / w)
    nh, nw = max(oh, math.ceil(h * s)), max(ow, math.ceil(w * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (nw, nh), interpolation=interp)
    y0 = int(round(offset[1] * (nh - oh)))
    x0 = int(round(offset[0] * (nw - ow)))
    return resized[y0 : y0 + oh, x0 : x0 + ow]


def occluder_layer(
    plate: np.ndarray, subject_alpha: np.ndarray, coverage: float, angle_deg: float, side: float, feather_px: float
) -> Layer | None:
    """A soft-edged scene occluder (a patch of another background photo) in front of the subject.

    The occluder is a half-plane cut at ``angle_deg`` through the subject's bounding box, placed so
    that it covers about ``coverage`` (fraction in [0, 1]) of the subject's pixels, on the side
    chosen by ``side`` in [0, 1), and confined to the subject box grown by 10 %; its edges ramp
    linearly over ``feather_px`` pixels. Colours come
    from ``plate``, an ``(H, W, 3)`` float32 background crop, so the occluder is real scene texture,
    never a second subject.

    Returns:
        The occluder layer (``is_subject=False``), or None when the subject alpha is empty.
    """
    ys, xs = np.nonzero(subject_alpha > 0.5)
    if ys.size == 0:
        return None
    h, w = subject_alpha.shape
    theta = math.radians(angle_deg)
    n = np.array([math.cos(theta), math.sin(theta)], np.float32)
    if side >= 0.5:
        n = -n
    proj = xs * n[0] + ys * n[1]
    cut = float(np.quantile(proj, 1.0 - coverage))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dist = xx * n[0] + yy * n[1] - cut
    sigma = max(feather_px, 0.5)
    occ = np.clip(0.5 + dist / (2.0 * sigma), 0.0, 1.0).astype(np.float32)
    # confine the occluder to the subject's box grown by 10 %, with the same feathered edge
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    my, mx = 0.1 * (y1 - y0), 0.1 * (x1 - x0)
    box_y = np.clip(np.minimum(yy - (y0 - my), (y1 + my) - yy) / sigma + 0.5, 0.0, 1.0)
    box_x = np.clip(np.minimum(xx - (x0 - mx), (x1 + mx) - xx) / sigma + 0.5, 0.0, 1.0)
    occ *= (box_y * box_x).astype(np.float32)
    return Layer(plate.astype(np.float32) * occ[..., None], occ, is_subject=False)


def cutout_occluder_layer(
    fg: np.ndarray, alpha: np.ndarray, subject_alpha: np.ndarray, scale: float, angle_deg: float,
    coverage: float, direction_deg: float, side: float,
) -> tuple[Layer, float] | None:
    """A real cut-out (another subject photo's foreground with its alpha) laid over the subject as an
    occluder.

    The cut-out's longer side becomes ``scale`` times the subject's longer side (bounding box of
    ``subject_alpha > 0.5``) and it is rotated by ``angle_deg``. Its centre is moved from the
    subject's centroid along the direction ``direction_deg`` (flipped when ``side >= 0.5``) by
    ``t`` half subject-lengths, ``t`` in 0, 0.2, ..., 1.6; the ``t`` whose covered share of the
    subject alpha is closest to ``coverage`` is kept, so the occluder enters from one side as a real
    one does.

    Args:
        fg: ``(h, w, 3)`` float32 colours in [0, 1]; alpha: ``(h, w)`` float32 in [0, 1].
        subject_alpha: ``(H, W)`` float32 union of the subject layers.

    Returns:
        ``(layer, achieved_coverage)`` with ``is_subject=False``, or None for an empty subject.
    """
    ys, xs = np.nonzero(subject_alpha > 0.5)
    if ys.size == 0:
        return None
    oh, ow = subject_alpha.shape
    length = float(max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1))
    place_scale = scale * length / min(oh, ow)
    theta = math.radians(direction_deg)
    n = np.array([math.cos(theta), math.sin(theta)]) * (-1.0 if side >= 0.5 else 1.0)
    cy, cx = float(ys.mean()), float(xs.mean())
    total = float(subject_alpha.sum())
    best_t, best_gap, best_cov = 0.0, np.inf, 0.0
    a32 = alpha.astype(np.float32)
    for t in np.arange(0.0, 1.61, 0.2):
        c = ((cx + t * n[0] * length / 2) / ow, (cy + t * n[1] * length / 2) / oh)
        m, _ = placement_matrix(a32.shape, (oh, ow), place_scale, angle_deg, c)
        occ_a = cv2.warpAffine(a32, m, (ow, oh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        cov = float((np.clip(occ_a, 0, 1) * subject_alpha).sum() / total)
        if abs(cov - coverage) < best_gap:
            best_t, best_gap, best_cov = float(t), abs(cov - coverage), cov
    c = ((cx + best_t * n[0] * length / 2) / ow, (cy + best_t * n[1] * length / 2) / oh)
    layer = warp_layer(fg, alpha, (oh, ow), place_scale, angle_deg, c)
    return Layer(layer.premult, layer.alpha, is_subject=False), best_cov
