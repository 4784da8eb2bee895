"""Rendering one planned sample: composite, harmonize, augment, write its four files atomically.

The renderer does each step at the smallest size that gives the same picture:

- the plate is cut from its photo in 8 bits, and lens-blurred at the photo's own resolution when
  the photo is enlarged to the output (:func:`_plate`);
- a subject is placed by one affine map (:func:`synth.compositing.place`); its illumination is
  read and corrected on its own (work-size) crop, and only the box its warp reaches is resampled
  (:func:`synth.compositing.warp_premult`);
- the surround band, and the light-mismatch statistic of the report, are read on a grid
  :data:`LIGHT_Z_SIDE` pixels on the longer side (block means), where the old full-frame passes
  cost a fifth of a sample;
- the trimap and the mask attributes work on the subject's box (exactly the whole frame's result).

Only the plate, the steps that act on the whole photo (colour jitter, blur, noise, sensor noise) and
the encoders touch every pixel. ``tests/test_render.py`` bounds the difference to the whole-frame
float32 renderer it replaced, on real composites.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from synth import augment, camera, harmonize, plates
from synth.augment import to_uint8
from synth.compositing import (
    Layer, Placement, composite_layers, cover_crop, cutout_occluder_layer, occluder_layer, place, rgb, subject_alpha, to_work_size, warp_premult,
)
from synth.edges import band_radius, trimap_from_alpha
from synth.io import atomic_write_bytes, atomic_write_text, encode_jpeg, encode_png, sha256_bytes
from synth.plan import SampleSpec
from synth.prepare import load_background, load_foreground
from synth.recipe import Recipe
from synth.sources import BackgroundItem, ForegroundItem, derived_attributes

OUTPUT_DIRS = {"image": ("images", ".jpg"), "mask": ("masks", ".png"), "alpha": ("alpha", ".png"), "trimap": ("trimaps", ".png")}
PARTS_DIR = ".parts"
RENDER_VERSION = 3
"""Raised whenever the same recipe and inputs render other bytes, so an interrupted build is never
finished by another renderer (it is part of the build's fingerprint). 2: boxes, crops and grid
statistics, the 16-bit normal sampler, sensor noise on the 8-bit image (``tests/test_render.py``
bounds the change). 3: Gaussian and sensor noise on the 8-bit image by per-level tables of 256
normal atoms (:func:`synth.augment.noise_by_level`; ``tests/test_scene.py`` and
``tests/test_augment.py`` bound the change)."""


@dataclass
class BuildContext:
    """What every worker needs; sent once per worker (process initializer or Ray object store)."""

    recipe: Recipe
    fgs: dict[str, ForegroundItem]
    bgs: dict[str, BackgroundItem]
    cache_dir: Path
    out_dir: Path


class _LRU(OrderedDict):
    """The ``size`` most recently used prepared inputs of this process, per build context.

    An entry holds its context, and a hit must be that same object: a context's ``id`` is reused
    once it is freed, and a later build in the same process (another recipe, other photos under
    the same ids) must never read an earlier one's arrays."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def get_or(self, ctx, item_id: str, make):
        key = (id(ctx), item_id)
        hit = self.get(key)
        if hit is not None and hit[0] is ctx:
            self.move_to_end(key)
            return hit[1]
        value = make()
        self[key] = (ctx, value)
        self.move_to_end(key)
        if len(self) > self.size:
            self.popitem(last=False)
        return value


_FG_CACHE = _LRU(64)
_BG_CACHE = _LRU(32)


def _unit(x8: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [0, 1], exactly ``x8.astype(np.float32) / 255`` (by table)."""
    return cv2.LUT(x8, augment.UNIT_8)


def _fg(ctx: BuildContext, fg_id: str) -> tuple[np.ndarray, np.ndarray]:
    def make():
        f8, a8, _ = load_foreground(ctx.fgs[fg_id], ctx.recipe.edges, ctx.cache_dir)
        return _unit(f8), _unit(a8)

    return _FG_CACHE.get_or(ctx, fg_id, make)


def _bg(ctx: BuildContext, bg_id: str) -> tuple[np.ndarray, np.ndarray | None]:
    def make():
        rgb, hole, _ = load_background(ctx.bgs[bg_id], ctx.cache_dir)
        return rgb, hole

    return _BG_CACHE.get_or(ctx, bg_id, make)


def _plate(ctx: BuildContext, spec: SampleSpec, out_hw: tuple[int, int]) -> tuple[np.ndarray, dict[str, Any]]:
    """The sample's background crop (float32 RGB in [0, 1]), depth of field applied, and its crop
    record: the window's offsets and zoom, the plate's inpainted share and the crop's
    (:mod:`synth.plates`).

    Depth of field (:func:`synth.camera.defocus`, radius ``defocus_radius_px`` output pixels) runs
    on the whole photo at its own resolution, with the radius in photo pixels, when the photo has no
    more pixels than the output (it is enlarged to it): the same lens blur on up to (gain)^2 fewer
    pixels, and the frame's edges see the scene beyond them rather than a reflection. A larger photo
    is cropped first and blurred at the output size."""
    p = spec.params
    item = ctx.bgs[spec.bg_id]
    photo, hole = _bg(ctx, spec.bg_id)
    drawn = (p["bg_offset_x"], p["bg_offset_y"], p.get("bg_zoom", 1.0))
    radius = p.get("defocus_radius_px", 0.0)
    if item.clean_crops:
        (ox, oy, zoom), share = plates.choose_window(hole, out_hw, drawn, item.max_inpainted_fraction, item.crop_zoom)
    else:  # a plain cover crop, whatever zoom was drawn
        ox, oy, zoom = drawn
        share = plates.window_share(plates.integral(hole), plates.cover_window(hole.shape, out_hw, (ox, oy))) if hole is not None else 0.0
    (h, w), (oh, ow) = photo.shape[:2], out_hw
    native = radius > 0 and h * w <= oh * ow
    if native:  # output pixels per photo pixel, max(oh / h, ow / w) / zoom, is then at least 1
        photo = camera.defocus(_unit(photo), radius * (min(zoom, 1.0) if item.clean_crops else 1.0) / max(oh / h, ow / w))
    crop = plates.crop_plate(photo, out_hw, (ox, oy), zoom) if item.clean_crops else cover_crop(photo, out_hw, (ox, oy))
    if crop.dtype == np.uint8:
        crop = _unit(crop)  # a table lookup: cv2.LUT reads the view in place, the same values
    if radius > 0 and not native:
        crop = camera.defocus(crop, radius)
    rec = {
        "bg_crop_offset_x": round(float(ox), 6), "bg_crop_offset_y": round(float(oy), 6), "bg_crop_zoom": round(float(zoom), 6),
        "bg_inpainted_fraction": item.inpainted_fraction, "crop_inpainted_fraction": round(float(share), 6),
    }
    # a cover crop is a view of the enlarged photo: copied, as OpenCV's per-pixel passes (colour jitter's
    # transform) run faster on a contiguous frame, and round the same only there
    return np.ascontiguousarray(crop, dtype=np.float32), rec


LIGHT_Z_SIDE = 256
"""The surround band and the light-mismatch statistic are read on a grid of block means, ``f x f``
output pixels a cell with ``f = ceil(longer side / LIGHT_Z_SIDE)`` (256 cells at 512 and 1024):
both are means over regions, and at 1024 px full-resolution passes cost a fifth of a sample."""


@dataclass(frozen=True)
class _Grid:
    """The block-mean grid of a frame: ``f`` output pixels a cell, ``hw`` cells."""

    f: int
    hw: tuple[int, int]

    @classmethod
    def of(cls, out_hw: tuple[int, int]) -> "_Grid":
        f = max(1, -(-max(out_hw) // LIGHT_Z_SIDE))
        return cls(f, (max(1, out_hw[0] // f), max(1, out_hw[1] // f)))

    def _rows(self, x: np.ndarray, Y0: int, Y1: int) -> np.ndarray:
        """Block means of the cell rows ``Y0 .. Y1 - 1`` of a frame, every cell of each row
        (columns past the last whole cell dropped)."""
        f, w = self.f, self.hw[1]
        block = x[Y0 * f : Y1 * f, : w * f]
        if f == 1:
            return np.ascontiguousarray(block, dtype=np.float32)
        return cv2.resize(np.ascontiguousarray(block), (w, Y1 - Y0), interpolation=cv2.INTER_AREA)

    def frame(self, x: np.ndarray) -> np.ndarray:
        """Block means of a whole frame (rows and columns past the last whole cell dropped)."""
        return self._rows(x, 0, self.hw[0])

    def update(self, low: np.ndarray, x: np.ndarray, box: tuple[slice, slice]) -> np.ndarray:
        """:meth:`frame` of ``x`` (``(H, W[, C])`` float32), given ``low``: the block means of a frame
        equal to ``x`` outside ``box`` (rows, columns). Only the rows of cells ``box`` touches are
        averaged again, whole: OpenCV's integer-factor area resize computes each row of cells on its
        own, but adds a cell's pixels in another order in its vector loop than in its tail, so a
        row as wide as the frame's is what gives exactly :meth:`frame`'s values (tested)."""
        out = low.copy()
        cells = self.cells((box[0].start, box[1].start), (box[0].stop - box[0].start, box[1].stop - box[1].start))
        if cells is not None:
            out[cells[0] : cells[1]] = self._rows(x, cells[0], cells[1])
        return out

    def resample(self, values: np.ndarray, placement: Placement) -> np.ndarray:
        """Work-size values of a placed crop (``(h, w)`` or ``(h, w, 3)`` float32, any sign)
        resampled onto the grid, zero outside the crop, as the grid's block means would average
        them: area-averaged to the grid's scale first where that shrinks the crop, then warped
        bilinearly (cell ``X`` is centred on output pixel ``f X + (f - 1) / 2``)."""
        s = np.array([[1.0 / self.f, 0.0], [0.0, 1.0 / self.f]])
        m = np.hstack([s @ placement.matrix[:, :2], (s @ placement.matrix[:, 2] - (self.f - 1) / (2.0 * self.f))[:, None]])
        scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
        h, w = values.shape[:2]
        if scale < 1.0:
            nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
            values = cv2.resize(values, (nw, nh), interpolation=cv2.INTER_AREA)
            # shrunk pixel u' is centred on crop pixel (u' + 0.5) w / nw - 0.5
            m = m @ np.array([[w / nw, 0.0, 0.5 * w / nw - 0.5], [0.0, h / nh, 0.5 * h / nh - 0.5], [0.0, 0.0, 1.0]])
        return cv2.warpAffine(values, m, self.hw[::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def cells(self, origin: tuple[int, int], shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
        """``(Y0, Y1, X0, X1)``: the cells a box of ``shape`` at ``origin`` touches; None if none."""
        (y, x), (h, w), f = origin, shape, self.f
        Y0, X0 = y // f, x // f
        Y1, X1 = min(self.hw[0], -(-(y + h) // f)), min(self.hw[1], -(-(x + w) // f))
        return (Y0, Y1, X0, X1) if Y1 > Y0 and X1 > X0 else None

    def placed(self, values: np.ndarray, origin: tuple[int, int]) -> np.ndarray:
        """Block means of a frame that holds ``values`` (``(h, w)`` or ``(h, w, C)``) at ``origin``
        and zeros elsewhere: :meth:`frame` of that frame, computed on its box. Equal to it up to
        float32 rounding (one channel at ``f = 2`` moved by up to 6e-8 on real masks, as OpenCV's
        vector loop adds a cell's pixels in another order than its tail; tested within 1.2e-7)."""
        out = np.zeros((*self.hw, *values.shape[2:]), np.float32)
        cells = self.cells(origin, values.shape[:2])
        if cells is None:
            return out
        Y0, Y1, X0, X1 = cells
        f = self.f
        region = np.zeros(((Y1 - Y0) * f, (X1 - X0) * f, *values.shape[2:]), np.float32)
        ry, rx = origin[0] - Y0 * f, origin[1] - X0 * f
        hh, ww = min(values.shape[0], region.shape[0] - ry), min(values.shape[1], region.shape[1] - rx)
        region[ry : ry + hh, rx : rx + ww] = values[:hh, :ww]
        out[Y0:Y1, X0:X1] = region if f == 1 else cv2.resize(region, (X1 - X0, Y1 - Y0), interpolation=cv2.INTER_AREA)
        return out


def _light_z(image: np.ndarray, alpha: np.ndarray, band_stats: np.ndarray) -> float | None:
    """How unusual the subject's light is for its surround, in standard deviations of real photos:
    the root mean square over the four :data:`synth.harmonize.ILLUMINATION_STATS` of the residual
    against :data:`synth.harmonize.DEFAULT_PRIOR`, each divided by its residual SD (real photos
    give about 1). ``band_stats``: the plate's statistics in the subject's surround band. None for
    an empty subject or surround."""
    prior = harmonize.DEFAULT_PRIOR
    resid = harmonize.illumination_stats(image, alpha) - prior.predict(band_stats)
    z = resid / np.asarray(prior.residual_sd)
    return round(float(np.sqrt(np.mean(z * z))), 6) if np.all(np.isfinite(z)) else None


def _light_mismatch(before: np.ndarray, after: np.ndarray, alpha: np.ndarray, plate: np.ndarray) -> tuple[float | None, float | None]:
    """:func:`_light_z` of the composite before and after harmonization, against the plate's
    surround band; all four ``(h, w[, 3])`` on the :class:`_Grid`."""
    band = harmonize.surround_band(alpha, harmonize.DEFAULT_PRIOR.band_fraction)
    if not band.any() or alpha.max() <= 0:
        return None, None
    band_stats = harmonize.illumination_stats(plate, band)
    return _light_z(before, alpha, band_stats), _light_z(after, alpha, band_stats)


def _union_box(layers: list[Layer]) -> tuple[slice, slice] | None:
    """Rows and columns of the frame covered by any non-empty layer's box."""
    boxes = [layer.box for layer in layers if layer.alpha.size]
    if not boxes:
        return None
    return (slice(min(b[0].start for b in boxes), max(b[0].stop for b in boxes)),
            slice(min(b[1].start for b in boxes), max(b[1].stop for b in boxes)))


def _before_harmonization(composed_low: np.ndarray, final: list[Layer], change_low: list[np.ndarray | None], grid: _Grid) -> np.ndarray:
    """The composite before harmonization, on the grid: the block means of the harmonized
    composite plus each subject's change of premultiplied colour (as pasted minus as harmonized),
    times what the layers above it let through (their alphas' block means). Exact but for how the
    change and the covering layers' edges are resampled, which the change's size (the
    harmonization's) scales down."""
    before = composed_low.copy()
    for i, change in enumerate(change_low):
        if change is None:
            continue
        through = None
        for above in final[i + 1 :]:
            if above.alpha.size:
                t = 1.0 - grid.placed(above.alpha, above.origin)
                through = t if through is None else through * t
        before += change if through is None else change * rgb(through)
    return before


@dataclass
class Rendered:
    """One rendered sample before encoding.

    ``image``: ``(H, W, 3)`` uint8 sRGB; ``alpha``: ``(H, W)`` float32 in [0, 1] (the visible
    subject coverage); ``box``: rows and columns outside which ``alpha`` is 0 (None for a
    negative); ``info``: the record fields the renderer measured (crop, matched blur and noise,
    light mismatch before/after, occlusion achieved)."""

    image: np.ndarray
    alpha: np.ndarray
    box: tuple[slice, slice] | None
    info: dict[str, Any]


def render_pixels(ctx: BuildContext, spec: SampleSpec) -> Rendered:
    """The pixels of ``spec``: composite, harmonization, camera and photometric effects.

    Order of operations: background crop (cover crop, or a window chosen by its inpainted share and
    zoom for clean plates) with depth of field (lens blur of the plate only); subjects placed
    (premultiplied) in their depth order; an optional contact shadow on the plate; per-subject
    harmonization (``illumination`` on the subject's own crop before it is warped; ``reinhard`` or
    ``histogram`` on its warped box), optional blur and noise matching; an optional occluder on top
    (a real cut-out, or a plate patch); composite I = aF + (1 - a)B layer by layer with the
    subject alpha as the union of the subject alphas; ``poisson`` blending and light wrap on the
    composite; colour jitter and blur on the whole image; 8-bit rounding; Gaussian noise, then
    sensor noise, on the rounded image (each by a per-level table of 256 normal atoms,
    :func:`synth.augment.noise_by_level`).
    """
    r = ctx.recipe
    out_hw = tuple(r.output.size)
    p = spec.params
    plate, crop_rec = _plate(ctx, spec, out_hw)
    noise_rng = np.random.default_rng(p["noise_seed"])
    h = r.harmonization
    method, strength = p["harmonization_method"], p["harmonization_strength"]
    grid = _Grid.of(out_hw)

    order = sorted(range(len(spec.fg_ids)), key=lambda j: p["subject_depth"][j])
    crops = []  # per subject: work-size premultiplied colours, alpha, placement, colours (None: divide)
    for j in order:
        f, a = _fg(ctx, spec.fg_ids[j])
        pl = place(a.shape, out_hw, p["subject_scale"][j], p["subject_rotation_deg"][j],
                   (p["subject_center_x"][j], p["subject_center_y"][j]), p["subject_anchor"][j])
        premult, aw = to_work_size(f * rgb(a), a, pl)
        crops.append((premult, aw, pl, f if aw is a else None))
    shadow = p.get("shadow_opacity", 0.0) > 0 and bool(crops)
    # illumination works on the crops: the full-size subjects as pasted are needed only for a
    # shadow (cast before harmonization) or for work on the warped box
    boxed = method in ("reinhard", "histogram") or h.match_blur or h.match_noise
    naive = [warp_premult(c[0], c[1], c[2]) for c in crops] if shadow or boxed or method != "illumination" else None
    union = None  # the subjects' union alpha, which the shadow and the occluder placement both read
    if shadow:
        union = subject_alpha(naive, out_hw)
        rows = np.flatnonzero(union.max(axis=1) > 0.5)
        height = float(rows[-1] - rows[0] + 1) if rows.size else 0.0
        plate = camera.contact_shadow(plate, union, p["shadow_opacity"], p["shadow_blur"] * height, p["shadow_offset"] * height)
    plate_low = grid.frame(plate)
    plate_stats = harmonize.plate_lab_stats(plate) if method == "reinhard" else None

    final: list[Layer] = []
    change_low: list[np.ndarray | None] = []  # per subject, on the grid: premultiplied colour as pasted - as harmonized
    matched_blur, matched_noise = [], []
    for i, (premult, aw, pl, colours) in enumerate(crops):
        change = None
        if method == "illumination":
            # the subject's light, read over its visible pixels on its own crop; the scene's, in the
            # surround band of the pasted subject (on the grid)
            colours = Layer(premult, aw).colours() if colours is None else colours
            seen = aw * pl.visible()
            band = harmonize.surround_band(grid.resample(aw, pl), harmonize.DEFAULT_PRIOR.band_fraction)
            delta = harmonize.illumination_correction(
                harmonize.illumination_stats(colours, seen), harmonize.illumination_stats(plate_low, band), strength,
            )
            if np.any(delta):
                harmonized = harmonize.apply_illumination(colours, aw, delta, seen) * rgb(aw)
                change = premult - harmonized
                premult = harmonized
            layer = warp_premult(premult, aw, pl)
        else:
            layer = naive[i]
        sigma_b = sigma_n = 0.0
        if boxed:
            box_colours = layer.colours()
            if method == "reinhard":
                box_colours = harmonize.reinhard(box_colours, layer.alpha, plate, strength, plate_stats)
            elif method == "histogram":
                box_colours = harmonize.histogram_match(box_colours, layer.alpha, plate, strength)
            if h.match_blur:
                box_colours, sigma_b = harmonize.match_blur(box_colours, layer.alpha, plate)
            if h.match_noise:
                box_colours, sigma_n = harmonize.match_noise(box_colours, layer.alpha, plate, noise_rng)
            layer = Layer(box_colours * rgb(layer.alpha), layer.alpha, True, layer.origin)
        if naive is not None:  # the full-size change, block-averaged exactly
            change_low.append(grid.placed(naive[i].premult - layer.premult, layer.origin) if layer.alpha.size else None)
        else:
            change_low.append(None if change is None else grid.resample(change, pl))
        matched_blur.append(sigma_b)
        matched_noise.append(sigma_n)
        final.append(layer)

    occlusion_achieved = None
    if p.get("occluded"):
        union = subject_alpha(final, out_hw) if union is None else union  # harmonization keeps every alpha
        if "occluder_fg_id" in p:
            f, a = _fg(ctx, p["occluder_fg_id"])
            res = cutout_occluder_layer(
                f, a, union, p["occluder_scale"], p["occluder_rotation_deg"], p["occlusion_coverage"],
                p["occlusion_angle_deg"], p["occlusion_side"],
            )
            occ, occlusion_achieved = res if res is not None else (None, None)
        else:
            occ_plate = cover_crop(_bg(ctx, p["occluder_bg_id"])[0], out_hw, (p["occluder_offset_x"], p["occluder_offset_y"]))
            occ = occluder_layer(
                _unit(np.ascontiguousarray(occ_plate)), union, p["occlusion_coverage"],
                p["occlusion_angle_deg"], p["occlusion_side"], r.occlusion.feather_px,
            )
        if occ is not None:
            final.append(occ)

    # the plate is read again only by poisson blending and light wrap; otherwise composite into it
    image, alpha = composite_layers(plate, final, in_place=method != "poisson" and not h.light_wrap.enabled)
    box = _union_box(final)
    light_before = light_after = None
    if box is not None and alpha[box].max() > 0:
        composed_low = grid.update(plate_low, image, box)  # the composite is the plate outside the box
        if method == "poisson":
            image = harmonize.poisson_blend(image, alpha, plate, h.poisson_mode, strength)
        if h.light_wrap.enabled:
            image = harmonize.light_wrap(image, alpha, plate, h.light_wrap.radius_px, h.light_wrap.strength)
        after_low = grid.frame(image) if method == "poisson" or h.light_wrap.enabled else composed_low
        light_before, light_after = _light_mismatch(
            _before_harmonization(composed_low, final, change_low, grid), after_low,
            grid.placed(alpha[box], (box[0].start, box[1].start)), plate_low,
        )

    if (p["brightness"], p["contrast"], p["saturation"], p["hue_deg"]) != (1.0, 1.0, 1.0, 0.0):
        image = augment.color_jitter(image, p["brightness"], p["contrast"], p["saturation"], p["hue_deg"])
    image = augment.gaussian_blur(image, p["blur_sigma"])
    image8 = augment.gaussian_noise(to_uint8(image), p["noise_sigma"], noise_rng)
    if p.get("sensor_shot", 0.0) > 0 or p.get("sensor_read", 0.0) > 0:  # one sensor for the whole frame, last
        image8 = camera.sensor_noise(image8, p["sensor_shot"], p["sensor_read"], noise_rng)

    info = {
        "matched_blur_sigma": matched_blur,
        "matched_noise_sigma": matched_noise,
        "light_z_before": light_before,
        "light_z_after": light_after,
        "occlusion_achieved": None if occlusion_achieved is None else round(float(occlusion_achieved), 6),
        **crop_rec,
    }
    return Rendered(image8, alpha, box, info)


def part_path(out_dir: Path, sample_id: str) -> Path:
    """Commit record of a finished sample (written last, atomically)."""
    return out_dir / PARTS_DIR / f"{sample_id}.json"


def render_sample(ctx: BuildContext, spec: SampleSpec) -> dict[str, Any]:
    """Render ``spec`` (:func:`render_pixels`) and write ``images/``, ``masks/``, ``alpha/``,
    ``trimaps/`` files, then its commit record.

    One JPEG encoding of the image; mask = alpha >= 0.5; the trimap comes from the final alpha with
    ``edges.trimap_band``. The sample's attributes are the primary subject's metadata, its source
    photo's mask attributes as ``source_<name>``, and the composite's own
    (:func:`synth.sources.derived_attributes` of the written mask).

    Returns:
        The manifest record of the sample (also written to ``.parts/<sample_id>.json``).
    """
    r = ctx.recipe
    out_hw = tuple(r.output.size)
    p = spec.params
    px = render_pixels(ctx, spec)
    alpha8 = np.zeros(out_hw, np.uint8)
    mask8 = np.zeros(out_hw, np.uint8)
    if px.box is not None:
        alpha8[px.box] = to_uint8(px.alpha[px.box])
        mask8[px.box] = (px.alpha[px.box] >= 0.5).view(np.uint8) * np.uint8(255)  # 255 where alpha >= 0.5, else 0
    radius = band_radius(out_hw, r.edges.trimap_band.px, r.edges.trimap_band.fraction)
    tri8 = trimap_from_alpha(alpha8, radius)
    mask = mask8 > 0

    blobs = {
        "image": encode_jpeg(px.image, p["jpeg_quality"]),
        "mask": encode_png(mask8),
        "alpha": encode_png(alpha8),
        "trimap": encode_png(tri8),
    }
    record: dict[str, Any] = {"sample_id": spec.sample_id, "index": spec.index, "split": spec.split}
    for key, (folder, ext) in OUTPUT_DIRS.items():
        rel = f"{folder}/{spec.sample_id}{ext}"
        atomic_write_bytes(ctx.out_dir / rel, blobs[key])
        record[f"{key}_path"] = rel
        record[f"sha256_{key}"] = sha256_bytes(blobs[key])
    primary = ctx.fgs[spec.fg_ids[0]] if spec.fg_ids else None
    record.update(
        {
            "has_subject": bool(spec.fg_ids),
            "n_subjects": len(spec.fg_ids),
            "height": out_hw[0],
            "width": out_hw[1],
            "fg_id": primary.fg_id if primary else None,
            "fg_ids": list(spec.fg_ids),
            "bg_id": spec.bg_id,
            "subject_area_fraction": round(float(np.count_nonzero(mask) / mask.size), 6),
            # the composite's own mask-derived attributes; the source photo's are source_<name>
            "attributes": {**(dict(primary.attributes) if primary else {}), **derived_attributes(mask)},
            "params": dict(p),
            **px.info,
        }
    )
    atomic_write_text(part_path(ctx.out_dir, spec.sample_id), json.dumps(record, sort_keys=True))
    return record
