"""The renderer against the whole-frame float32 renderer it replaced, on real ECSSD composites.

:func:`reference_pixels` is the previous renderer's pixel path, step for step, built from the same
public functions: every layer warped onto the whole frame, harmonization on the warped frame, depth
of field on the output-size crop, the light statistic on full-resolution composites resized to
256 px. Both add the same noise to the same 8-bit image (the per-level tables of
:func:`synth.augment.noise_by_level`, drawn from the sample's generator in the same order), so the
bounds below measure what the faster path changed: work on the subject's box and on its own crop,
the lens blur at the photo's resolution, and the grid statistics. The 8-bit noise itself is held
to the float path's law in ``tests/test_augment.py`` and ``tests/test_scene.py``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from synth import augment, camera, harmonize, plates
from synth.compositing import Layer, composite_layers, cover_crop, cutout_occluder_layer, occluder_layer, subject_alpha, warp_layer
from synth.plan import make_plan
from synth.prepare import load_background, load_foreground
from synth.recipe import parse_recipe
from synth.render import BuildContext, render_pixels
from synth.sources import scan_backgrounds, scan_foregrounds
from tests.conftest import ECSSD, ecssd_recipe

pytestmark = pytest.mark.slow


def _old_light_mismatch(before, after, alpha, plate, side=256):
    """The previous renderer's light statistic: all four resized to ``side`` px (area)."""
    from synth.render import _light_z

    h, w = alpha.shape
    f = side / max(h, w)
    if f < 1.0:
        size = (max(1, round(w * f)), max(1, round(h * f)))
        before, after, alpha, plate = (cv2.resize(np.ascontiguousarray(x), size, interpolation=cv2.INTER_AREA) for x in (before, after, alpha, plate))
    band = harmonize.surround_band(alpha, harmonize.DEFAULT_PRIOR.band_fraction)
    if not band.any() or alpha.max() <= 0:
        return None, None
    band_stats = harmonize.illumination_stats(plate, band)
    return _light_z(before, alpha, band_stats), _light_z(after, alpha, band_stats)


def reference_pixels(ctx: BuildContext, spec) -> tuple[np.ndarray, np.ndarray, float | None, float | None]:
    """``(image8, alpha, light_z_before, light_z_after)`` by the whole-frame float32 path."""
    r, p, out_hw = ctx.recipe, spec.params, tuple(ctx.recipe.output.size)
    item = ctx.bgs[spec.bg_id]
    photo, hole, _ = load_background(item, ctx.cache_dir)
    drawn = (p["bg_offset_x"], p["bg_offset_y"], p.get("bg_zoom", 1.0))
    if item.clean_crops:
        (ox, oy, zoom), _ = plates.choose_window(hole, out_hw, drawn, item.max_inpainted_fraction, item.crop_zoom)
        crop = plates.crop_plate(photo, out_hw, (ox, oy), zoom)
    else:
        crop = cover_crop(photo, out_hw, drawn[:2])
    plate = crop.astype(np.float32) / 255.0
    if p.get("defocus_radius_px", 0.0) > 0:
        plate = camera.defocus(plate, p["defocus_radius_px"])
    rng = np.random.default_rng(p["noise_seed"])

    def fg(fg_id):
        f8, a8, _ = load_foreground(ctx.fgs[fg_id], r.edges, ctx.cache_dir)
        return f8.astype(np.float32) / 255.0, a8.astype(np.float32) / 255.0

    naive = []
    for j in sorted(range(len(spec.fg_ids)), key=lambda j: p["subject_depth"][j]):
        f, a = fg(spec.fg_ids[j])
        naive.append(warp_layer(f, a, out_hw, p["subject_scale"][j], p["subject_rotation_deg"][j],
                                (p["subject_center_x"][j], p["subject_center_y"][j]), p["subject_anchor"][j], boxed=False))
    union = subject_alpha(naive, out_hw) if naive and (p.get("shadow_opacity", 0.0) > 0 or p.get("occluded")) else None
    if p.get("shadow_opacity", 0.0) > 0 and naive:
        rows = np.flatnonzero(union.max(axis=1) > 0.5)
        height = float(rows[-1] - rows[0] + 1)
        plate = camera.contact_shadow(plate, union, p["shadow_opacity"], p["shadow_blur"] * height, p["shadow_offset"] * height)
    method, strength, h = p["harmonization_method"], p["harmonization_strength"], r.harmonization
    final = []
    for layer in naive:
        colours = layer.colours()
        if method == "illumination":
            colours, _ = harmonize.illumination_harmonize(colours, layer.alpha, plate, strength)
        elif method == "reinhard":
            colours = harmonize.reinhard(colours, layer.alpha, plate, strength, harmonize.plate_lab_stats(plate))
        if h.match_blur:
            colours, _ = harmonize.match_blur(colours, layer.alpha, plate)
        final.append(Layer(colours * layer.alpha[..., None], layer.alpha, True))
    if p.get("occluded"):
        if "occluder_fg_id" in p:
            f, a = fg(p["occluder_fg_id"])
            occ, _ = cutout_occluder_layer(f, a, union, p["occluder_scale"], p["occluder_rotation_deg"], p["occlusion_coverage"],
                                           p["occlusion_angle_deg"], p["occlusion_side"])
            occ = occ.full(out_hw)
        else:
            occ_plate = cover_crop(load_background(ctx.bgs[p["occluder_bg_id"]], ctx.cache_dir)[0], out_hw,
                                   (p["occluder_offset_x"], p["occluder_offset_y"]))
            occ = occluder_layer(occ_plate.astype(np.float32) / 255.0, union, p["occlusion_coverage"], p["occlusion_angle_deg"],
                                 p["occlusion_side"], r.occlusion.feather_px)
        naive.append(occ)
        final.append(occ)
    image, alpha = composite_layers(plate, final)
    before = after = None
    if alpha.any():
        if h.light_wrap.enabled:
            image = harmonize.light_wrap(image, alpha, plate, h.light_wrap.radius_px, h.light_wrap.strength)
        before, after = _old_light_mismatch(composite_layers(plate, naive)[0], image, alpha, plate)
    image = augment.color_jitter(image, p["brightness"], p["contrast"], p["saturation"], p["hue_deg"])
    image = augment.gaussian_blur(image, p["blur_sigma"])
    image8 = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    image8 = augment.gaussian_noise(image8, p["noise_sigma"], rng)
    if p.get("sensor_shot", 0.0) > 0 or p.get("sensor_read", 0.0) > 0:
        image8 = camera.sensor_noise(image8, p["sensor_shot"], p["sensor_read"], rng)
    return image8, alpha, before, after


def _context(doc: dict, out: Path):
    recipe = parse_recipe(doc)
    fgs, bgs = [], []
    for pool in recipe.sources.foregrounds:
        fgs += scan_foregrounds(pool)[0]
    for pool in recipe.sources.backgrounds:
        bgs += scan_backgrounds(pool, tuple(recipe.output.size))[0]
    ctx = BuildContext(recipe=recipe, fgs={f.fg_id: f for f in fgs}, bgs={b.bg_id: b for b in bgs}, cache_dir=Path(doc["cache_dir"]), out_dir=out)
    return ctx, make_plan(recipe, fgs, bgs)


def compare(ctx, specs) -> dict[str, np.ndarray]:
    """Per-pixel and per-sample differences between :func:`render_pixels` and :func:`reference_pixels`."""
    d_img, d_alpha, mask_flips, edge_px, d_before, d_after = [], [], 0, 0, [], []
    for spec in specs:
        got = render_pixels(ctx, spec)
        ref8, ref_alpha, before, after = reference_pixels(ctx, spec)
        d_img.append(np.abs(got.image.astype(np.int16) - ref8).ravel())
        d_alpha.append(np.abs(got.alpha - ref_alpha).ravel())
        mask_flips += int(((got.alpha >= 0.5) != (ref_alpha >= 0.5)).sum())
        edge_px += int(((ref_alpha > 0) & (ref_alpha < 1)).sum())
        if before is not None and got.info["light_z_before"] is not None:
            d_before.append(abs(got.info["light_z_before"] - before))
            d_after.append(abs(got.info["light_z_after"] - after))
    return {"image": np.concatenate(d_img), "alpha": np.concatenate(d_alpha), "mask_flips": mask_flips, "edge_px": edge_px,
            "before": np.array(d_before), "after": np.array(d_after)}


def _demo_like(cache_dir, **camera) -> dict:
    """The demo recipe's realism settings on the small real pools of :func:`ecssd_recipe`, at 512 px
    (where the light statistic's grid, 256 cells of 2 x 2, is the old statistic's 256 px)."""
    doc = ecssd_recipe(cache_dir, n_samples=24, output={"size": [512, 512]}, catalog={"enabled": False})
    doc.update(
        subjects_per_image={1: 0.85, 2: 0.15}, negatives=0.1,
        occlusion={"probability": 0.3, "source": "cutout", "coverage": [0.1, 0.25]},
        harmonization={"method": "illumination", "strength": 0.1},
        camera={"defocus": {"probability": 0.6, "radius": [0.003, 0.012]}, "sensor_noise": {"probability": 0.5}, **camera},
        augment={"color_jitter": {"brightness": 0.1, "contrast": 0.1, "saturation": 0.1, "hue_deg": 4},
                 "blur": {"probability": 0.1, "sigma": [0.5, 1.2]}, "noise": {"probability": 0.2, "sigma": [1, 4]},
                 "jpeg_quality": [85, 95]},
    )
    return doc


def test_the_renderer_is_the_whole_frame_float32_path_within_rounding_without_the_lens_blur(cache_dir, tmp_path):
    """Boxes, harmonization on the subject's crop and grid statistics change nothing a viewer
    sees: mean 0.1 level, one pixel in 10,000 off by more than 2 levels."""
    ctx, plan = _context(_demo_like(cache_dir, defocus={"probability": 0.0}), tmp_path)
    d = compare(ctx, plan.specs)
    assert any(s.params.get("sensor_shot", 0) > 0 for s in plan.specs) and any(s.params.get("occluded") for s in plan.specs)
    assert d["image"].mean() < 0.15 and (d["image"] > 2).mean() < 1e-4
    # alphas agree to OpenCV's 1/32-pixel coordinate rounding of the box warp
    assert d["alpha"].mean() < 1e-5 and d["alpha"].max() < 1 / 16
    assert d["mask_flips"] <= 1e-3 * d["edge_px"]
    # the light statistic (z units, about 1 for real photos); the band of harmonization and the
    # composite before it are read on the grid
    assert d["after"].max() < 0.02 and d["before"].max() < 0.03 and d["before"].mean() < 0.005


def test_the_lens_blur_at_the_photos_resolution_stays_within_a_level_on_average(cache_dir, tmp_path):
    """Depth of field blurred on the enlarged photo at its own resolution, against the blur of the
    output-size crop: under a level on average; a few levels at high-contrast edges, where
    enlarging in sRGB before or after the linear-light blur differs, and at the frame's edges,
    which now see the scene beyond them instead of a reflection."""
    ctx, plan = _context(_demo_like(cache_dir, defocus={"probability": 1.0, "radius": [0.003, 0.012]}), tmp_path)
    d = compare(ctx, plan.specs)
    assert d["image"].mean() < 0.8 and np.percentile(d["image"], 99) <= 6


def test_shadow_light_wrap_blur_matching_and_plate_occluders_follow_the_float32_path(cache_dir, tmp_path):
    doc = ecssd_recipe(cache_dir, n_samples=16, output={"size": [192, 192]}, catalog={"enabled": False})
    doc["harmonization"]["match_noise"] = False  # its noise is drawn for the box: another stream
    doc["occlusion"] = {"probability": 0.5, "source": "plate"}
    doc["camera"]["defocus"] = {"probability": 0.0}
    ctx, plan = _context(doc, tmp_path)
    assert any(s.params.get("shadow_opacity", 0) > 0 for s in plan.specs)
    assert any("occluder_bg_id" in s.params for s in plan.specs)
    d = compare(ctx, plan.specs)
    assert d["image"].mean() < 0.3 and (d["image"] > 3).mean() < 1e-3
    assert d["mask_flips"] <= 1e-3 * d["edge_px"]


@pytest.mark.parametrize("out_hw", [(1024, 1024), (512, 512), (700, 620), (200, 180)])
def test_grid_block_means_on_a_box_are_the_whole_frames(out_hw):
    """:meth:`_Grid.update` (the composite's grid from the plate's, averaged again on the box's rows
    only) equals :meth:`_Grid.frame` of the whole frame exactly, on real photos, for three channels
    and one: boxes inside, on cell edges, cut by the frame and past the last whole cell (700 x 620
    has f = 3 with a remainder; 512 has f = 2, where OpenCV's vector loop sums in another order than
    its tail; 200 x 180 has f = 1). :meth:`_Grid.placed` equals it to float32 rounding (two ulps)."""
    from synth.render import _Grid

    photos = sorted((ECSSD / "images").glob("*.jpg"))[:2]
    plate, subject = (cv2.resize(cv2.imread(str(p))[..., ::-1], out_hw[::-1]).astype(np.float32) / 255 for p in photos)
    grid = _Grid.of(out_hw)
    h, w = out_hw
    boxes = [(slice(h // 3, h // 2), slice(w // 4, 3 * w // 4)), (slice(0, 7), slice(5, 9)), (slice(h // 2, h // 2 + 9), slice(w // 3, w // 3 + 9)),
             (slice(h - 5, h), slice(w - 40, w)), (slice(2 * h // 3, h), slice(0, w)), (slice(0, h), slice(0, w))]
    for a, b in ((plate, subject), (plate[..., 1].copy(), subject[..., 1].copy())):
        base = grid.frame(a)
        for box in boxes:
            image = a.copy()
            image[box] = b[box]
            assert np.array_equal(grid.update(base, image, box), grid.frame(image)), box
            alone = np.zeros_like(b)
            alone[box] = b[box]
            assert np.abs(grid.placed(b[box], (box[0].start, box[1].start)) - grid.frame(alone)).max() <= 1.2e-7, box
