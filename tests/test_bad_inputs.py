"""Every kind of bad input is quarantined with its reason and the build goes on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from synth.build import BuildError, build
from synth.io import BadInput, read_gray, read_rgb
from synth.recipe import parse_recipe
from tests.conftest import ECSSD, ecssd_recipe

pytestmark = pytest.mark.slow


def _pool(tmp: Path) -> tuple[Path, Path]:
    images, masks = tmp / "images", tmp / "masks"
    images.mkdir()
    masks.mkdir()
    for i in range(1, 9):
        shutil.copy(ECSSD / "images" / f"{i:04d}.jpg", images)
        shutil.copy(ECSSD / "masks" / f"{i:04d}.png", masks)
    src = ECSSD / "images" / "0010.jpg"
    photo = Image.open(src)
    mask = Image.open(ECSSD / "masks" / "0010.png")
    data = src.read_bytes()
    (images / "trunc.jpg").write_bytes(data[: len(data) // 3])  # truncated JPEG
    mask.save(masks / "trunc.png")
    (images / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG at all" * 10)
    mask.save(masks / "corrupt.png")
    photo.convert("CMYK").save(images / "cmyk.jpg")  # usable after conversion
    mask.save(masks / "cmyk.png")
    gray16 = (np.asarray(photo.convert("L"), np.uint16) * 257)
    Image.fromarray(gray16).save(images / "gray16.png")  # 16-bit grayscale, usable
    mask.save(masks / "gray16.png")
    photo.convert("L").save(images / "gray.jpg")  # 8-bit grayscale, usable
    mask.save(masks / "gray.png")
    # EXIF orientation 6 (rotate 90 cw to display): stored landscape, displayed portrait
    stored = photo.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(images / "exif.jpg", exif=exif.tobytes())
    mask.save(masks / "exif.png")  # the mask matches the displayed orientation
    photo.save(images / "wrongsize.jpg")
    mask.resize((mask.width // 2, mask.height // 2)).save(masks / "wrongsize.png")
    photo.save(images / "empty.jpg")
    Image.new("L", photo.size, 0).save(masks / "empty.png")
    photo.save(images / "full.jpg")
    Image.new("L", photo.size, 255).save(masks / "full.png")
    photo.save(images / "nomask.jpg")  # missing mask
    photo.save(images / "dup.jpg")  # duplicate id: two files with stem "dup"
    photo.save(images / "dup.png")
    mask.save(masks / "dup.png")
    return images, masks


def test_readers_normalise_modes_and_orientation(tmp_path):
    images, _ = _pool(tmp_path)
    w, h = Image.open(ECSSD / "images" / "0010.jpg").size
    assert read_rgb(images / "cmyk.jpg").shape == (h, w, 3)
    g16 = read_rgb(images / "gray16.png")
    assert g16.dtype == np.uint8 and g16.shape == (h, w, 3) and g16.max() > 200
    assert read_rgb(images / "exif.jpg").shape == (h, w, 3)  # displayed orientation
    with pytest.raises(BadInput, match="cannot decode"):
        read_rgb(images / "trunc.jpg")
    with pytest.raises(BadInput, match="missing file"):
        read_gray(images / "nothing.png")


def test_bad_inputs_are_quarantined_and_the_build_goes_on(tmp_path, cache_dir):
    images, masks = _pool(tmp_path)
    doc = ecssd_recipe(cache_dir, n_samples=10, negatives=0.0, catalog={"enabled": False}, quarantine={"max_fraction": 0.5})
    doc["sources"]["foregrounds"] = [{"name": "mixed", "kind": "image_mask", "images": str(images), "masks": str(masks)}]
    res = build(parse_recipe(doc), tmp_path / "out", workers=1, progress=False)
    entries = {e["item_id"]: e["reason"] for e in res.report["quarantine"]["entries"] if e["kind"] == "bad_input"}
    assert "cannot decode" in entries["mixed/trunc"]
    assert "cannot decode" in entries["mixed/corrupt"]
    assert "does not match" not in entries["mixed/trunc"]
    assert "matte is" in entries["mixed/wrongsize"] and "but its photo is" in entries["mixed/wrongsize"]
    assert entries["mixed/empty"].startswith("empty mask")
    assert entries["mixed/full"].startswith("full mask")
    assert entries["mixed/nomask"] == "missing mask for id 'nomask'"
    assert entries["mixed/dup"].startswith("duplicate id 'dup'")
    for usable in ("cmyk", "gray16", "gray", "exif", "0001"):
        assert f"mixed/{usable}" not in entries
    assert res.report["quarantine"]["n_bad_input"] == len(entries) + 1  # "dup" is listed once per file
    listed = json.loads((res.out_dir / "quarantine.json").read_text())
    assert sum(e["kind"] == "bad_input" for e in listed) == len(entries) + 1
    assert len(listed) == len(entries) + 1 + res.report["quarantine"]["n_skipped"]
    assert "mixed/trunc" in (res.out_dir / "build_report.md").read_text()
    assert res.report["counts"]["samples"] == 10



def test_a_rescan_reads_usable_items_from_the_memo_and_decodes_only_bad_or_changed_files(tmp_path, monkeypatch):
    """The scan memo gives exactly a plain scan's items and quarantine: usable items and skipped
    plates come back without decoding; bad files are decoded and named on every scan; changed
    bytes, another check setting or a broken table mean decoding again."""
    from collections import Counter

    import synth.sources as sources
    from synth.recipe import BackgroundPool, ForegroundPool
    from synth.sources import scan_backgrounds, scan_foregrounds

    images, masks = _pool(tmp_path)
    memo = tmp_path / "cache"
    fg_pool = ForegroundPool(name="mixed", kind="image_mask", images=images, masks=masks)
    bg_pool = BackgroundPool(name="plates", kind="masked", images=images, masks=masks, max_subject_fraction=0.3)

    def scans(cache, fg_counts=None, bg_counts=None):
        return scan_foregrounds(fg_pool, cache, fg_counts), scan_backgrounds(bg_pool, (64, 64), cache, bg_counts)

    plain = scans(None)
    (fgs, fq, _), (bgs, bq) = plain
    # 17 ids have a photo and a mask (all but nomask and the duplicated dup). As subjects 12 are
    # usable and 5 bad; as plates 8 are usable, 6 skipped (subject over 30 % of the frame), 3 bad
    # (empty is a plate with nothing to inpaint, full a skipped one)
    bad_fg = {"trunc", "corrupt", "wrongsize", "empty", "full"}
    bad_bg = {"trunc", "corrupt", "wrongsize"}
    assert {q.item_id.split("/")[1] for q in fq} == bad_fg | {"nomask", "dup"} and len(fgs) == 12
    assert {q.item_id.split("/")[1] for q in bq if q.kind == "bad_input"} == bad_bg | {"nomask", "dup"}
    assert sum(q.kind == "skipped" for q in bq) == 6 and len(bgs) == 8

    fc, bc = Counter(), Counter()
    assert scans(memo, fc, bc) == plain
    assert fc == {"decoded": 17} and bc == {"decoded": 17}
    decoded = []
    real_rgb, real_gray = sources.read_rgb, sources.read_gray
    monkeypatch.setattr(sources, "read_rgb", lambda p: decoded.append(Path(p).stem) or real_rgb(p))
    monkeypatch.setattr(sources, "read_gray", lambda p: decoded.append(Path(p).stem) or real_gray(p))
    fc, bc = Counter(), Counter()
    assert scans(memo, fc, bc) == plain  # the same items, and each bad file named again
    assert fc == {"memo_hits": 12, "decoded": 5} and bc == {"memo_hits": 14, "decoded": 3}
    # decoded: the bad files, and the photo without a mask (checked before its missing mask is named)
    assert set(decoded) == bad_fg | {"nomask"}

    # changed bytes: only that item is decoded again, and its new mask describes it
    m = cv2.imread(str(masks / "0001.png"), cv2.IMREAD_GRAYSCALE)
    m[:, : m.shape[1] // 2] = 0
    cv2.imwrite(str(masks / "0001.png"), m)
    decoded.clear()
    fc, bc = Counter(), Counter()
    after = scans(memo, fc, bc)
    assert fc["decoded"] == 6 and bc["decoded"] == 4 and decoded.count("0001") == 4  # photo and mask, in both pools
    assert after == scans(None)
    new = next(f for f in after[0][0] if f.fg_id == "mixed/0001")
    old = next(f for f in fgs if f.fg_id == "mixed/0001")
    assert new.sha256 != old.sha256 and new.attributes["source_area_fraction"] < old.attributes["source_area_fraction"]

    # another check setting has its own table: decoded once, then read back
    strict = bg_pool.model_copy(update={"max_subject_fraction": 0.05})
    c1, c2 = Counter(), Counter()
    assert scan_backgrounds(strict, (64, 64), memo, c1) == scan_backgrounds(strict, (64, 64), None)
    assert scan_backgrounds(strict, (64, 64), memo, c2) == scan_backgrounds(strict, (64, 64), None)
    assert c1 == {"decoded": 17} and c2 == {"memo_hits": 14, "decoded": 3}
    assert len(list((memo / "scan").glob("*.json"))) == 3

    # a table that cannot be read is empty, and is written anew; an entry that lacks a value is a miss
    for table in (memo / "scan").glob("*.json"):
        table.write_text("{not json")
    fc, bc = Counter(), Counter()
    assert scans(memo, fc, bc) == scans(None) and fc == {"decoded": 17} and bc == {"decoded": 17}
    fg_table = next(t for t in (memo / "scan").glob("*.json") if t.read_text().startswith("{") and "touch_sides" in t.read_text())
    entries = json.loads(fg_table.read_text())
    assert len(entries) == 12  # written anew: the usable subjects of this scan only
    del entries[new.sha256]["touch_sides"]
    fg_table.write_text(json.dumps(entries))
    fc = Counter()
    assert scan_foregrounds(fg_pool, memo, fc) == after[0] and fc == {"memo_hits": 11, "decoded": 6}
    assert "touch_sides" in json.loads(fg_table.read_text())[new.sha256]

    # a memo that cannot be written (here its folder's name is taken by a file) is only not kept
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "scan").write_text("not a folder")
    fc = Counter()
    assert scan_foregrounds(fg_pool, blocked, fc) == after[0] and fc == {"decoded": 17}

def test_too_many_bad_inputs_fail_the_build(tmp_path, cache_dir):
    images, masks = _pool(tmp_path)
    doc = ecssd_recipe(cache_dir, n_samples=4, catalog={"enabled": False}, quarantine={"max_fraction": 0.05})
    doc["sources"]["foregrounds"] = [{"name": "mixed", "kind": "image_mask", "images": str(images), "masks": str(masks)}]
    with pytest.raises(BuildError, match=r"input items are unusable .* > quarantine.max_fraction 0.05"):
        build(parse_recipe(doc), tmp_path / "out", workers=1, progress=False)


def test_no_usable_foreground_fails_clearly(tmp_path, cache_dir):
    images, masks = tmp_path / "i", tmp_path / "m"
    images.mkdir()
    masks.mkdir()
    (images / "a.jpg").write_bytes(b"garbage")
    Image.new("L", (10, 10), 255).save(masks / "a.png")
    doc = ecssd_recipe(cache_dir, n_samples=4, catalog={"enabled": False}, quarantine={"max_fraction": 1.0})
    doc["sources"]["foregrounds"] = [{"name": "bad", "kind": "image_mask", "images": str(images), "masks": str(masks)}]
    with pytest.raises(BuildError, match="no usable foreground.*bad/a: cannot decode"):
        build(parse_recipe(doc), tmp_path / "out", workers=1, progress=False)


def test_other_foreground_kinds(tmp_path, cache_dir):
    """RGBA cut-outs and image + alpha matte pools (the lemur, with its real soft alpha)."""
    from tests.conftest import LEMUR

    cut, imgs, alphas = tmp_path / "cut", tmp_path / "img", tmp_path / "alpha"
    for d in (cut, imgs, alphas):
        d.mkdir()
    rgb = Image.open(LEMUR / "lemur.png").convert("RGB")
    alpha = Image.open(LEMUR / "lemur_alpha.png")
    rgba = rgb.copy()
    rgba.putalpha(alpha)
    rgba.save(cut / "lemur.png")
    rgb.save(imgs / "lemur.png")
    alpha.save(alphas / "lemur.png")
    for kind, extra in (("rgba", {"cutouts": str(cut)}), ("image_alpha", {"images": str(imgs), "alphas": str(alphas)})):
        doc = ecssd_recipe(cache_dir, n_samples=2, negatives=0.0, splits={"train": 1.0, "val": 0.0, "test": 0.0}, catalog={"enabled": False})
        doc["sources"]["foregrounds"] = [{"name": "lemur", "kind": kind, **extra}]
        res = build(parse_recipe(doc), tmp_path / kind, workers=1, progress=False)
        a = np.asarray(Image.open(res.out_dir / "alpha" / "0000000.png"))
        soft = ((a > 0) & (a < 255)).sum()
        assert soft > 0.05 * (a > 0).sum(), kind  # the fur's soft alpha survives compositing


def test_png_encoding_is_lossless_and_read_back_by_pil_and_opencv(tmp_path):
    from synth.io import encode_png

    rng = np.random.default_rng(2)
    mask = (cv2.imread(str(ECSSD / "masks" / "0003.png"), cv2.IMREAD_GRAYSCALE) > 127).astype(np.uint8) * 255
    cases = [mask, cv2.GaussianBlur(mask, (0, 0), 4), rng.integers(0, 256, (37, 53), dtype=np.uint8), np.zeros((1, 1), np.uint8)]
    for img in cases:
        data = encode_png(img)
        np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), img)
        (tmp_path / "x.png").write_bytes(data)
        np.testing.assert_array_equal(read_gray(tmp_path / "x.png"), img)
