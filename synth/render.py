"""Rendering one planned sample: composite, harmonize, augment, write its four files atomically."""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from synth import augment, camera, harmonize, plates
from synth.compositing import Layer, composite_layers, cover_crop, cutout_occluder_layer, occluder_layer, subject_alpha, warp_layer
from synth.edges import band_radius, trimap_from_alpha
from synth.io import atomic_write_bytes, atomic_write_text, encode_jpeg, encode_png, sha256_bytes
from synth.plan import SampleSpec
from synth.prepare import load_background, load_foreground
from synth.recipe import Recipe
from synth.sources import BackgroundItem, ForegroundItem, derived_attributes

OUTPUT_DIRS = {"image": ("images", ".jpg"), "mask": ("masks", ".png"), "alpha": ("alpha", ".png"), "trimap": ("trimaps", ".png")}
PARTS_DIR = ".parts"


@dataclass
class BuildContext:
    """What every worker needs; sent once per worker (process initializer or Ray object store)."""

    recipe: Recipe
    fgs: dict[str, ForegroundItem]
    bgs: dict[str, BackgroundItem]
    cache_dir: Path
    out_dir: Path


class _LRU(OrderedDict):
    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def get_or(self, key, make):
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = make()
        self[key] = value
        if len(self) > self.size:
            self.popitem(last=False)
        return value


_FG_CACHE = _LRU(64)
_BG_CACHE = _LRU(32)


def _fg(ctx: BuildContext, fg_id: str) -> tuple[np.ndarray, np.ndarray]:
    def make():
        f8, a8, _ = load_foreground(ctx.fgs[fg_id], ctx.recipe.edges, ctx.cache_dir)
        return f8.astype(np.float32) / 255.0, a8.astype(np.float32) / 255.0

    return _FG_CACHE.get_or((id(ctx), fg_id), make)


def _bg(ctx: BuildContext, bg_id: str) -> tuple[np.ndarray, np.ndarray | None]:
    def make():
        rgb, hole, _ = load_background(ctx.bgs[bg_id], ctx.cache_dir)
        return rgb, hole

    return _BG_CACHE.get_or((id(ctx), bg_id), make)


def _plate(ctx: BuildContext, spec: SampleSpec, out_hw: tuple[int, int]) -> tuple[np.ndarray, dict[str, Any]]:
    """The sample's background crop (float32 RGB in [0, 1]) and its crop record: the window's
    offsets and zoom, the plate's inpainted share and the crop's (:mod:`synth.plates`)."""
    p = spec.params
    item = ctx.bgs[spec.bg_id]
    photo, hole = _bg(ctx, spec.bg_id)
    drawn = (p["bg_offset_x"], p["bg_offset_y"], p.get("bg_zoom", 1.0))
    if item.clean_crops:
        (ox, oy, zoom), share = plates.choose_window(hole, out_hw, drawn, item.max_inpainted_fraction, item.crop_zoom)
        crop = plates.crop_plate(photo, out_hw, (ox, oy), zoom)
    else:
        ox, oy, zoom = drawn
        crop = cover_crop(photo, out_hw, (ox, oy))
        share = plates.window_share(plates.integral(hole), plates.cover_window(hole.shape, out_hw, (ox, oy))) if hole is not None else 0.0
    rec = {
        "bg_crop_offset_x": round(float(ox), 6), "bg_crop_offset_y": round(float(oy), 6), "bg_crop_zoom": round(float(zoom), 6),
        "bg_inpainted_fraction": item.inpainted_fraction, "crop_inpainted_fraction": round(float(share), 6),
    }
    return crop.astype(np.float32) / 255.0, rec


LIGHT_Z_SIDE = 256
"""The light-mismatch statistic is measured at most this many pixels on the longer side (area
averaging): it is a mean over regions, and at 1024 px a full-resolution pass costs a fifth of a sample."""


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
    surround band, measured at :data:`LIGHT_Z_SIDE` px on the longer side (outputs that size or
    smaller are measured as they are)."""
    h, w = alpha.shape
    f = LIGHT_Z_SIDE / max(h, w)
    if f < 1.0:
        size = (max(1, round(w * f)), max(1, round(h * f)))
        before, after, alpha, plate = (cv2.resize(np.ascontiguousarray(x), size, interpolation=cv2.INTER_AREA) for x in (before, after, alpha, plate))
    band = harmonize.surround_band(alpha, harmonize.DEFAULT_PRIOR.band_fraction)
    if not band.any() or alpha.max() <= 0:
        return None, None
    band_stats = harmonize.illumination_stats(plate, band)
    return _light_z(before, alpha, band_stats), _light_z(after, alpha, band_stats)


def part_path(out_dir: Path, sample_id: str) -> Path:
    """Commit record of a finished sample (written last, atomically)."""
    return out_dir / PARTS_DIR / f"{sample_id}.json"


def render_sample(ctx: BuildContext, spec: SampleSpec) -> dict[str, Any]:
    """Render ``spec`` and write ``images/``, ``masks/``, ``alpha/``, ``trimaps/`` files, then its
    commit record.

    Order of operations: background crop (cover crop, or a window chosen by its inpainted share and
    zoom for clean plates); depth of field (lens blur of the plate only); subjects warped
    (premultiplied) in their depth order; an optional contact shadow on the plate; per-subject
    harmonization (``illumination``, ``reinhard`` or ``histogram``), optional blur and noise
    matching; an optional occluder on top (a real cut-out, or a plate patch); composite
    I = aF + (1 - a)B layer by layer with the subject alpha as the union of the subject alphas;
    ``poisson`` blending and light wrap on the composite; photometric augmentations and sensor
    noise on the whole image; one JPEG encoding. mask = alpha >= 0.5; the trimap comes from the final
    alpha with ``edges.trimap_band``. The sample's attributes are the primary subject's metadata,
    its source photo's mask attributes as ``source_<name>``, and the composite's own
    (:func:`synth.sources.derived_attributes` of the written mask).

    Returns:
        The manifest record of the sample (also written to ``.parts/<sample_id>.json``).
    """
    r = ctx.recipe
    out_hw = tuple(r.output.size)
    p = spec.params
    plate, crop_rec = _plate(ctx, spec, out_hw)
    if p.get("defocus_radius_px", 0.0) > 0:  # depth of field: the scene behind the subject is out of focus
        plate = camera.defocus(plate, p["defocus_radius_px"])
    noise_rng = np.random.default_rng(p["noise_seed"])
    h = r.harmonization
    method, strength = p["harmonization_method"], p["harmonization_strength"]

    order = sorted(range(len(spec.fg_ids)), key=lambda j: p["subject_depth"][j])
    naive: list[Layer] = []
    for j in order:
        f, a = _fg(ctx, spec.fg_ids[j])
        naive.append(warp_layer(
            f, a, out_hw, p["subject_scale"][j], p["subject_rotation_deg"][j],
            (p["subject_center_x"][j], p["subject_center_y"][j]), p["subject_anchor"][j],
        ))
    # the subjects' union alpha, which the shadow and the occluder placement both read
    union = subject_alpha(naive, out_hw) if naive and (p.get("shadow_opacity", 0.0) > 0 or p.get("occluded")) else None
    if p.get("shadow_opacity", 0.0) > 0 and naive:
        rows = np.flatnonzero(union.max(axis=1) > 0.5)
        height = float(rows[-1] - rows[0] + 1) if rows.size else 0.0
        plate = camera.contact_shadow(plate, union, p["shadow_opacity"], p["shadow_blur"] * height, p["shadow_offset"] * height)
    plate_stats = harmonize.plate_lab_stats(plate) if method == "reinhard" else None

    final: list[Layer] = []
    matched_blur, matched_noise = [], []
    for layer in naive:
        colours = layer.colours()
        if method == "illumination":
            colours, _ = harmonize.illumination_harmonize(colours, layer.alpha, plate, strength)
        elif method == "reinhard":
            colours = harmonize.reinhard(colours, layer.alpha, plate, strength, plate_stats)
        elif method == "histogram":
            colours = harmonize.histogram_match(colours, layer.alpha, plate, strength)
        sigma_b = sigma_n = 0.0
        if h.match_blur:
            colours, sigma_b = harmonize.match_blur(colours, layer.alpha, plate)
        if h.match_noise:
            colours, sigma_n = harmonize.match_noise(colours, layer.alpha, plate, noise_rng)
        matched_blur.append(sigma_b)
        matched_noise.append(sigma_n)
        final.append(Layer(colours * layer.alpha[..., None], layer.alpha, True))

    occlusion_achieved = None
    if p.get("occluded"):
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
                occ_plate.astype(np.float32) / 255.0, union, p["occlusion_coverage"],
                p["occlusion_angle_deg"], p["occlusion_side"], r.occlusion.feather_px,
            )
        if occ is not None:
            naive.append(occ)
            final.append(occ)

    image, alpha = composite_layers(plate, final)
    box = harmonize.subject_box(alpha)
    light_before = light_after = None
    if box is not None:
        if method == "poisson":
            image = harmonize.poisson_blend(image, alpha, plate, h.poisson_mode, strength)
        if h.light_wrap.enabled:
            image = harmonize.light_wrap(image, alpha, plate, h.light_wrap.radius_px, h.light_wrap.strength)
        image0, _ = composite_layers(plate, naive)
        light_before, light_after = _light_mismatch(image0, image, alpha, plate)

    if (p["brightness"], p["contrast"], p["saturation"], p["hue_deg"]) != (1.0, 1.0, 1.0, 0.0):
        image = augment.color_jitter(image, p["brightness"], p["contrast"], p["saturation"], p["hue_deg"])
    image = augment.gaussian_blur(image, p["blur_sigma"])
    image = augment.gaussian_noise(image, p["noise_sigma"], noise_rng)
    if p.get("sensor_shot", 0.0) > 0 or p.get("sensor_read", 0.0) > 0:  # one sensor for the whole frame
        image = camera.sensor_noise(image, p["sensor_shot"], p["sensor_read"], noise_rng)

    img8 = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    alpha8 = np.clip(np.rint(alpha * 255.0), 0, 255).astype(np.uint8)
    mask8 = np.where(alpha >= 0.5, 255, 0).astype(np.uint8)
    radius = band_radius(out_hw, r.edges.trimap_band.px, r.edges.trimap_band.fraction)
    tri8 = trimap_from_alpha(alpha8, radius)

    blobs = {
        "image": encode_jpeg(img8, p["jpeg_quality"]),
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
            "subject_area_fraction": round(float((mask8 > 0).mean()), 6),
            # the composite's own mask-derived attributes; the source photo's are source_<name>
            "attributes": {**(dict(primary.attributes) if primary else {}), **derived_attributes(mask8 > 0)},
            "params": dict(p),
            "matched_blur_sigma": matched_blur,
            "matched_noise_sigma": matched_noise,
            "light_z_before": light_before,
            "light_z_after": light_after,
            "occlusion_achieved": None if occlusion_achieved is None else round(float(occlusion_achieved), 6),
            **crop_rec,
        }
    )
    atomic_write_text(part_path(ctx.out_dir, spec.sample_id), json.dumps(record, sort_keys=True))
    return record
