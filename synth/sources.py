"""Scanning foreground and background pools: pairing files, validating them, joining metadata and
deriving mask attributes. Every unusable item is quarantined with its reason; nothing stops the scan.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import PIL

from synth.edges import open_disk, tight_bbox
from synth.io import (
    BadInput, atomic_write_text, binary_from_gray, printable_path, read_gray, read_rgb, read_rgba, sha256_file, utf8_name,
)
from synth.recipe import BackgroundPool, ForegroundPool

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
AREA_BUCKETS = ((0.10, "small"), (0.30, "medium"), (1.01, "large"))
"""Subject area fraction buckets: small < 0.10 <= medium < 0.30 <= large."""

DERIVED_ATTRIBUTES = ("area_fraction", "area_bucket", "n_components", "touches_border")
SOURCE_PREFIX = "source_"
"""A foreground's mask-derived attributes describe its source photo and are named
``source_<name>``; every composite gets its own (:func:`derived_attributes` of its written mask)."""
THIN_RADIUS_FRACTION = 0.01
THIN_SHARE = 0.05
COMPOSITE_DERIVED = DERIVED_ATTRIBUTES + ("thin_structures",)


@dataclass(frozen=True)
class QuarantineEntry:
    """An input item left out of the build: ``kind`` is ``bad_input`` or ``skipped``."""

    item_id: str
    path: str
    reason: str
    kind: str = "bad_input"


@dataclass
class ForegroundItem:
    """A usable subject: files, content hash, photo key (for splits), size and attributes."""

    fg_id: str
    pool: str
    kind: str
    image: str | None
    matte: str | None
    photo_key: str
    sha256: str
    height: int
    width: int
    attributes: dict[str, Any] = field(default_factory=dict)
    touch_sides: tuple[str, ...] = ()


@dataclass
class BackgroundItem:
    """A usable background photo (``masked``: its subject is inpainted away at preparation)."""

    bg_id: str
    pool: str
    kind: str
    image: str
    mask: str | None
    photo_key: str
    sha256: str
    dilate_px: int
    inpaint: str
    inpainted_fraction: float = 0.0
    max_inpainted_fraction: float = 1.0
    crop_zoom: tuple[float, float] = (1.0, 1.0)
    clean_crops: bool = False


def mask_attributes(mask: np.ndarray) -> dict[str, Any]:
    """Attributes derived from a subject mask itself.

    Args:
        mask: ``(H, W)`` bool, True on the subject.

    Returns:
        ``area_fraction`` (float in [0, 1], rounded to 4 places), ``area_bucket`` (see
        :data:`AREA_BUCKETS`), ``n_components`` (8-connected components covering at least 1 % of the
        subject and 16 pixels, so stray specks do not count) and ``touches_border`` (bool: a subject
        pixel lies on the outermost row or column).
    """
    n_px = int(np.count_nonzero(mask))  # = mask.sum(), and mask.mean() = n_px / size exactly, at a tenth of the cost
    area = n_px / mask.size
    bucket = next(name for hi, name in AREA_BUCKETS if area < hi)
    box = tight_bbox(mask)  # components lie inside the subject's box: label only that
    areas = np.zeros(0, np.intp)
    if box is not None:
        y0, y1, x0, x1 = box
        # the labels' pixel counts are the components' areas: a third of the cost of
        # connectedComponentsWithStats, which also measures boxes and centroids
        n, labels = cv2.connectedComponents(mask[y0:y1, x0:x1].astype(np.uint8), connectivity=8)
        areas = np.bincount(labels.reshape(-1), minlength=n)[1:]
    min_px = max(16, 0.01 * n_px)
    n_comp = int(np.count_nonzero(areas >= min_px))
    touches = bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())
    return {"area_fraction": round(area, 4), "area_bucket": bucket, "n_components": n_comp, "touches_border": touches}


def thin_fraction(mask: np.ndarray) -> float:
    """Share of a subject made of thin structures: the part an opening removes.

    ``1 - |open(M, disk r)| / |M|`` (OpenCV's ellipse, :func:`synth.edges.open_disk`) with
    ``r = max(1, round(0.01 * diagonal))`` pixels, so parts narrower than about ``2r`` (legs, hair
    strands, antennae, branches) are what is lost. 0 for an empty mask.

    Args:
        mask: ``(H, W)`` bool.

    Returns:
        A float in [0, 1].
    """
    n = int(np.count_nonzero(mask))
    if n == 0:
        return 0.0
    r = max(1, int(round(THIN_RADIUS_FRACTION * math.hypot(*mask.shape[:2]))))
    # The opening is 0 farther than r from the subject, and within r + 1 px of it the crop holds
    # the real zeros: run it on the subject's box grown by r + 1 (the whole frame's result exactly).
    y0, y1, x0, x1 = tight_bbox(mask, margin=r + 1)
    opened = open_disk(mask[y0:y1, x0:x1].astype(np.uint8), r)  # cv2.morphologyEx(OPEN, disk(r)), exactly
    return 1.0 - int(cv2.countNonZero(opened)) / n


def derived_attributes(mask: np.ndarray) -> dict[str, Any]:
    """Slice attributes of an image computed from its own subject mask (real ground truth or a
    composite's written mask).

    ``area_fraction``, ``area_bucket``, ``n_components``, ``touches_border`` (see
    :func:`mask_attributes`) and ``thin_structures`` (True when :func:`thin_fraction` >= 0.05). An
    empty mask (a negative) gets None for every attribute, so negatives never land in a
    subject-shape slice.

    Args:
        mask: ``(H, W)`` bool.
    """
    if not mask.any():
        return {k: None for k in COMPOSITE_DERIVED}
    out = mask_attributes(mask)
    out["thin_structures"] = thin_fraction(mask) >= THIN_SHARE
    return out


def touched_sides(mask: np.ndarray) -> tuple[str, ...]:
    """Frame sides (``top``, ``bottom``, ``left``, ``right``) that a ``(H, W)`` bool mask touches."""
    sides = (("top", mask[0]), ("bottom", mask[-1]), ("left", mask[:, 0]), ("right", mask[:, -1]))
    return tuple(name for name, edge in sides if edge.any())


def _list_by_stem(folder: Path, pool: str, quarantine: list[QuarantineEntry]) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"pool {pool!r}: folder {folder} does not exist")
    by_stem: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith("."):
            if not utf8_name(p):
                quarantine.append(QuarantineEntry(f"{pool}/{printable_path(p.stem)}", printable_path(p),
                                                  "file name is not valid UTF-8; rename it"))
                continue
            by_stem.setdefault(p.stem, []).append(p)
    out = {}
    for stem, paths in by_stem.items():
        if len(paths) > 1:
            for p in paths:
                quarantine.append(QuarantineEntry(f"{pool}/{stem}", str(p), f"duplicate id {stem!r}: {len(paths)} files share it"))
        else:
            out[stem] = paths[0]
    return out


def read_metadata(path: Path, id_column: str) -> tuple[dict[str, dict[str, str | None]], set[str]]:
    """Read a metadata table (CSV or Parquet) keyed by ``id_column``; every value becomes text.

    Returns:
        ``(rows, duplicate_ids)``: attribute dicts by id (the id column excluded), and ids that
        occur more than once (their rows are dropped).

    Raises:
        FileNotFoundError: no such file. ValueError: unknown format or missing id column (naming
        the file and column).
    """
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.is_file():
        raise FileNotFoundError(f"metadata table {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        # a real CSV reader, every cell text (ids like 0007 stay 0007), UTF-8 with or without the
        # byte-order mark spreadsheets write; any other encoding fails naming the file
        try:
            with path.open(newline="", encoding="utf-8-sig") as f:
                reader = csv.reader(f)
                header = next(reader, None)
                body = list(reader)
        except UnicodeDecodeError as exc:
            raise ValueError(f"metadata table {path}: not UTF-8 (byte {exc.start}: {exc.object[exc.start:exc.start + 1]!r}); "
                             "save it as UTF-8") from None
        except csv.Error as exc:
            raise ValueError(f"metadata table {path}: malformed CSV ({exc})") from None
        if not header:
            raise ValueError(f"metadata table {path}: empty file, no header row")
        header = [h.strip() for h in header]
        bad = [i + 2 for i, r in enumerate(body) if r and len(r) != len(header)]
        if bad:
            raise ValueError(f"metadata table {path}: rows {bad[:10]} have another number of cells than the header ({len(header)})")
        body = [r for r in body if r]
        table = pa.table({c: pa.array([r[i] for r in body], pa.string()) for i, c in enumerate(header)})
    elif suffix in (".parquet", ".pq"):
        table = pq.read_table(path)
    else:
        raise ValueError(f"metadata table {path}: use .csv or .parquet, not {suffix!r}")
    if id_column not in table.column_names:
        raise ValueError(f"metadata table {path}: no id column {id_column!r} (columns: {table.column_names})")
    cols = {c: table.column(c).to_pylist() for c in table.column_names}
    ids = [str(v) for v in cols.pop(id_column)]
    rows: dict[str, dict[str, str | None]] = {}
    dups: set[str] = set()
    for i, rid in enumerate(ids):
        if rid in rows:
            dups.add(rid)
        rows[rid] = {c: (None if v[i] is None or v[i] == "" else str(v[i])) for c, v in cols.items()}
    for d in dups:
        rows.pop(d, None)
    return rows, dups


RECIPE_MASK_HINT = "recipes read masks as 0/255 (foreground > 127): convert the masks to 0/255"


def _combined_sha(*digests: str) -> str:
    """SHA-256 over the hex SHA-256 digests of an item's files, in order."""
    h = hashlib.sha256()
    for d in digests:
        h.update(d.encode())
    return h.hexdigest()


SCAN_VERSION = 1
"""Part of every :class:`ScanMemo` key: raised whenever the scan derives other values from the
same files (a change to :func:`mask_attributes`, :func:`touched_sides`, :func:`hole_mask`,
:func:`synth.plates.min_share` or the readers)."""


class ScanMemo:
    """What scanning learnt from each usable item's files, kept between scans.

    A scan decodes every photo and mask of a pool to validate it and to read its size, its mask
    attributes or its plate check: 3.1 s for the demo's two pools over ECSSD's 1,000 photos, where
    hashing the same files takes 0.07 s. The memo stores each usable item's derived values under
    the SHA-256 of its files (the item's ``sha256``), in one JSON table per pool setting,
    ``cache_dir/scan/<setting key>.json``; a later scan of unchanged files reads them back instead
    of decoding them. The setting key covers everything else the values depend on: the role, the
    pool's kind and checks (``setting``), Pillow's and OpenCV's versions, and :data:`SCAN_VERSION`.

    Items that fail are never stored, so every bad file is decoded and named again on each scan. A
    table that cannot be read counts as empty and is written anew; one that cannot be written (a
    read-only shared cache) is left as it is. Two scans that save at once may each drop the other's
    new entries, which are then decoded once more.

    Args:
        cache_dir: the preparation cache's folder; None keeps nothing (every item is decoded).
        setting: JSON-serialisable values, besides the files, that the stored values depend on.
    """

    def __init__(self, cache_dir: Path | None, setting: dict[str, Any]):
        doc = {"v": SCAN_VERSION, "pillow": PIL.__version__, "opencv": cv2.__version__, **setting}
        key = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
        self.path = None if cache_dir is None else Path(cache_dir) / "scan" / f"{key}.json"
        self.known = self._read()
        self.new: dict[str, dict[str, Any]] = {}

    def _read(self) -> dict[str, dict[str, Any]]:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            table = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return table if isinstance(table, dict) else {}

    def get(self, sha: str, keys: tuple[str, ...]) -> dict[str, Any] | None:
        """The values stored for an item whose files hash to ``sha``; None if none are, or if they
        lack one of ``keys``."""
        hit = self.known.get(sha)
        return hit if isinstance(hit, dict) and all(k in hit for k in keys) else None

    def put(self, sha: str, values: dict[str, Any]) -> None:
        """Remember ``values`` (JSON-serialisable) for files hashing to ``sha``."""
        if self.path is not None:
            self.known[sha] = self.new[sha] = values

    def save(self) -> None:
        """Write the table with this scan's new entries: atomically, and only if there are any."""
        if self.path is None or not self.new:
            return
        table = {**self._read(), **self.new}
        try:
            atomic_write_text(self.path, json.dumps(table, sort_keys=True, separators=(",", ":")))
        except OSError:  # a cache this process may only read: the next scan decodes these items again
            return
        self.new = {}


def _file_digests(paths: list[Path]) -> list[str]:
    """SHA-256 of each file's bytes.

    Raises:
        BadInput: a file cannot be read (naming it).
    """
    out = []
    for p in paths:
        try:
            out.append(sha256_file(p))
        except OSError as exc:
            raise BadInput(p, f"cannot read file ({type(exc).__name__}: {exc})") from None
    return out


def _check_foreground(kind: str, img_path: Path, matte_path: Path | None) -> dict[str, Any]:
    """Decode one foreground's files and derive what its item holds: ``height``, ``width``, the
    mask's ``attributes`` (:func:`mask_attributes`) and ``touch_sides``.

    Raises:
        BadInput: an undecodable file, a matte of another size than its photo, an ambiguous 0/1
            mask, an empty or a full mask.
    """
    if kind == "rgba":
        rgb, matte = read_rgba(img_path)
    else:
        rgb = read_rgb(img_path)
        matte = read_gray(matte_path)
        if matte.shape != rgb.shape[:2]:
            raise BadInput(
                matte_path,
                f"matte is {matte.shape[1]}x{matte.shape[0]} but its photo is {rgb.shape[1]}x{rgb.shape[0]} (WxH)",
            )
    mask = binary_from_gray(matte, matte_path, hint=RECIPE_MASK_HINT) if kind == "image_mask" else matte > 127
    if not mask.any():
        raise BadInput(matte_path or img_path, "empty mask: no subject pixel")
    if mask.all():
        raise BadInput(matte_path or img_path, "full mask: the subject fills the frame, no edge")
    return {"height": int(rgb.shape[0]), "width": int(rgb.shape[1]), "attributes": mask_attributes(mask),
            "touch_sides": list(touched_sides(mask))}


def scan_foregrounds(pool: ForegroundPool, cache_dir: Path | None = None,
                     counts: Counter | None = None) -> tuple[list[ForegroundItem], list[QuarantineEntry], dict[str, str]]:
    """Pair, validate and describe a foreground pool.

    Each item's files are decoded once here: missing partners, undecodable or truncated files,
    a matte whose size differs from its photo (after EXIF orientation), empty mattes (no pixel
    > 127) and full mattes (every pixel > 127: no edge to learn from) are quarantined, as are
    ids that occur twice (in the folders or in the metadata table). With ``cache_dir``, an item
    whose files a scan has validated before (same bytes) is not decoded again: its size and mask
    attributes come from the :class:`ScanMemo`.

    Args:
        pool: the recipe's pool. cache_dir: the preparation cache's folder, or None.
        counts: if given, gets ``memo_hits`` (items read from the memo) and ``decoded`` added.

    Returns:
        ``(items, quarantine, provenance)``; ``provenance`` maps attribute name to provenance
        (metadata columns: as stated in the pool, default ``annotated``; mask attributes:
        ``derived``).

    Raises:
        FileNotFoundError / ValueError: a missing folder or an unreadable metadata table.
    """
    quarantine: list[QuarantineEntry] = []
    if pool.kind == "rgba":
        primary = _list_by_stem(pool.cutouts, pool.name, quarantine)
        partner: dict[str, Path] | None = None
    else:
        primary = _list_by_stem(pool.images, pool.name, quarantine)
        partner = _list_by_stem(pool.masks if pool.kind == "image_mask" else pool.alphas, pool.name, quarantine)
    meta: dict[str, dict[str, str | None]] = {}
    meta_cols: list[str] = []
    if pool.metadata is not None:
        meta, dups = read_metadata(pool.metadata, pool.id_column)
        meta_cols = sorted({c for row in meta.values() for c in row})
        for d in sorted(dups):
            quarantine.append(QuarantineEntry(f"{pool.name}/{d}", str(pool.metadata), f"duplicate id {d!r} in metadata table"))
    else:
        dups = set()
    stems = _restrict(sorted(set(primary) - dups), pool, quarantine)
    memo = ScanMemo(cache_dir, {"role": "foreground", "kind": pool.kind})
    counts = Counter() if counts is None else counts
    items: list[ForegroundItem] = []
    for stem in stems:
        fg_id = f"{pool.name}/{stem}"
        img_path = primary[stem]
        matte_path = None
        try:
            if pool.kind != "rgba":
                if stem not in partner:
                    what = "mask" if pool.kind == "image_mask" else "alpha matte"
                    raise BadInput(img_path, f"missing {what} for id {stem!r}")
                matte_path = partner[stem]
            digests = _file_digests([img_path] + ([matte_path] if matte_path else []))
            sha = _combined_sha(*digests)
            seen = memo.get(sha, ("height", "width", "attributes", "touch_sides"))
            counts["memo_hits" if seen is not None else "decoded"] += 1
            if seen is None:
                seen = _check_foreground(pool.kind, img_path, matte_path)
                memo.put(sha, seen)
        except BadInput as bad:
            quarantine.append(QuarantineEntry(fg_id, bad.path, bad.reason))
            continue
        attrs: dict[str, Any] = {c: None for c in meta_cols}
        attrs.update(meta.get(stem, {}))
        attrs.update({SOURCE_PREFIX + k: seen["attributes"][k] for k in DERIVED_ATTRIBUTES})
        items.append(
            ForegroundItem(
                fg_id=fg_id,
                pool=pool.name,
                kind=pool.kind,
                image=str(img_path),
                matte=str(matte_path) if matte_path else None,
                photo_key=digests[0],
                sha256=sha,
                height=seen["height"],
                width=seen["width"],
                attributes=attrs,
                touch_sides=tuple(seen["touch_sides"]),
            )
        )
    memo.save()
    provenance = {c: pool.provenance.get(c, "annotated") for c in meta_cols}
    provenance.update({SOURCE_PREFIX + a: "derived" for a in DERIVED_ATTRIBUTES})
    provenance.update({a: "derived" for a in COMPOSITE_DERIVED})
    return items, quarantine, provenance


def read_ids(path: Path) -> list[str]:
    """Ids (file stems) of an ids file: one per line; blank lines and ``#`` comments ignored.

    Raises:
        BadInput: the file cannot be read.
    """
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise BadInput(path, f"cannot read ids file: {exc}") from None
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def _restrict(stems: list[str], pool, quarantine: list[QuarantineEntry]) -> list[str]:
    """Apply a pool's ``ids`` file, then its ``limit``; listed ids with no file are quarantined."""
    if pool.ids is not None:
        wanted = set(read_ids(pool.ids))
        for missing in sorted(wanted - set(stems)):
            quarantine.append(QuarantineEntry(f"{pool.name}/{missing}", str(pool.ids), "id listed in the ids file has no file"))
        stems = [s for s in stems if s in wanted]
    return stems[: pool.limit] if pool.limit is not None else stems


def hole_mask(mask: np.ndarray, dilate_px: int) -> np.ndarray:
    """The inpainted region of a masked plate: the subject mask (``(H, W)`` bool) dilated by a disk
    of ``dilate_px`` pixels, ``(H, W)`` bool."""
    m = mask.astype(np.uint8) * 255
    if dilate_px > 0:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate_px + 1, 2 * dilate_px + 1))
        m = cv2.dilate(m, k)
    return m > 0


def _plate_check(subject: np.ndarray, pool: BackgroundPool, out_hw: tuple[int, int] | None) -> tuple[float, str | None]:
    """A masked plate's inpainted share, and why it cannot be used (None when it can): its subject
    covers more than ``max_subject_fraction``, or no crop of ``out_hw`` is within
    ``max_inpainted_fraction`` (:func:`synth.plates.min_share`)."""
    from synth.plates import min_share

    frac = float(subject.mean())
    if frac > pool.max_subject_fraction:
        return frac, f"subject covers {frac:.0%} of the frame (> max_subject_fraction {pool.max_subject_fraction})"
    hole = hole_mask(subject, pool.dilate_px)
    inpainted = float(hole.mean())
    if pool.clean_crops and out_hw is not None:
        best = min_share(hole, out_hw, pool.crop_zoom)
        if best > pool.max_inpainted_fraction:
            return inpainted, f"every crop is at least {best:.0%} inpainted (> max_inpainted_fraction {pool.max_inpainted_fraction})"
    return inpainted, None


def scan_backgrounds(pool: BackgroundPool, out_hw: tuple[int, int] | None = None, cache_dir: Path | None = None,
                     counts: Counter | None = None) -> tuple[list[BackgroundItem], list[QuarantineEntry]]:
    """Pair and validate a background pool (same rules as :func:`scan_foregrounds`, the
    :class:`ScanMemo` of ``cache_dir`` and ``counts`` included); masked photos whose subject covers
    more than ``max_subject_fraction`` are skipped (``kind='skipped'``), and so are masked photos
    with no crop of ``out_hw`` whose inpainted share is within ``max_inpainted_fraction``
    (:func:`synth.plates.min_share`)."""
    quarantine: list[QuarantineEntry] = []
    images = _list_by_stem(pool.images, pool.name, quarantine)
    masks = _list_by_stem(pool.masks, pool.name, quarantine) if pool.kind == "masked" else {}
    stems = _restrict(sorted(images), pool, quarantine)
    masked = pool.kind == "masked"
    setting: dict[str, Any] = {"role": "background", "kind": pool.kind}
    if masked:  # what the plate check reads besides the files
        setting.update({"dilate_px": pool.dilate_px, "max_subject_fraction": pool.max_subject_fraction,
                        "clean_crops": pool.clean_crops})
        if pool.clean_crops and out_hw is not None:
            setting.update({"out_hw": list(out_hw), "crop_zoom": list(pool.crop_zoom), "max_inpainted_fraction": pool.max_inpainted_fraction})
    memo = ScanMemo(cache_dir, setting)
    counts = Counter() if counts is None else counts
    items: list[BackgroundItem] = []
    for stem in stems:
        bg_id = f"{pool.name}/{stem}"
        img_path = images[stem]
        mask_path = masks.get(stem) if masked else None
        try:
            if masked and mask_path is None:
                read_rgb(img_path)  # an undecodable photo is named first, as it always was
                raise BadInput(img_path, f"missing mask for id {stem!r}")
            digests = _file_digests([img_path] + ([mask_path] if mask_path else []))
            sha = _combined_sha(*digests)
            seen = memo.get(sha, ("inpainted", "skip"))
            counts["memo_hits" if seen is not None else "decoded"] += 1
            if seen is None:
                seen = _check_background(pool, img_path, mask_path, out_hw)
                memo.put(sha, seen)
        except BadInput as bad:
            quarantine.append(QuarantineEntry(bg_id, bad.path, bad.reason))
            continue
        if seen["skip"] is not None:
            quarantine.append(QuarantineEntry(bg_id, str(mask_path), seen["skip"], kind="skipped"))
            continue
        items.append(
            BackgroundItem(
                inpainted_fraction=round(seen["inpainted"], 6) if masked else 0.0,
                max_inpainted_fraction=pool.max_inpainted_fraction,
                crop_zoom=tuple(pool.crop_zoom),
                clean_crops=pool.clean_crops,
                bg_id=bg_id,
                pool=pool.name,
                kind=pool.kind,
                image=str(img_path),
                mask=str(mask_path) if mask_path else None,
                photo_key=digests[0],
                sha256=sha,
                dilate_px=pool.dilate_px,
                inpaint=pool.inpaint,
            )
        )
    memo.save()
    return items, quarantine


def _check_background(pool: BackgroundPool, img_path: Path, mask_path: Path | None, out_hw: tuple[int, int] | None) -> dict[str, Any]:
    """Decode one background's files and check a masked plate (:func:`_plate_check`): its
    ``inpainted`` share, and why it is to be ``skip``-ped (None when it is usable).

    Raises:
        BadInput: an undecodable file, a mask of another size than its photo, an ambiguous 0/1 mask.
    """
    rgb = read_rgb(img_path)
    if mask_path is None:
        return {"inpainted": 0.0, "skip": None}
    mask = read_gray(mask_path)
    if mask.shape != rgb.shape[:2]:
        raise BadInput(mask_path, f"mask is {mask.shape[1]}x{mask.shape[0]} but its photo is {rgb.shape[1]}x{rgb.shape[0]} (WxH)")
    inpainted, why = _plate_check(binary_from_gray(mask, mask_path, hint=RECIPE_MASK_HINT), pool, out_hw)
    return {"inpainted": inpainted, "skip": why}
