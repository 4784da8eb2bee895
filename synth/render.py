"""Rendering one planned sample: composite, harmonize, augment, write its four files atomically."""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from synth import augment, harmonize
from synth.compositing import Layer, composite_layers, cover_crop, occluder_layer, warp_layer
from synth.edges import band_radius, trimap_from_alpha
from synth.io import atomic_write_bytes, atomic_write_text, encode_jpeg, encode_png, sha256_bytes
from synth.plan import SampleSpec
from synth.prepare import load_background, load_foreground
from synth.recipe import Recipe
from synth.sources import BackgroundItem, ForegroundItem

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


def _bg(ctx: BuildContext, bg_id: str) -> np.ndarray:
    return _BG_CACHE.get_or((id(ctx), bg_id), lambda: load_background(ctx.bgs[bg_id], ctx.cache_dir)[0])


def part_path(out_dir: Path, sample_id: str) -> Path:
    """Commit record of a finished sample (written last, atomically)."""
    return out_dir / PARTS_DIR / f"{sample_id}.json"


def _nan_to_none(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def render_sample(ctx: BuildContext, spec: SampleSpec) -> dict[str, Any]:
    """Render ``spec`` and write ``images/``, ``masks/``, ``alpha/``, ``trimaps/`` files, then its
    commit record.

    Order of operations: background cover-crop; subjects warped (premultiplied) and stacked in
    their depth order; per-subject colour harmonization (``reinhard`` or ``histogram``), blur and
    noise matching; an optional scene occluder on top; composite I = aF + (1 - a)B layer by layer
    with the subject alpha as the union of the subject alphas; ``poisson`` blending and light wrap
    on the composite; photometric augmentations on the image only. mask = alpha >= 0.5; the trimap
    comes from the final alpha with ``edges.trimap_band``.

    Returns:
        The manifest record of the sample (also written to ``.parts/<sample_id>.json``).
    """
    r = ctx.recipe
    out_hw = tuple(r.output.size)
    p = spec.params
    plate = cover_crop(_bg(ctx, spec.bg_id), out_hw, (p["bg_offset_x"], p["bg_offset_y"])).astype(np.float32) / 255.0
    noise_rng = np.random.default_rng(p["noise_seed"])
    plate_stats = harmonize.plate_lab_stats(plate)
    h = r.harmonization
    method, strength = p["harmonization_method"], p["harmonization_strength"]

    naive: list[Layer] = []
    final: list[Layer] = []
    matched_blur, matched_noise = [], []
    for j in sorted(range(len(spec.fg_ids)), key=lambda j: p["subject_depth"][j]):
        f, a = _fg(ctx, spec.fg_ids[j])
        layer = warp_layer(
            f, a, out_hw, p["subject_scale"][j], p["subject_rotation_deg"][j],
            (p["subject_center_x"][j], p["subject_center_y"][j]), p["subject_anchor"][j],
        )
        naive.append(layer)
        colours = layer.colours()
        if method == "reinhard":
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

    if p.get("occluded"):
        _, subject_alpha = composite_layers(plate, naive)
        occ_plate = cover_crop(_bg(ctx, p["occluder_bg_id"]), out_hw, (p["occluder_offset_x"], p["occluder_offset_y"]))
        occ = occluder_layer(
            occ_plate.astype(np.float32) / 255.0, subject_alpha, p["occlusion_coverage"],
            p["occlusion_angle_deg"], p["occlusion_side"], r.occlusion.feather_px,
        )
        if occ is not None:
            naive.append(occ)
            final.append(occ)

    image, alpha = composite_layers(plate, final)
    box = harmonize.subject_box(alpha)
    if box is not None:
        if method == "poisson":
            image = harmonize.poisson_blend(image, alpha, plate, h.poisson_mode, strength)
        if h.light_wrap.enabled:
            image = harmonize.light_wrap(image, alpha, plate, h.light_wrap.radius_px, h.light_wrap.strength)
        # the unharmonized composite is only needed inside the subject's box
        image0, _ = composite_layers(plate[box], [Layer(l.premult[box], l.alpha[box], l.is_subject) for l in naive])
        lab_before = harmonize.lab_distance(image0, alpha[box], background_stats=plate_stats)
        lab_after = harmonize.lab_distance(image, alpha, background_stats=plate_stats)
    else:  # a negative, or a subject pushed wholly out of frame or occluded
        lab_before = lab_after = float("nan")

    if (p["brightness"], p["contrast"], p["saturation"], p["hue_deg"]) != (1.0, 1.0, 1.0, 0.0):
        image = augment.color_jitter(image, p["brightness"], p["contrast"], p["saturation"], p["hue_deg"])
    image = augment.gaussian_blur(image, p["blur_sigma"])
    image = augment.gaussian_noise(image, p["noise_sigma"], noise_rng)

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
            "attributes": dict(primary.attributes) if primary else {},
            "params": dict(p),
            "matched_blur_sigma": matched_blur,
            "matched_noise_sigma": matched_noise,
            "lab_distance_before": _nan_to_none(lab_before),
            "lab_distance_after": _nan_to_none(lab_after),
        }
    )
    atomic_write_text(part_path(ctx.out_dir, spec.sample_id), json.dumps(record, sort_keys=True))
    return record
