"""Raters' corrections of a mask: brush strokes applied to a starting mask, optional snapping of the
edited edges to the photo's edges, and the PNG form the catalog stores (:class:`db.models.TruthVersion`).

Conventions: masks are ``(H, W)`` bool, ``True`` = subject. Points are ``(x, y)`` in photo pixels
(``x`` the column, ``y`` the row; pixel centres at integers). A stroke of radius ``r`` paints every
pixel whose centre lies within Euclidean distance ``r`` of its polyline (a lone point: a disk), the
round brush of every paint program; strokes apply in the order drawn, ``add`` setting pixels and
``erase`` clearing them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from synth.io import decode_png_mask, encode_png

MAX_RADIUS = 400
MAX_POINTS = 20_000
MAX_STROKE_WORK = 3e8
"""Most pixel visits the strokes of one answer may cost (:func:`stroke_work`), a few seconds."""


class Stroke(BaseModel):
    """One brush stroke as drawn: ``mode`` add or erase, ``radius`` in photo pixels (1 to 400), and
    its ``points`` ``[x, y]`` in photo pixels (1 to 20,000 of them)."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["add", "erase"]
    radius: float = Field(ge=1, le=MAX_RADIUS)
    points: list[tuple[float, float]] = Field(min_length=1, max_length=MAX_POINTS)


def stroke_footprint(shape: tuple[int, int], stroke: Stroke) -> np.ndarray:
    """The ``(H, W)`` bool pixels a stroke paints: centres within ``radius`` of its polyline.

    Each segment ``a -> b`` is evaluated on its bounding box grown by the radius: the distance of a
    centre ``p`` to the segment is ``|p - (a + t (b - a))|`` with ``t = clip(<p - a, b - a> / |b - a|^2, 0, 1)``.
    Points outside the photo paint the part of the brush inside it.
    """
    h, w = shape
    out = np.zeros((h, w), bool)
    pts = np.asarray(stroke.points, np.float64).reshape(-1, 2)
    segs = np.stack([pts, pts], axis=1) if len(pts) == 1 else np.stack([pts[:-1], pts[1:]], axis=1)
    r = float(stroke.radius)
    for (ax, ay), (bx, by) in segs:
        x0, x1 = max(0, int(np.floor(min(ax, bx) - r))), min(w, int(np.ceil(max(ax, bx) + r)) + 1)
        y0, y1 = max(0, int(np.floor(min(ay, by) - r))), min(h, int(np.ceil(max(ay, by) + r)) + 1)
        if x0 >= x1 or y0 >= y1:
            continue
        px = np.arange(x0, x1, dtype=np.float64)[None, :] - ax
        py = np.arange(y0, y1, dtype=np.float64)[:, None] - ay
        dx, dy = bx - ax, by - ay
        length2 = dx * dx + dy * dy
        t = np.clip((px * dx + py * dy) / length2, 0.0, 1.0) if length2 > 0 else 0.0
        ex, ey = px - t * dx, py - t * dy
        out[y0:y1, x0:x1] |= ex * ex + ey * ey <= r * r
    return out


def stroke_work(stroke: Stroke) -> float:
    """Pixel visits :func:`stroke_footprint` makes for a stroke: the sum over its segments of their
    boxes grown by the radius."""
    pts = np.asarray(stroke.points, np.float64).reshape(-1, 2)
    side = 2 * float(stroke.radius) + 1
    if len(pts) == 1:
        return side * side
    d = np.abs(np.diff(pts, axis=0))
    return float(np.sum((d[:, 0] + side) * (d[:, 1] + side)))


def apply_strokes(mask: np.ndarray, strokes: Sequence[Stroke]) -> np.ndarray:
    """The mask after the strokes, in order (``add`` sets, ``erase`` clears).

    Args:
        mask: ``(H, W)`` bool starting mask (not modified).
        strokes: as drawn.

    Returns:
        A new ``(H, W)`` bool mask.
    """
    out = np.array(mask, dtype=bool, copy=True)
    for s in strokes:
        foot = stroke_footprint(out.shape, s)
        if s.mode == "add":
            out |= foot
        else:
            out &= ~foot
    return out


def snap_to_edges(rgb: np.ndarray, mask: np.ndarray, near: np.ndarray, band: int = 6, iterations: int = 4) -> np.ndarray:
    """Move the mask's boundary onto the photo's edges near the pixels a rater changed (GrabCut).

    Within ``band`` pixels of the mask's boundary, and only where that boundary lies within
    ``band`` of ``near`` (the pixels the strokes changed), each pixel is relabelled by GrabCut's
    iterated graph cut with colour GMMs (Rother, Kolmogorov, Blake, "GrabCut", SIGGRAPH 2004;
    OpenCV ``cv2.grabCut``): inside the band as probable subject / background per the mask,
    everything else fixed as the mask says. Far from the strokes nothing changes.

    Args:
        rgb: ``(H, W, 3)`` uint8 photo.
        mask: ``(H, W)`` bool edited mask.
        near: ``(H, W)`` bool pixels the strokes changed.
        band: half-width of the relabelled band in pixels (>= 1).
        iterations: GrabCut iterations.

    Returns:
        The snapped ``(H, W)`` bool mask (the mask itself when there is nothing to snap, or one
        side has too few pixels for a colour model).

    Raises:
        ValueError: shapes differ or ``band < 1``.
    """
    if rgb.shape[:2] != mask.shape or near.shape != mask.shape:
        raise ValueError(f"photo {rgb.shape[:2]}, mask {mask.shape} and changed pixels {near.shape} must have one size")
    if band < 1:
        raise ValueError(f"band must be >= 1, got {band}")
    if not near.any() or mask.all() or not mask.any():
        return mask.copy()
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    m8 = mask.astype(np.uint8)
    edge = cv2.dilate(m8, k) != cv2.erode(m8, k)  # within band of the boundary
    region = edge & (cv2.dilate(near.astype(np.uint8), k) > 0)
    if not region.any():
        return mask.copy()
    ys, xs = np.nonzero(region)
    pad = 4 * band  # enough fixed pixels of each side around the band for the colour models
    y0, y1 = max(0, ys.min() - pad), min(mask.shape[0], ys.max() + pad + 1)
    x0, x1 = max(0, xs.min() - pad), min(mask.shape[1], xs.max() + pad + 1)
    crop_mask, crop_region = mask[y0:y1, x0:x1], region[y0:y1, x0:x1]
    labels = np.where(crop_mask, cv2.GC_FGD, cv2.GC_BGD).astype(np.uint8)
    labels[crop_region] = np.where(crop_mask[crop_region], cv2.GC_PR_FGD, cv2.GC_PR_BGD)
    if (labels == cv2.GC_FGD).sum() < 20 or (labels == cv2.GC_BGD).sum() < 20:
        return mask.copy()
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    crop_rgb = np.ascontiguousarray(rgb[y0:y1, x0:x1, ::-1])  # OpenCV's BGR order
    cv2.grabCut(crop_rgb, labels, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    out = mask.copy()
    out[y0:y1, x0:x1] = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    return out


def prediction_mask(run_path: str | Path, sample_key: str, shape: tuple[int, int]) -> np.ndarray:
    """A run's prediction of a photo as corrections use it: its probability map
    (``RUN/predictions/masks/<key>.png``) brought to the photo's ``(H, W)`` (bilinear) and taken at
    0.5, as ``(H, W)`` bool.

    Raises:
        synth.io.BadInput: the map cannot be read.
    """
    from evalhub.releases import read_probability
    from raters.render import fit_alpha

    prob = read_probability(str(Path(run_path) / "predictions" / "masks" / f"{sample_key}.png"), "probability")
    return fit_alpha(prob, shape) >= 0.5


def mask_to_png(mask: np.ndarray) -> bytes:
    """An ``(H, W)`` bool mask as an 8-bit grey PNG, 0 background and 255 subject."""
    return encode_png(mask.astype(np.uint8) * 255)


def png_to_mask(data: bytes, what: str = "stored mask") -> np.ndarray:
    """The ``(H, W)`` bool mask of a PNG written by :func:`mask_to_png` (:func:`synth.io.decode_png_mask`).

    Raises:
        synth.io.BadInput: the bytes are no 8-bit grey image.
    """
    return decode_png_mask(data, what)


class ExportError(ValueError):
    """An export that cannot be written as asked (folder or dataset named)."""


@dataclass
class ExportResult:
    """What :func:`export_corrections` wrote: the folder, how many photos, whether it was already
    there (``reused``: the folder held this very export), and the photos left out (``skipped``:
    ``(sample key, reason)``, e.g. a photo file gone from the dataset's folder)."""

    out: Path
    n: int
    reused: bool = False
    skipped: list[tuple[str, str]] = field(default_factory=list)


def export_corrections(engine, dataset: str, out: str | Path) -> ExportResult:
    """Write a dataset's corrected ground truth as a foreground folder ``synth`` reads.

    ``out/images/<key><ext>`` (the photo, copied byte for byte), ``out/masks/<key>.png`` (the
    newest correction, 0 / 255) and ``out/corrections.csv`` (``sample_id, version, rater,
    created_at, campaign, base, snapped``), for every sample with a correction. A recipe takes it as
    ``kind: image_mask`` with ``images``, ``masks`` and ``metadata: corrections.csv``. The catalog
    stays the source of truth; the folder is an owned export (:mod:`synth.folders`): exporting the
    same versions again writes nothing, and a folder holding other content is refused.

    Raises:
        KeyError: no such dataset.
        ExportError: no corrections, or a folder holding something else (named).
    """
    from db.catalog import truth_versions
    from synth.folders import FolderError, Marker, ensure_folder, foreign_entries, locked, read_marker, write_marker
    from synth.io import atomic_write_bytes, atomic_write_text

    newest = truth_versions(engine, dataset)
    if not newest:
        raise ExportError(f"dataset {dataset} has no ground-truth corrections to export")
    from db.catalog import dataset_samples

    ds, samples = dataset_samples(engine, dataset)
    by_key = {s["sample_key"]: s for s in samples}
    out = Path(out).resolve()
    identity = {"dataset": f"{ds['name']}@{ds['revision']}", "versions": {k: v[0].version for k, v in sorted(newest.items())}}
    try:
        ensure_folder(out)
        with locked(out):
            marker = read_marker(out)
            if marker is not None and marker.kind == "corrections" and marker.identity == identity and marker.state == "complete":
                return ExportResult(out, len(newest), reused=True)
            if marker is None and foreign_entries(out):
                raise ExportError(f"{out} holds files no liftlab command wrote; choose another --out")
            if marker is not None and (marker.kind != "corrections" or marker.identity.get("dataset") != identity["dataset"]
                                       or marker.state == "complete"):
                raise ExportError(f"{out} holds {marker.kind} output of `{marker.command}` ({marker.identity.get('dataset')}"
                                  f"{', other versions' if marker.kind == 'corrections' else ''}); export into another --out")
            write_marker(out, Marker("corrections", "raters corrections export", identity))
            table = io.StringIO()
            w = csv.writer(table, lineterminator="\n")
            w.writerow(["sample_id", "version", "rater", "created_at", "campaign", "base", "snapped"])
            skipped = []
            for key, (tv,) in sorted(newest.items()):
                photo = Path(ds["root"]) / by_key[key]["image_path"]
                try:
                    data = photo.read_bytes()
                except OSError as exc:  # the rest goes on; the photo is listed
                    skipped.append((key, f"{photo}: {exc.strerror or exc}"))
                    continue
                atomic_write_bytes(out / "images" / f"{key}{photo.suffix.lower()}", data)
                atomic_write_bytes(out / "masks" / f"{key}.png", tv.mask_png)
                w.writerow([key, tv.version, tv.rater, tv.created_at, tv.campaign or "", tv.base, int(tv.snapped)])
            atomic_write_text(out / "corrections.csv", table.getvalue())
            write_marker(out, Marker("corrections", "raters corrections export", identity, "complete"))
            return ExportResult(out, len(newest) - len(skipped), skipped=skipped)
    except FolderError as exc:
        raise ExportError(str(exc)) from None
