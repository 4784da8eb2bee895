"""``synth build``: scan sources, plan, prepare subjects and backgrounds, render, write, register."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from tqdm import tqdm

from synth.balance import balance_report, cell_of
from synth.executors import Workers, default_workers, guided_chunks, register
from synth.folders import FolderError, Marker, ensure_folder, foreign_entries, locked, read_marker, write_marker
from synth.io import stale_temporaries
from synth.plan import SPLITS, Plan, make_plan, split_counts
from synth.prepare import default_cache_dir, fg_cached, load_background, load_foreground, uses_pymatting
from synth.recipe import Recipe, load_recipe
from synth.render import OUTPUT_DIRS, PARTS_DIR, RENDER_VERSION, BuildContext, part_path, render_sample
from synth.sources import BackgroundItem, ForegroundItem, QuarantineEntry, scan_backgrounds, scan_foregrounds
from synth.writers import write_coco, write_contact_sheet, write_lock, write_manifest, write_report, write_webdataset

MARKERS = ("manifest.parquet", "recipe.lock.yaml", PARTS_DIR)


class BuildError(RuntimeError):
    """A build that cannot go on (too many bad inputs, output folder in use, changed recipe...)."""


@dataclass
class BuildResult:
    """A finished build: its folder, report and catalog dataset id (None when registration is off
    or the folder already held this build complete, ``already_complete``)."""

    out_dir: Path
    report: dict[str, Any]
    dataset_id: int | None
    already_complete: bool = False


@register("prep_fg")
def _prep_fg(ctx: BuildContext, fg_id: str) -> tuple[str, bool]:
    _, _, hit = load_foreground(ctx.fgs[fg_id], ctx.recipe.edges, ctx.cache_dir)
    return fg_id, hit


@register("prep_bg")
def _prep_bg(ctx: BuildContext, bg_id: str) -> tuple[str, bool]:
    _, _, hit = load_background(ctx.bgs[bg_id], ctx.cache_dir)
    return bg_id, hit


@register("render")
def _render(ctx: BuildContext, spec) -> str:
    return render_sample(ctx, spec)["sample_id"]


LIFTLAB_OUTPUTS = list(MARKERS) + [d for d, _ in OUTPUT_DIRS.values()] + [
    "build_report.json", "build_report.md", "quarantine.json", "coco.json", "shards", "contact_sheet.png",
]
"""Everything a build writes into its folder; ``--overwrite`` removes these and nothing else."""


def _claim_out_dir(out_dir: Path, resume: bool, overwrite: bool, dataset: str | None, url: str | None) -> Marker | None:
    """Check that this build may write ``out_dir`` (the caller holds its lock). Returns the folder's
    earlier marker (None for a new folder); an ``--overwrite`` build clears the earlier outputs only
    once its own plan stands (:func:`_clear_outputs`), so a recipe that fails to plan deletes nothing.

    A folder without a liftlab marker is refused when it holds anything; a folder of another kind
    (an evalhub run) is refused; an earlier build needs ``--resume`` or ``--overwrite``, and
    ``--overwrite`` is refused while the catalog holds runs of the dataset built there.
    """
    marker = read_marker(out_dir)
    foreign = foreign_entries(out_dir)
    if marker is None:
        if foreign:
            raise BuildError(f"{out_dir} holds files no liftlab command wrote ({', '.join(foreign[:5])}); choose another --out"
                             + (" (--overwrite only clears folders a synth build wrote)" if overwrite else ""))
        if resume:
            raise BuildError(f"{out_dir}: --resume given but the folder holds no synth build")
        return None
    if marker.kind != "build":
        raise BuildError(f"{out_dir} holds a {marker.kind} written by `{marker.command}`, not a synth build; choose another --out")
    if resume:
        return marker
    if not overwrite:
        if marker.state == "writing":
            raise BuildError(f"{out_dir} already holds an interrupted synth build; pass --resume to finish it or --overwrite to rebuild it")
        raise BuildError(f"{out_dir} already holds a finished synth build; build into another --out, or pass --overwrite to rebuild it")
    if dataset is not None:
        _refuse_if_used(out_dir, dataset, url)
    return marker


def _clear_outputs(out_dir: Path) -> None:
    """Remove what an earlier build wrote into ``out_dir`` (:data:`LIFTLAB_OUTPUTS`) and nothing else."""
    for name in LIFTLAB_OUTPUTS:
        p = out_dir / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def _refuse_if_used(out_dir: Path, dataset: str, url: str | None) -> None:
    """Refuse to rebuild ``out_dir`` while runs in the catalog score a dataset revision built there."""
    import db
    from db.catalog import dependents
    from db.models import Dataset

    engine = db.connect(url)
    try:
        with db.session_scope(engine) as s:
            revs = s.scalars(select(Dataset.revision).where(Dataset.name == dataset, Dataset.root == str(out_dir.resolve()))).all()
        for rev in revs:
            dep = dependents(engine, "dataset", f"{dataset}@{rev}")
            if dep.runs:
                raise BuildError(f"{out_dir} holds dataset {dep.ref}, which {dep.describe()} depend on; rebuilding would change "
                                 "their images under them: build into another --out (a new revision), or delete them first "
                                 f"with `evalhub delete dataset {dep.ref}`")
    finally:
        engine.dispose()


def _fingerprint(recipe: Recipe, fgs, bgs) -> str:
    """What a build's bytes depend on: the recipe, every input's content and the renderer
    (:data:`synth.render.RENDER_VERSION`); a resume must find it unchanged."""
    doc = {
        "recipe": recipe.model_dump(mode="json", exclude={"cache_dir", "catalog"}),
        "fg": [(f.fg_id, f.sha256) for f in fgs],
        "bg": [(b.bg_id, b.sha256) for b in bgs],
        "renderer": RENDER_VERSION,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def build(
    recipe: Recipe | str | Path,
    out: str | Path | None = None,
    *,
    workers: int | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    catalog_url: str | None = None,
) -> BuildResult:
    """Build a synthetic dataset from a recipe.

    Args:
        recipe: a :class:`Recipe` or the path of a recipe YAML.
        out: output folder (default ``runs/<recipe name>``).
        workers: worker processes (default: all cores); results never depend on it.
        executor: ``local`` (process pool) or ``ray``.
        ray_address: Ray cluster address; None starts a local Ray instance.
        resume: finish an interrupted build in ``out``; finished samples are kept as they are.
        overwrite: replace an earlier build in ``out``.
        progress: show progress bars.
        catalog_url: catalog URL (default ``DATABASE_URL`` or ``./liftlab.db``).

    Returns:
        The output folder, the build report and the catalog dataset id (None when registration is
        disabled in the recipe).

    Raises:
        synth.recipe.RecipeError: invalid recipe (names the field).
        synth.balance.QuotaError: a quota that cannot be met (names the cells), before any work.
        BuildError: too many bad inputs, no usable foreground, output folder in use, or a resume
            with a changed recipe or inputs.
    """
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    out_dir = Path(out) if out is not None else Path("runs") / recipe.name
    t_start, inputs = time.perf_counter(), None
    if not out_dir.exists():  # a new folder: what can fail before any pixel work fails before it exists
        if resume:
            raise BuildError(f"{out_dir}: --resume given but there is no such folder")
        inputs = _inputs(recipe)
    try:
        ensure_folder(out_dir)
        with locked(out_dir):
            return _build(recipe, out_dir, workers, executor, ray_address, resume, overwrite, progress, catalog_url, inputs, t_start)
    except FolderError as exc:
        raise BuildError(str(exc)) from None


@dataclass
class _Inputs:
    """A recipe's scanned inputs and plan: what a build checks before it writes anything."""

    fgs: list[ForegroundItem]
    bgs: list[BackgroundItem]
    quarantine: list[QuarantineEntry]
    provenance: dict[str, Any]
    plan: Plan
    fingerprint: str
    timings: dict[str, float]
    scanned: Counter
    """Items the scan took from its memo (``memo_hits``) and decoded (``decoded``)."""


def _inputs(recipe: Recipe) -> _Inputs:
    """Scan the recipe's pools and plan its samples.

    Raises:
        BuildError: too many bad inputs, or no usable foreground or background.
        synth.balance.QuotaError: a quota that cannot be met.
    """
    timings: dict[str, float] = {}
    t = time.perf_counter()
    fgs, bgs, quarantine, provenance = [], [], [], {}
    cache_dir = recipe.cache_dir or default_cache_dir()  # the scan memo lives beside the prepared inputs
    scanned: Counter = Counter()
    for pool in recipe.sources.foregrounds:
        items, q, prov = scan_foregrounds(pool, cache_dir, scanned)
        fgs += items
        quarantine += q
        provenance.update(prov)
    for pool in recipe.sources.backgrounds:
        items, q = scan_backgrounds(pool, tuple(recipe.output.size), cache_dir, scanned)
        bgs += items
        quarantine += q
    timings["scan"] = time.perf_counter() - t
    n_bad = sum(1 for q in quarantine if q.kind == "bad_input")
    n_items = len(fgs) + len(bgs) + n_bad
    if n_items and n_bad / n_items > recipe.quarantine.max_fraction:
        raise BuildError(
            f"{n_bad} of {n_items} input items are unusable ({n_bad / n_items:.1%} > quarantine.max_fraction "
            f"{recipe.quarantine.max_fraction}); first: " + "; ".join(f"{q.item_id}: {q.reason}" for q in quarantine[:5])
        )
    if not fgs and recipe.negatives < 1.0:
        raise BuildError("no usable foreground is left after quarantine: " + "; ".join(f"{q.item_id}: {q.reason}" for q in quarantine[:10]))
    if not bgs:
        raise BuildError("no usable background is left after quarantine")

    # the plan (quota errors surface here, before any pixel work)
    t = time.perf_counter()
    plan = make_plan(recipe, fgs, bgs)
    fingerprint = _fingerprint(recipe, fgs, bgs)
    timings["plan"] = time.perf_counter() - t
    return _Inputs(fgs, bgs, quarantine, provenance, plan, fingerprint, timings, scanned)


def _build(recipe: Recipe, out_dir: Path, workers: int | None, executor: str, ray_address: str | None, resume: bool,
           overwrite: bool, progress: bool, catalog_url: str | None, inputs: _Inputs | None, t_start: float) -> BuildResult:
    """The build itself, with ``out_dir``'s lock held; ``inputs`` when they were read before the
    folder was made."""
    dataset = (recipe.catalog.dataset_name or recipe.name) if recipe.catalog.enabled else None
    earlier = _claim_out_dir(out_dir, resume, overwrite, dataset, catalog_url)
    workers = workers or default_workers()
    cache_dir = recipe.cache_dir or default_cache_dir()

    # 1-2. scan and plan (for a new folder, done before it was made)
    inputs = inputs or _inputs(recipe)
    fgs, bgs, quarantine, provenance, plan, fingerprint = (
        inputs.fgs, inputs.bgs, inputs.quarantine, inputs.provenance, inputs.plan, inputs.fingerprint)
    timings: dict[str, float] = dict(inputs.timings)
    if earlier is not None and resume:
        if earlier.identity.get("fingerprint") != fingerprint:
            state = "interrupted" if earlier.state == "writing" else "finished"
            raise BuildError(f"{out_dir}: the recipe, its inputs or liftlab's renderer changed since the {state} build there; "
                             "build into another --out, or rebuild it with --overwrite")
        if earlier.state == "complete":
            report = json.loads((out_dir / "build_report.json").read_text())
            return BuildResult(out_dir=out_dir, report=report, dataset_id=None, already_complete=True)
    if earlier is not None and not resume:  # --overwrite, now that the new plan stands
        _clear_outputs(out_dir)
    write_marker(out_dir, Marker("build", "synth build", {"fingerprint": fingerprint, "recipe": recipe.name, "dataset": dataset}))
    parts = out_dir / PARTS_DIR
    parts.mkdir(parents=True, exist_ok=True)
    if earlier is not None:  # a killed writer's temporary files (this build holds the folder's lock)
        for folder in [parts] + [out_dir / d for d, _ in OUTPUT_DIRS.values()]:
            for tmp in stale_temporaries(folder):
                tmp.unlink()

    ctx = BuildContext(recipe=recipe, fgs={f.fg_id: f for f in fgs}, bgs={b.bg_id: b for b in bgs}, cache_dir=Path(cache_dir), out_dir=out_dir)

    used_fg = sorted({f for s in plan.specs for f in s.fg_ids} | {s.params["occluder_fg_id"] for s in plan.specs if "occluder_fg_id" in s.params})
    used_bg = sorted({s.bg_id for s in plan.specs} | {s.params["occluder_bg_id"] for s in plan.specs if "occluder_bg_id" in s.params})
    warm: tuple[str, ...] = ()
    if any(uses_pymatting(ctx.fgs[f], recipe.edges) and not fg_cached(ctx.fgs[f], recipe.edges, ctx.cache_dir) for f in used_fg):
        # pymatting compiles its numba kernels on its first import after an install (about 50 s on
        # one core, then 1 s from numba's disk cache): the workers load it as they start, so that
        # preparation's time and throughput are the matting alone
        warm = ("pymatting",)
        if progress:
            tqdm.write("start: loading pymatting for matting (its first use after an install compiles it, up to a minute)", file=sys.stderr)

    # 3. start the workers once: their start-up is its own phase, outside preparation and compositing
    t = time.perf_counter()
    with Workers(ctx, workers=workers, executor=executor, ray_address=ray_address, warm=warm) as pool:
        timings["start"] = time.perf_counter() - t

        # 4. prepare what the plan uses, once per input
        t = time.perf_counter()
        units = [("prep_fg", c) for c in guided_chunks(used_fg, workers)] + [("prep_bg", c) for c in guided_chunks(used_bg, workers)]
        hits = Counter()
        with tqdm(total=len(used_fg) + len(used_bg), desc="prepare", unit="src", disable=not progress) as bar:
            for res in pool.run(units, on_done=bar.update):
                for item_id, hit in res:
                    hits[("fg" if item_id in ctx.fgs else "bg", hit)] += 1
        timings["prepare"] = time.perf_counter() - t

        # 5. render what is not done yet
        t = time.perf_counter()
        todo = [s for s in plan.specs if not _is_done(out_dir, s.sample_id)]
        units = [("render", c) for c in guided_chunks(todo, workers)]
        with tqdm(total=len(plan.specs), initial=len(plan.specs) - len(todo), desc="composite", unit="img", disable=not progress) as bar:
            for _ in pool.run(units, on_done=bar.update):
                pass
        timings["composite"] = time.perf_counter() - t

    # 6. dataset-level files
    t = time.perf_counter()
    records = [json.loads(part_path(out_dir, s.sample_id).read_text()) for s in plan.specs]
    write_manifest(out_dir / "manifest.parquet", records)
    if recipe.output.coco:
        write_coco(out_dir / "coco.json", out_dir, records)
    if recipe.output.webdataset:
        write_webdataset(out_dir, records, recipe.output.shard_size)
    input_hashes = {"foregrounds": {f.fg_id: f.sha256 for f in fgs}, "backgrounds": {b.bg_id: b.sha256 for b in bgs}}
    write_lock(out_dir / "recipe.lock.yaml", recipe.model_dump(mode="json"), input_hashes, fingerprint)
    (out_dir / "quarantine.json").write_text(json.dumps([q.__dict__ for q in quarantine], indent=2))
    timings["write"] = time.perf_counter() - t

    report = _report(recipe, plan, records, quarantine, hits, out_dir, timings, inputs.scanned)
    report["contact_sheet"] = write_contact_sheet(out_dir / "contact_sheet.png", out_dir, records)
    dataset_id = None
    if recipe.catalog.enabled:
        t = time.perf_counter()
        dataset_id = _register(recipe, out_dir, records, provenance, report, _targets(recipe, plan), catalog_url)
        timings["catalog"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t_start
    report["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
    report["workers"] = workers
    report["executor"] = executor
    write_report(out_dir, report)
    shutil.rmtree(parts)
    write_marker(out_dir, Marker("build", "synth build", {"fingerprint": fingerprint, "recipe": recipe.name, "dataset": dataset}, "complete"))
    return BuildResult(out_dir=out_dir, report=report, dataset_id=dataset_id)


def _is_done(out_dir: Path, sample_id: str) -> bool:
    if not part_path(out_dir, sample_id).is_file():
        return False
    return all((out_dir / folder / f"{sample_id}{ext}").is_file() for folder, ext in OUTPUT_DIRS.values())


def preparation_rate(hits: Counter, seconds: float | None) -> dict[str, Any]:
    """The preparation phase's own throughput: inputs prepared (cache misses) and taken from the
    cache, and prepared inputs per second of the phase (None when everything came from the cache)."""
    prepared = hits[("fg", False)] + hits[("bg", False)]
    cached = hits[("fg", True)] + hits[("bg", True)]
    rate = prepared / seconds if seconds and prepared else None
    return {"prepared": prepared, "from_cache": cached, "seconds": round(seconds, 3) if seconds is not None else None,
            "prepared_per_s": round(rate, 2) if rate else None}


def _report(recipe: Recipe, plan, records, quarantine: list[QuarantineEntry], hits: Counter, out_dir: Path,
            timings: dict[str, float] | None = None, scanned: Counter | None = None) -> dict[str, Any]:
    timings, scanned = timings or {}, scanned or Counter()
    pos = [r for r in records if r["has_subject"]]
    achieved = Counter(cell_of(r["attributes"], plan.columns) for r in pos)
    uses = Counter(f for r in pos for f in r["fg_ids"])
    before = [r["light_z_before"] for r in pos if r["light_z_before"] is not None]
    after = [r["light_z_after"] for r in pos if r["light_z_after"] is not None]
    method = recipe.harmonization.method + ("+light_wrap" if recipe.harmonization.light_wrap.enabled else "")
    plate_share = {r["bg_id"]: r["bg_inpainted_fraction"] for r in records}
    crop_share = [r["crop_inpainted_fraction"] for r in records]
    bounds = [p.max_inpainted_fraction for p in recipe.sources.backgrounds if p.kind == "masked"]
    return {
        "name": recipe.name,
        "out_dir": str(out_dir),
        "output_size": list(recipe.output.size),
        "counts": {
            "samples": len(records),
            "positives": len(pos),
            "negatives": len(records) - len(pos),
            "splits": split_counts(plan.specs),
            "splits_by_kind": {
                s: {"positives": sum(1 for r in pos if r["split"] == s), "negatives": sum(1 for r in records if r["split"] == s and not r["has_subject"])}
                for s in SPLITS
            },
            "subjects_per_image": {str(k): v for k, v in sorted(Counter(r["n_subjects"] for r in records).items())},
            "distinct_foregrounds": len(uses),
            "max_uses_of_one_foreground": max(uses.values(), default=0),
            "occluded": sum(1 for r in pos if r["params"].get("occluded")),
        },
        "pixels": pixel_shares(records),
        "balance": balance_report(plan.cell_targets, {k: v for k, v in achieved.items() if k is not None}, plan.columns),
        "harmonization": {
            method: {
                "n": len(after),
                "mean_before": round(sum(before) / len(before), 4) if before else None,
                "mean_after": round(sum(after) / len(after), 4) if after else None,
            }
        },
        "plates": {
            "plate_mean": round(sum(plate_share.values()) / len(plate_share), 4) if plate_share else None,
            "crop_mean": round(sum(crop_share) / len(crop_share), 4) if crop_share else None,
            "crop_max": round(max(crop_share), 4) if crop_share else None,
            "bound": max(bounds) if bounds else None,
        },
        "quarantine": {
            "n_bad_input": sum(1 for q in quarantine if q.kind == "bad_input"),
            "n_skipped": sum(1 for q in quarantine if q.kind == "skipped"),
            "entries": [q.__dict__ for q in quarantine],
        },
        "cache": {
            "foreground_hits": hits[("fg", True)], "foreground_prepared": hits[("fg", False)],
            "background_hits": hits[("bg", True)], "background_prepared": hits[("bg", False)],
            # items whose validation and attributes the scan read from its memo (same bytes as a
            # scan before) or decoded
            "scan_memo_hits": scanned["memo_hits"], "scan_decoded": scanned["decoded"],
        },
        "preparation": preparation_rate(hits, timings.get("prepare")),
    }


SHARE_EDGES = (0.0, 0.01, 0.05, 0.15, 0.35, 0.6, 1.0)
"""Bins of the foreground pixel share in the build report (the last one closed)."""


def pixel_shares(records: list[dict[str, Any]]) -> dict[str, Any]:
    """How much of the data is subject, per image and pooled: the share of negatives, quantiles
    and a histogram of each positive's foreground pixel share (``subject_area_fraction``), and
    the share of all pixels (negatives included) that are foreground. A model trained per pixel
    sees the pooled share; one judged per image sees the distribution."""
    shares = np.array([r["subject_area_fraction"] for r in records if r["has_subject"]], float)
    sizes = np.array([r["height"] * r["width"] for r in records], float)
    fg_px = sum(r["subject_area_fraction"] * r["height"] * r["width"] for r in records if r["has_subject"])
    counts, _ = np.histogram(shares, bins=SHARE_EDGES)
    q = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
    return {
        "negatives_share": round((len(records) - shares.size) / len(records), 4) if records else None,
        "foreground_share_quantiles": {f"p{int(100 * k)}": round(float(np.quantile(shares, k)), 4) for k in q} if shares.size else None,
        "foreground_share_mean": round(float(shares.mean()), 4) if shares.size else None,
        "foreground_share_pooled": round(float(fg_px / sizes.sum()), 4) if records else None,
        "histogram": [{"from": lo, "to": hi, "n": int(n)} for lo, hi, n in zip(SHARE_EDGES[:-1], SHARE_EDGES[1:], counts)],
    }


def _targets(recipe: Recipe, plan) -> dict[str, Any]:
    """What the build was asked for, stored with the dataset for audits: the negatives share, the
    split shares and the balance quota cells with the sample count planned for each."""
    return {
        "negatives": float(recipe.negatives),
        "splits": {k: float(v) for k, v in recipe.splits.model_dump().items()},
        "balance": {"columns": list(plan.columns),
                    "cells": [{"values": list(k), "target": int(v)} for k, v in sorted(plan.cell_targets.items(), key=lambda kv: str(kv[0]))]},
    }


def _register(recipe: Recipe, out_dir: Path, records, provenance, report, targets: dict[str, Any], url: str | None) -> int:
    import db
    from db.catalog import SampleRecord, register_dataset

    samples = [
        SampleRecord(
            sample_key=r["sample_id"], image_path=r["image_path"], mask_path=r["mask_path"], alpha_path=r["alpha_path"],
            trimap_path=r["trimap_path"], split=r["split"], has_subject=r["has_subject"], n_subjects=r["n_subjects"],
            width=r["width"], height=r["height"], attributes=dict(r["attributes"]),
        )
        for r in records
    ]
    engine = db.connect(url)
    try:
        return register_dataset(
            engine, recipe.catalog.dataset_name or recipe.name, "synth", str(out_dir.resolve()), samples,
            provenance=provenance, recipe=recipe.model_dump(mode="json"), targets=targets,
            info={"counts": report["counts"], "balance": {k: report["balance"][k] for k in ("columns", "max_abs_deviation", "total_variation_distance")}},
        ).id
    finally:
        engine.dispose()
