"""Real evaluation sets: importing image/mask folders into the catalog, ground-truth readers and the
mask-derived slice attributes."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synth.io import MASK_ENCODINGS, BadInput, open_image, printable_path, read_binary_mask, read_gray, utf8_name
from synth.sources import COMPOSITE_DERIVED as DERIVED  # one definition for real and synthetic sets
from synth.sources import IMAGE_EXTS, derived_attributes, read_metadata, thin_fraction  # noqa: F401


def read_mask(path: str | Path, encoding: str = "0-255") -> np.ndarray:
    """A ground-truth mask as ``(H, W)`` bool, as declared: foreground where the 8-bit value is
    > 127 (``0-255``, the default) or == 1 (``0-1``); see :func:`synth.io.read_binary_mask`.

    Raises:
        BadInput: unreadable or ambiguous file (a 0/1 mask read as 0/255), naming it.
    """
    return read_binary_mask(path, encoding)


def read_alpha(path: str | Path) -> np.ndarray:
    """A ground-truth alpha matte as ``(H, W)`` float32 in [0, 1] (8-bit / 255, 16-bit / 65535).

    Raises:
        BadInput: unreadable file.
    """
    img = open_image(path)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        return np.clip(np.asarray(img, dtype=np.float32) / 65535.0, 0, 1)
    return read_gray(path).astype(np.float32) / 255.0


def read_trimap(path: str | Path) -> np.ndarray:
    """A trimap as ``(H, W)`` uint8 (0 background, 255 foreground, anything between unknown).

    Colour or RGBA files are converted to luminance from their colour channels (an RGBA trimap's
    alpha channel is not the trimap).

    Raises:
        BadInput: unreadable file.
    """
    img = open_image(path)
    if img.mode in ("RGBA", "LA", "PA", "P", "RGB", "CMYK"):
        img = img.convert("RGB").convert("L")
    elif img.mode != "L":
        return read_gray(path)
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


@dataclass
class ImportResult:
    """What :func:`import_dataset` registered and what it left out; ``created`` is False when the
    catalog already held identical content under the name (nothing written), ``revision`` the
    dataset revision that holds it."""

    dataset_id: int
    n_samples: int
    n_negatives: int
    quarantine: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    revision: int = 1
    created: bool = True


def _by_stem(folder: Path, what: str, quarantine: list[dict[str, str]] | None = None) -> dict[str, Path]:
    """Image files of ``folder`` by stem; names that are not valid UTF-8 go to ``quarantine``."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} folder {folder} does not exist")
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith("."):
            if not utf8_name(p):
                if quarantine is not None:
                    quarantine.append({"id": printable_path(p.stem), "path": printable_path(p), "reason": "file name is not valid UTF-8; rename it"})
                continue
            out.setdefault(p.stem, p)
    return out


def import_dataset(
    engine: Any,
    name: str,
    images: Path,
    masks: Path,
    alpha: Path | None = None,
    trimaps: Path | None = None,
    metadata: Path | None = None,
    id_column: str = "sample_id",
    provenance: dict[str, str] | None = None,
    limit: int | None = None,
    ids: Path | None = None,
    mask_encoding: str = "0-255",
) -> ImportResult:
    """Register a real image/mask set in the catalog as a new revision of ``name`` (identical
    content again is a no-op).

    Images and masks pair by file stem (``images/0001.jpg`` with ``masks/0001.png``); optional alpha
    mattes and trimaps pair the same way. Every mask is read once to derive
    :func:`derived_attributes` and ``has_subject`` (an empty mask is a negative). Metadata rows
    (CSV/Parquet keyed by ``id_column``) add attributes with the given provenance (default
    ``annotated``). Paths are stored relative to the common root of the folders.

    Bad inputs never stop the import: an image without a mask, an unreadable image or mask, or a
    mask of another size than its image is quarantined with the file and the reason; metadata ids
    without an image and images without metadata are reported as warnings.

    Args:
        limit: keep only the first ``limit`` stems in sorted order (tests, demos).
        ids: a text file of ids (one per line) to import, e.g. a test split; listed ids without an
            image are quarantined. Applied before ``limit``.
        mask_encoding: how the masks encode foreground, ``0-255`` (> 127) or ``0-1`` (== 1),
            stored with the dataset so scoring reads them the same way; under ``0-255`` a mask of
            values 0/1 is quarantined as ambiguous (:func:`synth.io.read_binary_mask`).

    Returns:
        An :class:`ImportResult`.

    Raises:
        FileNotFoundError: a folder or the metadata table does not exist.
        ValueError: nothing usable was found, or a bad provenance (named).
    """
    from db.catalog import SampleRecord, register_dataset

    if mask_encoding not in MASK_ENCODINGS:
        raise ValueError(f"mask encoding must be one of {', '.join(MASK_ENCODINGS)}, got {mask_encoding!r}")
    images, masks = Path(images).resolve(), Path(masks).resolve()
    quarantine: list[dict[str, str]] = []
    imgs = _by_stem(images, "images", quarantine)
    msks = _by_stem(masks, "masks")
    alphas = _by_stem(Path(alpha).resolve(), "alpha") if alpha else {}
    tris = _by_stem(Path(trimaps).resolve(), "trimaps") if trimaps else {}
    meta: dict[str, dict[str, str | None]] = {}
    warnings: list[str] = []
    if metadata:
        meta, dups = read_metadata(Path(metadata), id_column)
        if dups:
            warnings.append(f"metadata {metadata}: duplicate ids dropped: {sorted(dups)[:10]}")
    stems = sorted(imgs)
    if ids is not None:
        from synth.sources import read_ids

        wanted = read_ids(Path(ids))
        quarantine += [{"id": k, "path": str(ids), "reason": "listed in the ids file but no image has this id"}
                       for k in sorted(set(wanted) - set(stems))]
        keep = set(wanted)
        stems = [s for s in stems if s in keep]
    if limit is not None:
        stems = stems[:limit]
    folders = [images, masks] + [Path(p).resolve() for p in (alpha, trimaps) if p]
    root = Path(os.path.commonpath([str(f) for f in folders]))

    records: list[SampleRecord] = []
    for stem in stems:
        img_path = imgs[stem]
        if stem not in msks:
            quarantine.append({"id": stem, "path": str(img_path), "reason": "no mask with this id"})
            continue
        try:
            with open_image(img_path) as im:
                w, h = im.size
            mask = read_mask(msks[stem], mask_encoding)
        except BadInput as exc:
            quarantine.append({"id": stem, "path": exc.path, "reason": exc.reason})
            continue
        if mask.shape != (h, w):
            quarantine.append({"id": stem, "path": str(msks[stem]), "reason": f"mask is {mask.shape[1]}x{mask.shape[0]}, image is {w}x{h}"})
            continue
        attrs: dict[str, Any] = dict(meta.get(stem, {}))
        if metadata and stem not in meta:
            warnings.append(f"{stem}: no metadata row")
        attrs.update(derived_attributes(mask))
        rel = lambda p: str(Path(p).resolve().relative_to(root))  # noqa: E731
        records.append(SampleRecord(
            sample_key=stem, image_path=rel(img_path), mask_path=rel(msks[stem]),
            alpha_path=rel(alphas[stem]) if stem in alphas else None,
            trimap_path=rel(tris[stem]) if stem in tris else None,
            split=None, has_subject=bool(mask.any()), n_subjects=1 if mask.any() else 0,
            width=w, height=h, attributes=attrs,
        ))
    if metadata:
        orphans = sorted(set(meta) - set(imgs))
        if orphans:
            warnings.append(f"metadata ids without an image: {orphans[:10]}{' ...' if len(orphans) > 10 else ''}")
    if not records:
        first = "; ".join(f"{q['path']}: {q['reason']}" for q in quarantine[:3])
        raise ValueError(f"dataset {name!r}: no usable image/mask pair in {images} and {masks}"
                         + (f" ({len(quarantine)} quarantined; first: {first})" if quarantine else ""))
    prov = {k: "derived" for k in DERIVED}
    for attr, p in (provenance or {}).items():
        prov[attr] = p
    reg = register_dataset(
        engine, name, "imported", str(root), records, provenance=prov,
        info={"images": str(images), "masks": str(masks), "alpha": str(alpha) if alpha else None,
              "trimaps": str(trimaps) if trimaps else None, "metadata": str(metadata) if metadata else None,
              "mask_encoding": mask_encoding,
              "quarantine": quarantine},
    )
    return ImportResult(reg.id, len(records), sum(not r.has_subject for r in records), quarantine, warnings, reg.revision, reg.created)
