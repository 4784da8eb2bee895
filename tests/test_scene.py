"""Camera-consistent effects, clean background plates, cut-out occluders, composite attributes and
the contact sheet."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from synth import camera, plates
from synth.build import build
from synth.compositing import cutout_occluder_layer
from synth.harmonize import linear_to_srgb, srgb_to_linear
from synth.io import read_gray, read_rgb
from synth.recipe import RecipeError, parse_recipe
from synth.sources import derived_attributes, hole_mask
from tests.conftest import ECSSD, ecssd_recipe


def test_disk_kernel_is_a_normalised_disk():
    k = camera.disk_kernel(5.0)
    assert k.shape == (11, 11) and k.sum() == pytest.approx(1.0, abs=1e-6)
    support = (k > 0).sum()
    assert abs(support - np.pi * 25) < 2 * np.pi * 5 + 4  # area within a rim's width of pi r^2
    assert k[5, 5] == pytest.approx(k.max()) and k[0, 0] == 0.0


def test_defocus_spreads_a_point_into_a_disk_in_linear_light():
    img = np.zeros((41, 41, 3), np.float32)
    img[20, 20] = 1.0
    out = camera.defocus(img, 6.0, fast=False)
    lin = srgb_to_linear(out)
    assert lin.sum() == pytest.approx(3.0, rel=1e-3)  # energy kept in linear light
    np.testing.assert_allclose(lin[14:27, 14:27, 0], camera.disk_kernel(6.0), atol=1e-5)


@pytest.mark.parametrize("radius", [4.0, 9.0, 17.0])
def test_fast_defocus_is_within_one_level_of_the_exact_one_on_a_real_photo(radius):
    img = read_rgb(ECSSD / "images" / "0001.jpg").astype(np.float32) / 255.0
    exact = camera.defocus(img, radius, fast=False)
    fast = camera.defocus(img, radius)
    assert np.abs(fast - exact).mean() < 1.0 / 255


def test_sensor_noise_follows_the_poisson_gaussian_variance():
    rng = np.random.default_rng(0)
    levels = np.array([0.05, 0.2, 0.5])
    lin = np.repeat(levels, 20000).reshape(3, -1)[..., None].repeat(3, axis=2).astype(np.float32)
    img = linear_to_srgb(lin)
    shot, read = 0.004, 0.005
    noisy = srgb_to_linear(camera.sensor_noise(img, shot, read, rng))
    var = (noisy - srgb_to_linear(img)).var(axis=(1, 2))
    np.testing.assert_allclose(var, shot * levels + read**2, rtol=0.05)


def test_sensor_noise_on_an_8_bit_image_has_the_float_paths_law_and_foi_variance():
    """The 8-bit path (256 atoms, linear light by table, the sRGB encoding rounded straight to 8
    bits) against the float path rounded (2**16 atoms): per level, the laws of the noisy level are
    within the atom sets' Kolmogorov distance (0.0026 + 1.1e-5; the output is monotone in the
    atom), their means within 0.03 of a level and their variances within 1.5 %; and Foi's variance
    law holds on flat levels."""
    from synth.augment import _NORMAL
    from synth.harmonize import SRGB_TO_LINEAR_8

    shot, read = 0.003, 0.004
    sd = np.sqrt(SRGB_TO_LINEAR_8 * np.float32(shot) + np.float32(read * read))

    def law(atoms):  # per level: the probability of each output level, every atom drawn once
        noisy = linear_to_srgb(SRGB_TO_LINEAR_8[:, None] + sd[:, None] * atoms[None, :])
        out = np.rint(noisy * 255).astype(np.int64)
        return np.stack([np.bincount(row, minlength=256) / row.size for row in out])

    # the 8-bit path's law is the table's rows (every atom once, as its bytes are uniform)
    table = camera.sensor_noise_table(shot, read).astype(np.int64)
    p8 = np.stack([np.bincount(row, minlength=256) / 256 for row in table])
    p16 = law(_NORMAL)
    assert np.abs(np.cumsum(p8, axis=1) - np.cumsum(p16, axis=1)).max() <= 0.0026 + 1.1e-5
    v = np.arange(256)
    mean8, mean16 = p8 @ v, p16 @ v
    assert np.abs(mean8 - mean16).max() < 0.03
    var8, var16 = p8 @ v**2 - mean8**2, p16 @ v**2 - mean16**2
    assert (np.abs(var8 - var16) / var16).max() < 0.015
    levels = np.array([40, 120, 200], np.uint8)
    flat = np.repeat(levels, 30000).reshape(3, -1)[..., None].repeat(3, axis=2)
    noisy = srgb_to_linear(camera.sensor_noise(flat, shot, read, np.random.default_rng(1)).astype(np.float32) / 255)
    lin = srgb_to_linear(levels.astype(np.float32) / 255)
    # 8-bit rounding adds its own variance, (slope of the sRGB decoding / 255)^2 / 12
    slope = (srgb_to_linear((levels + 0.5) / 255) - srgb_to_linear((levels - 0.5) / 255))
    np.testing.assert_allclose(noisy.var(axis=(1, 2)), shot * lin + read**2 + slope**2 / 12, rtol=0.05)


@pytest.mark.parametrize("u8", [True, False])
def test_sensor_noise_is_foi_formula_per_pixel_at_its_own_draw(u8):
    """Foi's model per pixel with the pixel's own draw, on a real photo: for 8 bits, the table of
    level and atom is each pixel's ``linear_to_srgb_u8(x + sd a)`` for its byte's atom ``a``
    (:data:`synth.augment.BYTE_NORMAL`); in float, block by block in the CPU's cache gives the
    whole-frame formula with :func:`synth.augment.standard_normal`'s draws."""
    from synth.augment import BYTE_NORMAL, standard_normal
    from synth.harmonize import SRGB_TO_LINEAR_8, linear_to_srgb_u8

    photo = read_rgb(ECSSD / "images" / "0002.jpg")
    image = photo if u8 else photo.astype(np.float32) / 255
    shot, read = 0.005, 0.003
    got = camera.sensor_noise(image, shot, read, np.random.default_rng(4))
    lin = SRGB_TO_LINEAR_8[photo] if u8 else srgb_to_linear(image)
    sd = np.sqrt(lin * np.float32(shot) + np.float32(read * read))
    if u8:
        draws = np.random.default_rng(4).bit_generator.random_raw(-(-photo.size // 8)).view(np.uint8)[: photo.size]
        noisy = lin + sd * BYTE_NORMAL[draws].reshape(photo.shape)
    else:
        noisy = standard_normal(np.random.default_rng(4), photo.shape) * sd + lin
    np.testing.assert_array_equal(got, linear_to_srgb_u8(noisy) if u8 else linear_to_srgb(noisy))


def test_contact_shadow_darkens_only_below_the_subject():
    plate = np.full((100, 100, 3), 0.6, np.float32)
    alpha = np.zeros((100, 100), np.float32)
    alpha[20:70, 40:60] = 1.0
    out = camera.contact_shadow(plate, alpha, 0.5, 3.0, 4.0)
    assert out[72, 50, 0] < 0.55  # just below the feet
    assert out[10, 50, 0] == pytest.approx(0.6, abs=1e-4) and out[50, 5, 0] == pytest.approx(0.6, abs=1e-4)


def test_window_share_by_hand_and_choice_within_the_bound():
    hole = np.zeros((100, 200), bool)
    hole[:, 100:140] = True  # a stripe right of the centre, 20 % of the photo
    t = plates.integral(hole)
    assert plates.window_share(t, plates.Window(0, 0, 100, 100)) == 0.0
    assert plates.window_share(t, plates.Window(100, 0, 100, 100)) == pytest.approx(0.4)
    assert plates.window_share(t, plates.Window(50, 0, 100, 100)) == pytest.approx(0.4)
    assert plates.window_share(t, plates.Window(90, 0, 20, 50)) == pytest.approx(0.5)
    # a square output from a 2:1 photo: the centred full-height window is 40 % hole; one within 5 % is found
    (ox, oy, z), share = plates.choose_window(hole, (64, 64), (0.5, 0.5, 1.0), 0.05, (0.5, 1.0))
    assert share <= 0.05
    win = plates.cover_window(hole.shape, (64, 64), (ox, oy), z)
    assert plates.window_share(t, win) == share
    # the drawn window is kept when it is within the bound
    assert plates.choose_window(hole, (64, 64), (0.0, 0.5, 1.0), 0.05, (0.5, 1.0)) == ((0.0, 0.5, 1.0), 0.0)
    assert plates.min_share(hole, (64, 64), (1.0, 1.0)) == 0.0


def test_cutout_occluder_covers_about_the_asked_share():
    subject = np.zeros((128, 128), np.float32)
    subject[30:100, 40:90] = 1.0
    fg = np.full((60, 40, 3), 0.3, np.float32)
    a = np.zeros((60, 40), np.float32)
    a[5:55, 5:35] = 1.0
    layer, achieved = cutout_occluder_layer(fg, a, subject, 0.5, 0.0, 0.15, 0.0, 0.0)
    assert not layer.is_subject
    measured = float((layer.full(subject.shape).alpha * subject).sum() / subject.sum())
    assert measured == pytest.approx(achieved, abs=0.01)
    assert abs(achieved - 0.15) < 0.06
    assert cutout_occluder_layer(fg, a, np.zeros_like(subject), 0.5, 0.0, 0.15, 0.0, 0.0) is None


def test_mask_attributes_on_the_subjects_box_equal_the_whole_frame_ones():
    # components and the thin-structure opening run on the subject's box; the whole frame's
    # definitions give the same numbers, also for subjects cut by the frame's edges
    from synth.sources import mask_attributes, thin_fraction

    specked = []  # a real subject with square specks on both sides of the 1 % threshold
    for stem in ("0002", "0017", "0040", "0123"):
        mask = read_gray(ECSSD / "masks" / f"{stem}.png") > 127
        big = cv2.resize(mask.astype(np.uint8), (1024, 768), interpolation=cv2.INTER_NEAREST) > 0
        speck = big.copy()
        side = int(np.sqrt(0.01 * big.sum()))
        for i, s in enumerate((2, 3, side - 1, side + 1, side + 3)):
            speck[4 + 40 * i : 4 + 40 * i + s, 2 : 2 + s] = True  # along the left edge, apart
        specked.append(speck)
        for m in (mask, big, np.roll(big, 300, axis=1), np.roll(big, -250, axis=0), speck):
            r = max(1, int(round(0.01 * np.hypot(*m.shape))))
            k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
            opened = cv2.morphologyEx(m.astype(np.uint8), cv2.MORPH_OPEN, k)
            assert thin_fraction(m) == 1.0 - cv2.countNonZero(opened) / m.sum()
            n, _, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
            assert mask_attributes(m)["n_components"] == int((stats[1:, cv2.CC_STAT_AREA] >= max(16, 0.01 * m.sum())).sum())
    # the specks are counted by size: some labelled components are below the threshold, some not
    for m in specked:
        n, _, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
        assert 2 <= mask_attributes(m)["n_components"] < n - 1
    assert mask_attributes(np.zeros((8, 8), bool))["n_components"] == 0


def test_balancing_a_composite_attribute_is_refused_with_its_source_name(cache_dir):
    with pytest.raises(RecipeError, match="balance.columns: .*'area_bucket' is computed from each composite's own mask.*source_area_bucket"):
        parse_recipe(ecssd_recipe(cache_dir, balance={"columns": ["area_bucket"]}))


@pytest.fixture(scope="module")
def realism_build(tmp_path_factory, cache_dir):
    out = tmp_path_factory.mktemp("realism") / "out"
    doc = ecssd_recipe(
        cache_dir, n_samples=24, catalog={"enabled": False}, occlusion={"probability": 0.5, "source": "cutout"},
        balance={"columns": ["source_touches_border"]},
    )
    recipe = parse_recipe(doc)
    res = build(recipe, out, workers=1, progress=False)
    return recipe, res.out_dir


def test_composite_attributes_equal_those_of_the_written_mask(realism_build):
    _, out = realism_build
    rows = pq.read_table(out / "manifest.parquet").to_pylist()
    assert any(r["has_subject"] for r in rows) and any(not r["has_subject"] for r in rows)
    changed = 0
    for r in rows:
        mask = cv2.imread(str(out / r["mask_path"]), cv2.IMREAD_GRAYSCALE) > 127
        want = derived_attributes(mask)
        for k, v in want.items():
            got = r[k]
            assert got == (None if v is None else ("true" if v is True else "false" if v is False else str(v))), (r["sample_id"], k)
        if r["has_subject"]:
            assert r["source_area_bucket"] in {"small", "medium", "large"}
            changed += r["source_area_bucket"] != r["area_bucket"]
        else:
            assert r["source_area_bucket"] is None
    assert changed > 0  # a composite's own area differs from its source photo's


def test_every_crop_respects_the_inpainted_bound(realism_build):
    recipe, out = realism_build
    pool = recipe.sources.backgrounds[0]
    rows = pq.read_table(out / "manifest.parquet").to_pylist()
    for r in rows:
        assert r["crop_inpainted_fraction"] <= pool.max_inpainted_fraction
        stem = r["bg_id"].split("/")[1]
        hole = hole_mask(read_gray(ECSSD / "masks" / f"{stem}.png") > 127, pool.dilate_px)
        win = plates.cover_window(hole.shape, tuple(recipe.output.size), (r["bg_crop_offset_x"], r["bg_crop_offset_y"]), r["bg_crop_zoom"])
        assert plates.window_share(plates.integral(hole), win) == pytest.approx(r["crop_inpainted_fraction"], abs=1e-6)
        assert r["bg_inpainted_fraction"] == pytest.approx(hole.mean(), abs=1e-6)
        assert pool.crop_zoom[0] <= r["bg_crop_zoom"] <= pool.crop_zoom[1]
    rep = json.loads((out / "build_report.json").read_text())
    assert rep["plates"]["crop_max"] <= pool.max_inpainted_fraction and rep["plates"]["bound"] == pool.max_inpainted_fraction
    skipped = [q for q in rep["quarantine"]["entries"] if "inpainted" in q["reason"]]
    for q in skipped:  # a skipped plate really has no crop within the bound
        hole = hole_mask(read_gray(q["path"]) > 127, pool.dilate_px)
        assert plates.min_share(hole, tuple(recipe.output.size), pool.crop_zoom) > pool.max_inpainted_fraction


def test_occluders_are_real_cutouts_and_the_sheet_is_written(realism_build):
    _, out = realism_build
    rows = pq.read_table(out / "manifest.parquet").to_pylist()
    occluded = [r for r in rows if r["param_occluded"]]
    assert occluded
    for r in occluded:
        assert r["param_occluder_fg_id"] not in r["fg_ids"] and r["occlusion_achieved"] is not None
        assert "param_occluder_bg_id" not in r  # no plate patch: the occluder is a cut-out
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet is not None and sheet.shape == (3 * (160 + 18), 8 * 160, 3)
    assert "![contact sheet](contact_sheet.png)" in (out / "build_report.md").read_text()
    # the mask outline is drawn in pure green on the first tile
    first = sheet[:160, :160]
    assert ((first[..., 1] == 255) & (first[..., 0] == 0) & (first[..., 2] == 0)).any()


def test_the_preparation_cache_reads_raw_arrays_and_carries_an_earlier_png_entry_over(tmp_path, monkeypatch):
    from synth import prepare
    from synth.recipe import BackgroundPool, Edges, ForegroundPool
    from synth.sources import scan_backgrounds, scan_foregrounds

    fg_pool = ForegroundPool(name="e", kind="image_mask", images=ECSSD / "images", masks=ECSSD / "masks", limit=2)
    bg_pool = BackgroundPool(name="b", kind="masked", images=ECSSD / "images", masks=ECSSD / "masks", limit=2)
    fg, bg = scan_foregrounds(fg_pool)[0][0], scan_backgrounds(bg_pool, (64, 64))[0][0]
    edges = Edges()
    f8, a8, hit = prepare.load_foreground(fg, edges, tmp_path)
    rgb, hole, hit_bg = prepare.load_background(bg, tmp_path)
    assert not hit and not hit_bg
    entry = prepare._cache_path(tmp_path, "bg", prepare.bg_cache_key(bg))
    assert entry.suffix == ".npy" and np.load(entry).shape == (*rgb.shape[:2], 4)

    def never(*_):
        raise AssertionError("prepared again")

    monkeypatch.setattr(prepare, "prepare_foreground", never)
    monkeypatch.setattr(prepare, "prepare_background", never)
    f8b, a8b, hit = prepare.load_foreground(fg, edges, tmp_path)
    assert hit and np.array_equal(f8b, f8) and np.array_equal(a8b, a8)
    # an entry an earlier release cached as a BGRA PNG is read, and rewritten as .npy
    entry.unlink()
    png = prepare._cache_path(tmp_path, "bg", prepare.bg_cache_key(bg), ".png")
    cv2.imwrite(str(png), np.dstack([rgb[..., ::-1], hole.astype(np.uint8) * 255]))
    rgb2, hole2, hit = prepare.load_background(bg, tmp_path)
    assert hit and np.array_equal(rgb2, rgb) and np.array_equal(hole2, hole) and entry.is_file()
    # an unreadable entry is a miss: prepared again
    entry.write_bytes(b"not an array")
    png.unlink()
    monkeypatch.undo()
    rgb3, _, hit = prepare.load_background(bg, tmp_path)
    assert not hit and np.array_equal(rgb3, rgb)
