"""``evalhub lift``: run a release on a folder of photos and write its cut-outs, as the product would.

Per photo, the release predicts a probability map at the photo's full resolution (through the
manifest's upsampler, :mod:`evalhub.upsample`) and a gate score (calibrated when the release
carries a calibrator, :mod:`evalhub.gate`). The gate accepts at the release threshold. When it
accepts, the binarised map is split into subjects (:mod:`evalhub.subjects`, the same rule scoring
uses) and written out::

    OUT/<photo>/subject_01.png ...  one RGBA cut-out per subject, largest first: the photo's colours,
                                    alpha = the probability map on the pixels nearest that subject
                                    and within the feather band of it, 0 elsewhere
    OUT/<photo>/union.png           all subjects: alpha = the map within the feather band of any
    OUT/<photo>.json                sidecar: confidence (raw and calibrated), threshold, decision,
                                    upsampler, subjects with areas and boxes, files

(``<photo>`` is the photo's file name, suffix included, so ``a.jpg`` and ``a.png`` do not collide.)

A rejected photo gets its sidecar only. The feather band is ``ceil(0.008 x diagonal)`` pixels (the
DAVIS boundary tolerance): soft edge pixels below 0.5 stay with their subject, while stray specks
the subject rule dropped stay out. Photos that fail to decode are listed in ``OUT/failures.json``
and on the terminal; the rest go on. The folder is owned (:mod:`synth.folders`): re-running the
same release on the same photos rewrites its own files; another release or photo folder is refused.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from evalhub.metrics import boundary_tolerance
from evalhub.subjects import SubjectSpec, Subjects, split_subjects

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


class LiftError(ValueError):
    """A lift that cannot run as asked (names the release, folder or option)."""


@dataclass
class LiftResult:
    """What a lift wrote.

    Attributes:
        out: the output folder.
        n_photos, n_accepted, n_subjects: counts.
        failures: ``{"photo", "reason"}`` for each photo that could not be read.
    """

    out: Path
    n_photos: int = 0
    n_accepted: int = 0
    n_subjects: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)


def feather_px(shape: tuple[int, ...]) -> int:
    """The feather band in pixels: the DAVIS boundary tolerance ``ceil(0.008 x diagonal)``
    (:func:`evalhub.metrics.boundary_tolerance`)."""
    return boundary_tolerance(shape)


def subject_alphas(prob: np.ndarray, subjects: Subjects, feather: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Per-subject and union alpha mattes from a probability map.

    Every pixel within ``feather`` pixels (Euclidean) of a subject belongs to its nearest subject;
    its alpha there is the map's value. The subjects' alphas sum to the union's.

    Args:
        prob: ``(H, W)`` float32 in [0, 1].
        subjects: the map's subjects (:func:`evalhub.subjects.split_subjects`).
        feather: band width in pixels (>= 0).

    Returns:
        ``([alpha_1, ...], union)``, each ``(H, W)`` uint8 (``round(255 p)``).
    """
    a8 = np.round(np.clip(prob, 0, 1) * 255).astype(np.uint8)
    if subjects.n == 0:
        return [], np.zeros_like(a8)
    outside = (subjects.labels == 0).astype(np.uint8)
    dist, nearest = cv2.distanceTransformWithLabels(outside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE, labelType=cv2.DIST_LABEL_PIXEL)
    # nearest[i] numbers the zero pixel (a subject pixel) nearest to i; map it to that pixel's subject
    seeds = np.flatnonzero(outside.reshape(-1) == 0)
    owner_of_seed = np.zeros(int(nearest.max()) + 1, np.int32)
    owner_of_seed[nearest.reshape(-1)[seeds]] = subjects.labels.reshape(-1)[seeds]
    owner = owner_of_seed[nearest]
    band = dist <= feather
    union = np.where(band, a8, 0).astype(np.uint8)
    return [np.where(band & (owner == k), a8, 0).astype(np.uint8) for k in range(1, subjects.n + 1)], union


def _rgba_png(rgb: np.ndarray, alpha: np.ndarray) -> bytes:
    bgra = np.dstack([rgb[..., ::-1], alpha])
    ok, buf = cv2.imencode(".png", bgra, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:  # pragma: no cover
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def list_photos(folder: Path) -> list[Path]:
    """The photos of a folder (by suffix, case-insensitive), sorted by name; not recursive."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)


def lift(engine: Any, release: str, photos: str | Path, out: str | Path, *, subjects: SubjectSpec = SubjectSpec(),
         progress: bool = True) -> LiftResult:
    """Lift every photo of ``photos`` with ``release`` into ``out`` (see the module docstring).

    Raises:
        KeyError: unknown release.
        LiftError: the release is a predictions folder (no model to run), the photo folder is
            missing or empty, or ``out`` holds something else (named).
        ReleaseError: the ONNX model does not match its manifest.
    """
    from db.catalog import get_release
    from evalhub.gate import release_calibrator
    from evalhub.releases import OnnxRelease, ReleaseManifest, proxy_confidence
    from synth.folders import FolderError, Marker, ensure_folder, foreign_entries, locked, read_marker, write_marker
    from synth.io import BadInput, atomic_write_bytes, atomic_write_text, printable_path, read_rgb, utf8_name

    rel = get_release(engine, release)
    if rel["kind"] != "onnx":
        raise LiftError(f"release {rel['name']}@{rel['revision']} is a predictions folder ({rel['path']}): lift needs an ONNX release")
    photos, out = Path(photos), Path(out).resolve()
    if not photos.is_dir():
        raise LiftError(f"--photos {photos}: not a folder")
    files = list_photos(photos)
    if not files:
        raise LiftError(f"--photos {photos}: no photos ({', '.join(PHOTO_SUFFIXES)})")
    manifest = ReleaseManifest.model_validate(rel["manifest"])
    calibrator = release_calibrator(rel["manifest"])
    identity = {"release": f"{rel['name']}@{rel['revision']}", "photos": str(photos.resolve()), "subjects": asdict(subjects)}
    try:
        ensure_folder(out)
        with locked(out):
            marker = read_marker(out)
            if marker is None and foreign_entries(out):
                raise LiftError(f"{out} holds files no liftlab command wrote; choose another --out")
            if marker is not None and (marker.kind != "lift" or marker.identity != identity):
                raise LiftError(f"{out} holds {marker.kind} output of `{marker.command}` "
                                f"({marker.identity.get('release')}, {marker.identity.get('photos') or marker.identity.get('dataset')}); choose another --out")
            write_marker(out, Marker("lift", "evalhub lift", identity))
            model = OnnxRelease(rel["path"], manifest)
            result = LiftResult(out)
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=len(files), desc=f"lifting with {identity['release']}", unit="photo")
            try:
                for start in range(0, len(files), manifest.batch_size):
                    batch = []
                    for f in files[start : start + manifest.batch_size]:
                        if not utf8_name(f):
                            result.failures.append({"photo": printable_path(f), "reason": "file name is not valid UTF-8"})
                            continue
                        try:
                            batch.append((f, read_rgb(f)))
                        except BadInput as exc:
                            result.failures.append({"photo": printable_path(f), "reason": exc.reason})
                    for (f, rgb), (prob, conf) in zip(batch, model.predict([im for _, im in batch])):
                        raw = proxy_confidence(prob) if conf is None else float(conf)
                        score = float(calibrator.apply([raw])[0]) if calibrator is not None else raw
                        accepted = bool(np.isfinite(score) and score >= rel["threshold"])
                        side: dict[str, Any] = {
                            "photo": f.name, "width": int(rgb.shape[1]), "height": int(rgb.shape[0]),
                            "release": identity["release"], "confidence": score, "raw_confidence": raw,
                            "confidence_proxy": conf is None, "calibrated": calibrator is not None,
                            "threshold": float(rel["threshold"]), "accepted": accepted,
                            "upsample": manifest.upsample.label(), "subjects": [], "union": None,
                        }
                        if accepted:
                            subs = split_subjects(prob >= 0.5, subjects)
                            alphas, union = subject_alphas(prob, subs, feather_px(prob.shape))
                            for k, alpha in enumerate(alphas, 1):
                                name = f"{f.name}/subject_{k:02d}.png"
                                atomic_write_bytes(out / name, _rgba_png(rgb, alpha))
                                x, y, w, h = (int(v) for v in subs.boxes[k - 1])
                                side["subjects"].append({"index": k, "area_px": int(subs.areas[k - 1]), "box_xywh": [x, y, w, h], "file": name})
                            if alphas:
                                atomic_write_bytes(out / f.name / "union.png", _rgba_png(rgb, union))
                                side["union"] = f"{f.name}/union.png"
                            result.n_accepted += 1
                            result.n_subjects += len(alphas)
                        atomic_write_text(out / f"{f.name}.json", json.dumps(side, indent=2))
                        result.n_photos += 1
                    if bar:
                        bar.update(len(files[start : start + manifest.batch_size]))
            finally:
                if bar:
                    bar.close()
            atomic_write_text(out / "failures.json", json.dumps(result.failures, indent=2))
            write_marker(out, Marker("lift", "evalhub lift", identity, "complete"))
            return result
    except FolderError as exc:
        raise LiftError(str(exc)) from None
