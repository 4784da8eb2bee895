"""The compositing equation, subject placement and layered composites.

All colour arrays are float32 RGB in [0, 1]; alphas are float32 in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

from synth.edges import tight_bbox


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
    """One warped layer, held in its box of the output frame (outside the box it is transparent).

    ``premult``: ``(h, w, 3)`` float32 premultiplied colour alpha*F; ``alpha``: ``(h, w)`` float32 in
    [0, 1]; ``origin``: ``(y, x)`` of the box's top-left pixel in the frame, so a whole-frame layer
    has origin ``(0, 0)`` and the frame's shape. ``is_subject``: False for an occluder, whose
    coverage is removed from the subject alpha.
    """

    premult: np.ndarray
    alpha: np.ndarray
    is_subject: bool = True
    origin: tuple[int, int] = (0, 0)

    @property
    def box(self) -> tuple[slice, slice]:
        """The layer's rows and columns in the frame."""
        (y, x), (h, w) = self.origin, self.alpha.shape
        return slice(y, y + h), slice(x, x + w)

    def colours(self) -> np.ndarray:
        """Un-premultiplied colours F (0 where alpha is 0), ``(h, w, 3)`` float32."""
        a = rgb(self.alpha)
        return np.divide(self.premult, a, out=np.zeros_like(self.premult), where=a > 1e-6)

    def full(self, shape: tuple[int, int]) -> "Layer":
        """The same layer on a whole ``(H, W)`` frame (origin ``(0, 0)``)."""
        premult = np.zeros((*shape, 3), np.float32)
        alpha = np.zeros(shape, np.float32)
        ov = _overlap(self, (0, 0), shape)
        if ov is not None:
            premult[ov[0]] = self.premult[ov[1]]
            alpha[ov[0]] = self.alpha[ov[1]]
        return Layer(premult, alpha, self.is_subject)


def _overlap(layer: Layer, origin: tuple[int, int], shape: tuple[int, int]) -> tuple[tuple[slice, slice], tuple[slice, slice]] | None:
    """Where ``layer`` meets the region of ``shape`` whose top-left pixel is ``origin`` in the frame:
    ``(region slices, layer slices)``, or None when they do not meet."""
    (ly, lx), (lh, lw) = layer.origin, layer.alpha.shape
    (ry, rx), (rh, rw) = origin, shape
    y0, y1 = max(ly, ry), min(ly + lh, ry + rh)
    x0, x1 = max(lx, rx), min(lx + lw, rx + rw)
    if y1 <= y0 or x1 <= x0:
        return None
    return (slice(y0 - ry, y1 - ry), slice(x0 - rx, x1 - rx)), (slice(y0 - ly, y1 - ly), slice(x0 - lx, x1 - lx))


def _cover(alpha: np.ndarray, layer: Layer, dst: tuple[slice, slice], src: tuple[slice, slice]) -> None:
    """Add a layer's coverage to the subject alpha in place: union for a subject, removal for an occluder."""
    a = layer.alpha[src]
    below = alpha[dst]
    alpha[dst] = np.clip(alpha_union(a, below) if layer.is_subject else (1.0 - a) * below, 0.0, 1.0)


def subject_alpha(layers: list[Layer], shape: tuple[int, int], origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """The alpha :func:`composite_layers` returns for ``layers``, without compositing colours:
    subject layers unioned with :func:`alpha_union`, occluders removing their coverage.

    Args:
        layers: back to front. shape: ``(H, W)`` of the region; origin: its top-left pixel in the
            frame (default: the whole frame).

    Returns:
        ``(H, W)`` float32 in [0, 1] (zeros where no layer reaches).
    """
    alpha = np.zeros(shape, np.float32)
    for layer in layers:
        ov = _overlap(layer, origin, shape)
        if ov is not None:
            _cover(alpha, layer, *ov)
    return alpha


def composite_layers(
    bg: np.ndarray, layers: list[Layer], origin: tuple[int, int] = (0, 0), in_place: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Composite layers back to front over ``bg``.

    Each layer is laid "over" what is below: I <- aF + (1 - a) I, inside its box only (it is
    transparent elsewhere). The subject alpha is the union of the subject layers' alphas
    (a <- a_t + (1 - a_t) a), and an occluder removes its coverage from it (a <- (1 - a_o) a), so
    the returned alpha is exactly the visible subject coverage.

    Args:
        bg: ``(H, W, 3)`` float32 in [0, 1]: the whole frame, or the region of it whose top-left
            pixel is ``origin``.
        layers: back to front.
        in_place: composite into ``bg`` itself (float32 and contiguous, or it is copied), for a
            caller that no longer needs the background; by default ``bg`` is left as it is.

    Returns:
        ``(image, alpha)``: ``(H, W, 3)`` float32 and ``(H, W)`` float32, both in [0, 1].
    """
    image = np.ascontiguousarray(bg, dtype=np.float32) if in_place else bg.astype(np.float32, copy=True)
    alpha = np.zeros(bg.shape[:2], np.float32)
    for layer in layers:
        ov = _overlap(layer, origin, bg.shape[:2])
        if ov is None:
            continue
        dst, src = ov
        under = 1.0 - rgb(layer.alpha[src])
        under *= image[dst]
        under += layer.premult[src]
        # each step maps [0, 1] to [0, 1]; the clip only removes float rounding
        image[dst] = np.clip(under, 0.0, 1.0, out=under)
        _cover(alpha, layer, dst, src)
    return image, alpha


def rgb(alpha: np.ndarray) -> np.ndarray:
    """An ``(H, W)`` alpha repeated over three channels, ``(H, W, 3)`` float32 contiguous: NumPy
    multiplies same-shaped arrays several times faster than it broadcasts over a last axis of 3."""
    a = np.ascontiguousarray(alpha, dtype=np.float32)
    return cv2.merge((a, a, a)) if a.size else np.zeros((*a.shape, 3), np.float32)


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


@dataclass(frozen=True)
class Placement:
    """Where a subject crop lands in the output frame (:func:`place`).

    ``work_hw``: the size the crop is resampled from, ``(h, w)`` pixels: its own size, or the size
    it is first shrunk to with area averaging when it shrinks by more than 2x. ``matrix``: the
    ``(2, 3)`` float64 affine map from work-size pixels to output pixels, anchors applied.
    ``out_hw``: the output ``(H, W)``.
    """

    work_hw: tuple[int, int]
    matrix: np.ndarray
    out_hw: tuple[int, int]

    def support(self) -> tuple[int, int, int, int] | None:
        """``(y0, y1, x0, x1)``, half-open output pixels: the box outside which the bilinear warp of
        the work-size crop is exactly 0 (the image of the crop grown by one pixel, where bilinear
        interpolation can still reach it), clipped to the frame; None when it misses the frame."""
        h, w = self.work_hw
        oh, ow = self.out_hw
        xs = np.array([-1.0, w, -1.0, w])
        ys = np.array([-1.0, -1.0, h, h])
        cx = self.matrix[0, 0] * xs + self.matrix[0, 1] * ys + self.matrix[0, 2]
        cy = self.matrix[1, 0] * xs + self.matrix[1, 1] * ys + self.matrix[1, 2]
        x0, x1 = max(0, math.floor(cx.min())), min(ow, math.ceil(cx.max()) + 1)
        y0, y1 = max(0, math.floor(cy.min())), min(oh, math.ceil(cy.max()) + 1)
        return (y0, y1, x0, x1) if y1 > y0 and x1 > x0 else None

    def visible(self) -> np.ndarray:
        """``(h, w)`` bool over the work-size crop: pixels whose centre lands inside the frame."""
        h, w = self.work_hw
        oh, ow = self.out_hw
        m = self.matrix
        u = np.arange(w, dtype=np.float64)[None, :]
        v = np.arange(h, dtype=np.float64)[:, None]
        x = m[0, 0] * u + m[0, 1] * v + m[0, 2]
        y = m[1, 0] * u + m[1, 1] * v + m[1, 2]
        return (x >= -0.5) & (x < ow - 0.5) & (y >= -0.5) & (y < oh - 0.5)


def place(
    src_hw: tuple[int, int], out_hw: tuple[int, int], scale: float, angle_deg: float,
    center_xy: tuple[float, float], anchor: tuple[str, ...] | list[str] = (),
) -> Placement:
    """The placement of a subject crop of ``src_hw`` pixels (see :func:`placement_matrix`).

    A downscale by more than 2x is done first with area averaging (anti-aliased) to ``work_hw``; the
    matrix then sizes the pre-shrunk crop to the same output size. ``anchor``: output borders
    (``top``, ``bottom``, ``left``, ``right``) the crop's matching edge is moved onto, overriding the
    centre along that axis (use with ``angle_deg = 0``).
    """
    _, s = placement_matrix(src_hw, out_hw, scale, angle_deg, center_xy)
    work = (max(1, round(src_hw[0] * s)), max(1, round(src_hw[1] * s))) if s < 0.5 else tuple(src_hw)
    m, _ = placement_matrix(work, out_hw, scale, angle_deg, center_xy)
    oh, ow = out_hw
    if anchor:
        h, w = work
        corners = m @ np.array([[0, w, 0, w], [0, 0, h, h], [1, 1, 1, 1]], np.float64)
        if "bottom" in anchor:
            m[1, 2] += oh - corners[1].max()
        elif "top" in anchor:
            m[1, 2] -= corners[1].min()
        if "right" in anchor:
            m[0, 2] += ow - corners[0].max()
        elif "left" in anchor:
            m[0, 2] -= corners[0].min()
    return Placement(work, m, tuple(out_hw))


def to_work_size(premult: np.ndarray, alpha: np.ndarray, placement: Placement) -> tuple[np.ndarray, np.ndarray]:
    """A premultiplied crop and its alpha at the placement's work size (area averaging when it is
    smaller; the arrays themselves otherwise). float32."""
    h, w = placement.work_hw
    if alpha.shape == (h, w):
        return premult, alpha
    return (cv2.resize(premult, (w, h), interpolation=cv2.INTER_AREA),
            cv2.resize(alpha, (w, h), interpolation=cv2.INTER_AREA))


def warp_premult(premult: np.ndarray, alpha: np.ndarray, placement: Placement, boxed: bool = True) -> Layer:
    """Warp a premultiplied work-size crop into the output frame (bilinear, zero outside).

    With ``boxed`` only the placement's :meth:`~Placement.support` is resampled and the layer holds
    that box; otherwise the whole frame. Both round source coordinates to OpenCV's 1/32 pixel, so
    they agree to within that rounding.

    Args:
        premult: ``(h, w, 3)`` float32 alpha*F; alpha: ``(h, w)`` float32 in [0, 1], at ``work_hw``.

    Returns:
        A subject :class:`Layer`, premult clipped to [0, alpha]; an empty (0 x 0) layer when the
        crop misses the frame.
    """
    oh, ow = placement.out_hw
    m = placement.matrix
    y0, x0, size = 0, 0, (ow, oh)
    if boxed:
        box = placement.support()
        if box is None:
            return Layer(np.zeros((0, 0, 3), np.float32), np.zeros((0, 0), np.float32), True)
        y0, y1, x0, x1 = box
        m = m.copy()
        m[0, 2] -= x0
        m[1, 2] -= y0
        size = (x1 - x0, y1 - y0)
    w_premult = cv2.warpAffine(premult, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    w_alpha = cv2.warpAffine(alpha, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    np.clip(w_alpha, 0.0, 1.0, out=w_alpha)
    np.maximum(w_premult, 0.0, out=w_premult)
    np.minimum(w_premult, rgb(w_alpha), out=w_premult)
    return Layer(w_premult, w_alpha, True, (y0, x0))


def warp_layer(
    fg: np.ndarray, alpha: np.ndarray, out_hw: tuple[int, int], scale: float, angle_deg: float,
    center_xy: tuple[float, float], anchor: tuple[str, ...] | list[str] = (), boxed: bool = True,
) -> Layer:
    """Warp a subject crop into the output frame as a premultiplied layer.

    Colours are premultiplied before resampling so the transparent surround never bleeds into the
    edge. A downscale by more than 2x is done first with area averaging (anti-aliased), the
    remaining rotation and translation with bilinear interpolation (:func:`place`,
    :func:`warp_premult`).

    Args:
        fg: ``(h, w, 3)`` float32 colours in [0, 1]; alpha: ``(h, w)`` float32 in [0, 1].
        out_hw: output ``(H, W)`` in pixels; scale, angle_deg, center_xy: see :func:`placement_matrix`.
        anchor: see :func:`place`. boxed: hold only the box the warp reaches (default) or the whole frame.
    """
    a = alpha.astype(np.float32)
    premult = fg.astype(np.float32) * rgb(a)
    placement = place(a.shape, out_hw, scale, angle_deg, center_xy, anchor)
    premult, a = to_work_size(premult, a, placement)
    return warp_premult(premult, a, placement, boxed)


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
    support = tight_bbox(subject_alpha)
    if support is None:
        return None
    # every pixel the coverage counts lies in the subject's support: the trial warps fill only that box
    y0, y1, x0, x1 = support
    region = subject_alpha[y0:y1, x0:x1]
    ys, xs = np.nonzero(region > 0.5)
    if ys.size == 0:
        return None
    ys, xs = ys + y0, xs + x0
    oh, ow = subject_alpha.shape
    length = float(max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1))
    place_scale = scale * length / min(oh, ow)
    theta = math.radians(direction_deg)
    n = np.array([math.cos(theta), math.sin(theta)]) * (-1.0 if side >= 0.5 else 1.0)
    cy, cx = float(ys.mean()), float(xs.mean())
    total = float(region.sum())
    best_t, best_gap, best_cov = 0.0, np.inf, 0.0
    a32 = alpha.astype(np.float32)
    for t in np.arange(0.0, 1.61, 0.2):
        c = ((cx + t * n[0] * length / 2) / ow, (cy + t * n[1] * length / 2) / oh)
        m, _ = placement_matrix(a32.shape, (oh, ow), place_scale, angle_deg, c)
        m[0, 2] -= x0
        m[1, 2] -= y0
        occ_a = cv2.warpAffine(a32, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        cov = float((np.clip(occ_a, 0, 1) * region).sum() / total)
        if abs(cov - coverage) < best_gap:
            best_t, best_gap, best_cov = float(t), abs(cov - coverage), cov
    c = ((cx + best_t * n[0] * length / 2) / ow, (cy + best_t * n[1] * length / 2) / oh)
    layer = warp_layer(fg, alpha, (oh, ow), place_scale, angle_deg, c)
    return replace(layer, is_subject=False), best_cov
