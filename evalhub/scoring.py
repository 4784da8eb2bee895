"""``evalhub score``: run a release on a catalog dataset, score every image, calibrate the gate,
slice, and store the run in the catalog; the run folder gets exports of it.

The catalog is the source of truth (per-sample scores and metric values, the whole summary; read
them with :func:`evalhub.runs.read_run`). The run folder is owned (:mod:`synth.folders`): it holds
one run, is locked while it is written, and a folder holding another run is refused. Exports::

    RUN/samples.parquet          one row per scored image: metrics, confidence, accepted,
                                 acceptable, has_subject, prediction_resized, attr_* columns
    RUN/summary.json             overall means with CIs, gate calibration, slices, quarantine,
                                 warnings, settings
    RUN/predictions/masks/*.png  the release's probability maps (8-bit), and
    RUN/predictions/confidences.csv
                                 so the run folder is itself a predictions folder (raters, reports)
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from evalhub import metrics as M
from evalhub import registry as R
from evalhub.calibration import calibration_report, check_confidences
from evalhub.datasets import read_alpha, read_mask, read_trimap
from evalhub.gate import release_calibrator
from evalhub.releases import PROXY_DESCRIPTION, OnnxRelease, ReleaseManifest, proxy_confidence, read_probability, scan_predictions, write_confidences
from evalhub.slicing import ATTR_PREFIX, MIN_N, slice_table
from evalhub.stats import N_BOOT, bootstrap_mean
from evalhub.subjects import SubjectSpec, pooled_quality, subject_metrics
from synth.executors import chunk, default_workers, register, run_units
from synth.folders import FolderError, Marker, ensure_folder, foreign_entries, locked, read_marker, write_marker
from synth.io import BadInput, atomic_write_bytes, atomic_write_text, decode_png_mask, encode_png, read_rgb

MODULE = "evalhub.scoring"
SUMMARY_METRICS = R.names(level=R.IMAGE, summary=True)


TRUTHS = ("original", "corrected")


class ScoreError(ValueError):
    """A run that cannot be scored as asked: missing predictions, bad confidences (ids named)."""


@dataclass
class ScoreContext:
    """Everything a worker needs to score a batch (picklable)."""

    root: str
    release_kind: str
    release_path: str
    manifest: dict[str, Any] | None
    prediction_files: dict[str, str]
    confidences: dict[str, float] | None
    bound_th: float
    dilation_ratio: float
    out_dir: str
    onnx_threads: int = 0
    encoding: str = "probability"
    mask_encoding: str = "0-255"
    sod: bool = False
    subjects: dict[str, Any] = field(default_factory=dict)


CORE_IMAGE_METRICS = tuple(m for m in R.names(level=R.IMAGE, computed_by="core") if m != "pred_area_fraction")
SOD_IMAGE_METRICS = R.names(level=R.IMAGE, computed_by="sod")
SUBJECT_METRICS = R.names(level=R.IMAGE, computed_by="subjects")
_SOD: Any = None


def _sod_scorer() -> Any:
    """One :class:`evalhub.sod.SODScorer` per process."""
    global _SOD
    if _SOD is None:
        from evalhub.sod import SODScorer

        _SOD = SODScorer()
    return _SOD


_SESSIONS: dict[tuple[str, int, str, int], OnnxRelease] = {}


def _onnx(path: str, manifest: dict[str, Any], threads: int) -> OnnxRelease:
    """One ONNX session per process for a model file (and its mtime), manifest and thread count."""
    mtime = Path(path).stat().st_mtime_ns if Path(path).is_file() else -1
    key = (path, mtime, json.dumps(manifest, sort_keys=True), threads)
    rel = _SESSIONS.get(key)
    if rel is None:
        rel = _SESSIONS[key] = OnnxRelease(path, ReleaseManifest.model_validate(manifest), threads=threads)
    return rel


def _quarantine(sample: dict, path: str, reason: str) -> dict:
    return {"quarantine": {"id": sample["sample_key"], "path": path, "reason": reason}}


@register("evalhub.score_batch")
def score_batch(ctx: ScoreContext, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Score one batch of samples; an unreadable file quarantines its sample only."""
    root = Path(ctx.root)
    loaded, results = [], []
    for s in batch:
        try:
            if s.get("truth_png") is not None:  # a rater's corrected ground truth (``--truth corrected``)
                gt = decode_png_mask(s["truth_png"], f"{s['sample_key']} ground truth v{s['truth_version']}")
                s = {**s, "has_subject": bool(gt.any())}  # a correction may have erased the subject
            else:
                gt = read_mask(root / s["mask_path"], ctx.mask_encoding)
            image = read_rgb(root / s["image_path"]) if ctx.release_kind == "onnx" else None
        except BadInput as exc:
            results.append(_quarantine(s, exc.path, exc.reason))
            continue
        loaded.append((s, gt, image))
    preds: list[tuple[np.ndarray | None, float | None, str | None]] = []
    if ctx.release_kind == "onnx" and loaded:
        preds = [(p, c, None) for p, c in _onnx(ctx.release_path, ctx.manifest, ctx.onnx_threads).predict([im for _, _, im in loaded])]
    else:
        for s, _, _ in loaded:
            path = ctx.prediction_files[s["sample_key"]]
            try:
                preds.append((read_probability(path, ctx.encoding), None if ctx.confidences is None else ctx.confidences[s["sample_key"]], None))
            except BadInput as exc:
                preds.append((None, None, exc.reason))
    for (s, gt, _), (prob, conf, err) in zip(loaded, preds):
        if prob is None:
            results.append(_quarantine(s, ctx.prediction_files.get(s["sample_key"], ""), f"prediction: {err}"))
            continue
        if not np.isfinite(prob).all():
            bad = int((~np.isfinite(prob)).sum())
            results.append(_quarantine(s, ctx.prediction_files.get(s["sample_key"], ctx.release_path),
                                       f"prediction: {bad} non-finite value(s) (NaN or infinite) in the probability map"))
            continue
        resized = prob.shape != gt.shape
        if resized:
            prob = np.clip(cv2.resize(prob, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_LINEAR), 0, 1)
        alpha = trimap = None
        notes = []
        if s.get("alpha_path") and s.get("trimap_path"):
            try:
                alpha, trimap = read_alpha(root / s["alpha_path"]), read_trimap(root / s["trimap_path"])
                if alpha.shape != gt.shape or trimap.shape != gt.shape:
                    notes.append("alpha/trimap size differs from the mask: matting errors skipped")
                    alpha = trimap = None
            except BadInput as exc:
                notes.append(f"matting ground truth unreadable ({exc.reason}): matting errors skipped")
                alpha = trimap = None
        pred = prob >= 0.5
        pred_px = int(np.count_nonzero(pred))
        row: dict[str, Any] = {"sample_key": s["sample_key"], "split": s.get("split"), "has_subject": bool(s["has_subject"]),
                               "image_path": s["image_path"], "mask_path": s["mask_path"],
                               "height": gt.shape[0], "width": gt.shape[1], "prediction_resized": resized,
                               "pred_area_fraction": pred_px / pred.size}
        prob_u8 = np.round(prob * 255).astype(np.uint8)
        if s["has_subject"]:
            row.update(M.image_metrics(prob, gt, alpha, trimap, ctx.bound_th, ctx.dilation_ratio))
            row.update(subject_metrics(pred, gt, SubjectSpec(**ctx.subjects)))
            # pixel counts for the pooled (all pixels of the dataset as one) numbers; exact integers
            row.update({"pred_px": pred_px, "true_px": int(np.count_nonzero(gt)),
                        "tp_px": int(round(row["precision"] * pred_px)) if pred_px else 0})
            if ctx.sod:
                values, e_curve, f_curve = _sod_scorer().image(prob_u8, gt)
                row.update(values)
                row["sod_curves"] = (e_curve, f_curve)
        else:
            row.update({k: float("nan") for k in CORE_IMAGE_METRICS + SUBJECT_METRICS + (SOD_IMAGE_METRICS if ctx.sod else ())})
        row["confidence"] = proxy_confidence(prob) if conf is None else conf
        row["notes"] = notes
        atomic_write_bytes(Path(ctx.out_dir) / "predictions" / "masks" / f"{s['sample_key']}.png", encode_png(prob_u8))
        results.append(row)
    return results


@dataclass
class ScoreResult:
    """A finished run: its folder, table and summary; ``reused`` when the folder already held this
    very run (same release and dataset revisions, same settings) and nothing was scored again."""

    out: Path
    table: pd.DataFrame
    summary: dict[str, Any]
    run_id: int
    quarantine: list[dict[str, str]] = field(default_factory=list)
    reused: bool = False


def score(
    engine: Any,
    release: str,
    dataset: str,
    out: str | Path,
    *,
    accept_iou: float = 0.8,
    bound_th: float = M.DAVIS_BOUND_TH,
    dilation_ratio: float = M.BOUNDARY_IOU_DILATION_RATIO,
    target_precision: float = 0.95,
    min_n: int = MIN_N,
    intersections: str | None = None,
    split: str | None = None,
    limit: int | None = None,
    allow_missing: bool = False,
    workers: int | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
    progress: bool = True,
    sod: bool = False,
    subjects: SubjectSpec = SubjectSpec(),
    truth: str = "original",
) -> ScoreResult:
    """Score ``release`` on ``dataset`` into the folder ``out`` and the catalog.

    An extraction is *acceptable* when the image has a subject and its IoU >= ``accept_iou``; a
    negative never is. It is *accepted* when its confidence >= the release threshold.

    Args:
        engine: a migrated catalog engine.
        bound_th: boundary F1 tolerance (fraction of the diagonal, or pixels when >= 1).
        split: score only samples of this split (``test``...).
        limit: score only the first ``limit`` samples (sorted by key).
        allow_missing: score the samples that have predictions and list the others, instead of
            failing.
        workers: processes (default all cores; ONNX sessions get one thread each when > 1).
        sod: also compute the salient-object benchmark set (:mod:`evalhub.sod`, PySODMetrics):
            per image S-measure, weighted F, adaptive and mean E- and F-measure, and per dataset
            max and mean E- and F-measure (``summary["sod"]``); about 19 ms more per ECSSD photo.
        subjects: how prediction and truth split into subjects for Panoptic Quality
            (:mod:`evalhub.subjects`); the dataset-level PQ, SQ, RQ are in ``summary["subjects"]``.
        truth: ``original`` (the dataset's mask files) or ``corrected``: each sample's newest
            ground-truth correction by raters where it has one (:func:`db.catalog.truth_versions`),
            its mask file elsewhere. The versions used are in the run's settings
            (``truth_versions``: sample key -> version), so a run is tied to the ground truth it saw.

    Raises:
        KeyError: unknown release or dataset.
        ScoreError: missing predictions or confidences (ids listed), NaN/infinite/out-of-range
            confidences from a model (ids listed), nothing left to score.
        ReleaseError: the ONNX model does not match its manifest.
    """
    from db.catalog import dataset_samples, get_release, truth_versions

    if truth not in TRUTHS:
        raise ScoreError(f"--truth {truth!r} is not one of: {', '.join(TRUTHS)}")
    out = Path(out).resolve()
    rel = get_release(engine, release)
    ds, samples = dataset_samples(engine, dataset)
    used: dict[str, int] = {}
    if truth == "corrected":
        newest = truth_versions(engine, f"{ds['name']}@{ds['revision']}")
        samples = [dict(s) for s in samples]
        for s in samples:
            tv = newest.get(s["sample_key"])
            if tv:
                s["truth_png"], s["truth_version"] = tv[0].mask_png, tv[0].version
                used[s["sample_key"]] = tv[0].version
    settings = {
        "release": f"{rel['name']}@{rel['revision']}", "dataset": f"{ds['name']}@{ds['revision']}", "split": split, "limit": limit, "accept_iou": accept_iou,
        "boundary_tolerance": bound_th, "boundary_iou_dilation_ratio": dilation_ratio,
        "target_precision": target_precision, "min_n": min_n, "n_boot": n_boot, "seed": seed,
        "threshold": rel["threshold"], "intersections": intersections, "allow_missing": allow_missing, "sod": sod,
        "subjects": asdict(subjects),
    }
    if truth != "original":  # absent for the original truth, so earlier runs keep their identity
        settings["truth"], settings["truth_versions"] = truth, used
    try:
        ensure_folder(out)
        with locked(out):
            return _score_locked(engine, rel, ds, samples, out, settings, workers=workers, executor=executor,
                                 ray_address=ray_address, progress=progress)
    except FolderError as exc:
        raise ScoreError(str(exc)) from None


def _claim_run_folder(engine: Any, out: Path, identity: dict[str, Any]) -> ScoreResult | None:
    """Check that this run may be written into ``out`` (its lock held). Returns the stored run when
    the folder already holds this very run (a no-op re-run).

    Raises:
        ScoreError: the folder holds another run (named, with what depends on it), files no liftlab
            command wrote, or a synth build.
    """
    from db.catalog import dependents, find_run
    from evalhub.runs import read_run

    stored = find_run(engine, str(out))
    if stored is not None:
        if stored.release == identity["release"] and stored.dataset == identity["dataset"] and stored.settings == identity:
            rt = read_run(engine, stored.id)
            return ScoreResult(out, rt.table, rt.summary, stored.id, list(rt.summary.get("quarantine", [])), reused=True)
        dep = dependents(engine, "run", stored.id)
        raise ScoreError(f"{out} holds run {stored.id} ({stored.release} on {stored.dataset}"
                         f"{', other settings' if stored.release == identity['release'] and stored.dataset == identity['dataset'] else ''}) "
                         f"with {dep.describe()}; score into another --out (or delete that run with `evalhub delete run {out}`)")
    marker = read_marker(out)
    if marker is None:
        foreign = foreign_entries(out)
        if foreign:
            raise ScoreError(f"{out} holds files no liftlab command wrote ({', '.join(foreign[:5])}); choose another --out")
    elif marker.kind != "run":
        raise ScoreError(f"{out} holds a {marker.kind} written by `{marker.command}`; choose another --out")
    elif marker.identity.get("release") != identity["release"] or marker.identity.get("dataset") != identity["dataset"]:
        raise ScoreError(f"{out} holds an {marker.state} run of {marker.identity.get('release')} on {marker.identity.get('dataset')} "
                         "from another catalog or an interrupted command; choose another --out")
    return None


def _score_locked(engine: Any, rel: dict[str, Any], ds: dict[str, Any], samples: list[dict[str, Any]], out: Path,
                  settings: dict[str, Any], *, workers: int | None, executor: str, ray_address: str | None,
                  progress: bool) -> ScoreResult:
    """Score with the run folder's lock held (see :func:`score`)."""
    from db.catalog import register_run

    t0 = time.perf_counter()
    release = rel["name"]
    split, limit, allow_missing = settings["split"], settings["limit"], settings["allow_missing"]
    accept_iou, bound_th, dilation_ratio = settings["accept_iou"], settings["boundary_tolerance"], settings["boundary_iou_dilation_ratio"]
    target_precision, min_n, n_boot, seed = settings["target_precision"], settings["min_n"], settings["n_boot"], settings["seed"]
    intersections = settings["intersections"]
    dataset = ds["name"]
    reused = _claim_run_folder(engine, out, settings)
    if reused is not None:
        return reused
    write_marker(out, Marker("run", "evalhub score", settings))
    if split is not None:
        samples = [s for s in samples if s["split"] == split]
    if limit is not None:
        samples = samples[:limit]
    if not samples:
        raise ScoreError(f"dataset {dataset!r} has no samples{f' in split {split!r}' if split else ''}")
    (out / "predictions" / "masks").mkdir(parents=True, exist_ok=True)
    warnings: list[str] = []
    missing: list[str] = []
    files: dict[str, str] = {}
    confidences = None
    if rel["kind"] == "predictions":
        found, confidences = scan_predictions(rel["path"])
        keys = {s["sample_key"] for s in samples}
        missing = sorted(keys - set(found))
        extra = sorted(set(found) - keys)
        if extra:
            warnings.append(f"{len(extra)} prediction(s) for ids not in the scored samples, ignored: {extra[:20]}")
        if missing and not allow_missing:
            raise ScoreError(f"release {release!r}: {len(missing)} sample(s) of {dataset!r} have no prediction in {rel['path']}/masks: {missing[:50]}")
        if missing:
            warnings.append(f"{len(missing)} sample(s) without a prediction were not scored: {missing[:50]}")
            gone = set(missing)
            samples = [s for s in samples if s["sample_key"] not in gone]
        if confidences is not None:
            no_conf = sorted(s["sample_key"] for s in samples if s["sample_key"] not in confidences)
            if no_conf:
                raise ScoreError(f"release {release!r}: confidences.csv has no row for ids {no_conf[:50]}")
        files = {k: str(v) for k, v in found.items() if k in keys}
        if not samples:
            raise ScoreError(f"release {release!r}: nothing to score")
    workers = default_workers() if workers is None else max(1, workers)
    # one onnxruntime thread per worker process; all cores for a single inline session
    onnx_threads = 0 if workers == 1 else 1
    if rel["kind"] == "onnx":
        _onnx(rel["path"], rel["manifest"], onnx_threads)  # fail early on a mismatch; reused inline
    encoding = (rel["manifest"] or {}).get("encoding", "probability") if rel["kind"] == "predictions" else "probability"
    ctx = ScoreContext(ds["root"], rel["kind"], rel["path"], rel["manifest"], files, confidences, bound_th, dilation_ratio,
                       str(out), onnx_threads=onnx_threads, encoding=encoding,
                       mask_encoding=(ds["info"] or {}).get("mask_encoding", "0-255"), sod=settings["sod"],
                       subjects=settings["subjects"])
    bs = (rel["manifest"] or {}).get("batch_size", 8) if rel["kind"] == "onnx" else 8
    batches = [samples[i : i + bs] for i in range(0, len(samples), bs)]
    units = [("evalhub.score_batch", c) for c in chunk(batches, workers, per_worker=4, max_size=8)]
    rows, quarantine = [], []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(batches), desc=f"scoring {release} on {dataset}", unit="batch")
    try:
        for res in run_units(ctx, units, workers=workers, executor=executor, ray_address=ray_address,
                             on_done=bar.update if bar else None, modules=(MODULE,)):
            for batch_res in res:
                for r in batch_res:
                    (quarantine.append(r["quarantine"]) if "quarantine" in r else rows.append(r))
    finally:
        if bar:
            bar.close()
    if not rows:
        raise ScoreError(f"release {release!r} on {dataset!r}: every sample was quarantined: {quarantine[:5]}")
    rows.sort(key=lambda r: r["sample_key"])
    curves = None
    if settings["sod"]:
        from evalhub.sod import SODCurves

        curves = SODCurves()
        for r in rows:
            if "sod_curves" in r:
                curves.add(*r.pop("sod_curves"))
    try:
        check_confidences([r["confidence"] for r in rows], [r["sample_key"] for r in rows], what=f"release {release!r} confidence")
        calibrator = release_calibrator(rel["manifest"])
    except ValueError as exc:
        raise ScoreError(str(exc)) from None
    if calibrator is not None:  # the gate's raw score becomes P(acceptable)
        raw = np.array([r["confidence"] for r in rows], np.float64)
        for r, c, p in zip(rows, raw, calibrator.apply(raw)):
            r["raw_confidence"], r["confidence"] = float(c), float(p)

    by_key = {s["sample_key"]: s for s in samples}
    attr_names = sorted({a for s in samples for a in s["attributes"]})
    for r in rows:
        attrs = by_key[r["sample_key"]]["attributes"]
        for a in attr_names:
            r[ATTR_PREFIX + a] = attrs.get(a)
        for note in r.pop("notes"):
            warnings.append(f"{r['sample_key']}: {note}")
        r["acceptable"] = bool(r["has_subject"] and r["iou"] >= accept_iou)
        r["accepted"] = bool(r["confidence"] >= rel["threshold"])
    table = pd.DataFrame(rows)
    resized = table.loc[table["prediction_resized"], "sample_key"].tolist()
    if resized:
        warnings.append(f"{len(resized)} prediction(s) differ in size from their ground truth and were resized (bilinear): {resized[:20]}")

    write_confidences(out / "predictions" / "confidences.csv", dict(zip(table["sample_key"], table["confidence"])))
    table.to_parquet(out / "samples.parquet", index=False)

    pos = table[table["has_subject"]]
    summary = {
        "release": {k: rel[k] for k in ("name", "revision", "kind", "version", "path", "threshold", "confidence_proxy")},
        "confidence_proxy": PROXY_DESCRIPTION if rel["confidence_proxy"] else None,
        "gate_calibration": {k: v for k, v in ((rel["manifest"] or {}).get("calibration") or {}).items() if k != "params"} or None,
        "dataset": {"name": ds["name"], "revision": ds["revision"], "kind": ds["kind"], "root": ds["root"], "provenance": ds["provenance"],
                    "mask_encoding": ctx.mask_encoding},
        "settings": settings,
        "counts": {"n": int(len(table)), "n_positive": int(len(pos)), "n_negative": int(len(table) - len(pos)),
                   "n_quarantined": len(quarantine), "n_missing": len(missing), "n_resized": len(resized)},
        "metrics": {m: bootstrap_mean(pos[m], n_boot, seed=seed) for m in SUMMARY_METRICS if m in pos.columns and pos[m].notna().any()},
        "calibration": calibration_report(table["confidence"].to_numpy(), table["acceptable"].to_numpy(), rel["threshold"], target_precision),
        "slicing": slice_table(table, intersections=intersections, min_n=min_n, n_boot=n_boot, seed=seed),
        "sod": curves.summary() if curves is not None else None,
        "pooled": pooled_summary(pos, min_n),
        "subjects": {"spec": settings["subjects"], "pooled": pooled_quality(pos["subjects_matched"], pos["subjects_pred"],
                                                                             pos["subjects_true"], pos["subjects_iou_sum"])},
        "quarantine": quarantine,
        "missing": missing,
        "warnings": warnings,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    summary = _jsonable(summary)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    run_id = register_run(engine, str(out), rel["id"], ds["id"], settings, summary, table.to_dict("records"),
                          [m for m in R.IMAGE_METRICS if m in table.columns])
    write_marker(out, Marker("run", "evalhub score", settings, "complete"))
    return ScoreResult(out, table, summary, run_id, quarantine)


def _pooled(tp: float, n_pred: float, n_true: float) -> dict[str, float]:
    union = n_pred + n_true - tp
    return {"iou": tp / union if union else 1.0, "precision": tp / n_pred if n_pred else 1.0, "recall": tp / n_true if n_true else 1.0}


def pooled_summary(pos: pd.DataFrame, min_n: int = MIN_N, top: int = 10) -> dict[str, Any] | None:
    """What pooling every pixel of the images with a subject would say, next to the per-image means.

    Pooled ``IoU = sum TP / (sum pred + sum true - sum TP)`` over the images (likewise precision
    and recall), the number a per-pixel evaluation reports; large subjects dominate it, so it
    hides failures on small ones. Per single-attribute slice with at least ``min_n`` images, the
    gap ``pooled IoU - mean IoU``; the ``top`` largest gaps are listed.

    Args:
        pos: the run table's images with a subject, with ``tp_px``, ``pred_px``, ``true_px``.
    """
    if pos.empty or "tp_px" not in pos.columns:
        return None

    def one(df: pd.DataFrame) -> dict[str, float]:
        return {**_pooled(float(df["tp_px"].sum()), float(df["pred_px"].sum()), float(df["true_px"].sum())),
                "mean_iou": float(df["iou"].mean()), "mean_precision": float(df["precision"].mean()),
                "mean_recall": float(df["recall"].mean()), "n": int(len(df))}

    slices = []
    for col in (c for c in pos.columns if c.startswith(ATTR_PREFIX)):
        for value, df in pos.groupby(col, dropna=True):
            if len(df) >= min_n:
                o = one(df)
                slices.append({"attribute": col[len(ATTR_PREFIX):], "value": str(value), **o, "gap": o["iou"] - o["mean_iou"]})
    slices.sort(key=lambda r: -abs(r["gap"]))
    overall = one(pos)
    return {"overall": {**overall, "gap": overall["iou"] - overall["mean_iou"]}, "slices": slices[:top]}


def _jsonable(obj: Any) -> Any:
    """Plain JSON: NaN/inf become null, numpy scalars become Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj
