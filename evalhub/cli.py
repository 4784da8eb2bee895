"""``evalhub`` command line: datasets, releases, scoring, comparison and reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from synth.errors import console_script

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help="Score subject-lifting model releases.")
release_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Register and list model releases.")
app.add_typer(release_app, name="release")

DB_OPT = typer.Option(None, "--database-url", help="[default: $DATABASE_URL or ./liftlab.db]")


def _fail(msg: str) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


@app.callback()
def main() -> None:
    """Score subject-lifting model releases."""


@app.command()
def datasets(database_url: Optional[str] = DB_OPT) -> None:
    """List the datasets in the catalog with their kind, sample count and root folder."""
    import db
    from db.catalog import dataset_summary

    rows = dataset_summary(db.connect(database_url))
    if not rows:
        typer.echo("the catalog holds no dataset yet (run `synth build` or `evalhub import-dataset`)")
    for r in rows:
        earlier = f" ({r['earlier_revisions']} earlier)" if r["earlier_revisions"] else ""
        typer.echo(f"{r['name']}@{r['revision']}{earlier}\t{r['kind']}\t{r['n_samples']} samples\t{r['root']}")


@app.command("import-dataset")
def import_dataset(
    name: str = typer.Argument(..., help="catalog name of the dataset"),
    images: Path = typer.Option(..., "--images", help="folder of photos"),
    masks: Path = typer.Option(..., "--masks", help="folder of ground-truth masks (foreground where > 127), paired by file stem"),
    alpha: Optional[Path] = typer.Option(None, "--alpha", help="folder of ground-truth alpha mattes"),
    trimaps: Optional[Path] = typer.Option(None, "--trimaps", help="folder of trimaps (0 / unknown / 255)"),
    metadata: Optional[Path] = typer.Option(None, "--metadata", help="CSV or Parquet of attributes, one row per id"),
    id_column: str = typer.Option("sample_id", "--id-column", help="id column of the metadata table"),
    provenance: list[str] = typer.Option([], "--provenance", help="ATTR=annotated|self-reported|estimated (repeatable; default annotated)"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="import only the first N ids"),
    ids: Optional[Path] = typer.Option(None, "--ids", help="text file of ids to import (one per line), e.g. a test split"),
    mask_encoding: str = typer.Option("0-255", "--mask-encoding", help="masks' foreground: 0-255 (> 127) or 0-1 (== 1)"),
    database_url: Optional[str] = DB_OPT,
) -> None:
    """Register a real image/mask set (ECSSD, CCP layouts) with its attributes."""
    import db
    from evalhub.datasets import import_dataset as run
    from synth.io import BadInput as BadInputError

    prov = {}
    for item in provenance:
        if "=" not in item:
            _fail(f"--provenance {item!r}: write ATTR=annotated|self-reported|estimated")
        k, v = item.split("=", 1)
        prov[k] = v
    try:
        res = run(db.connect(database_url), name, images, masks, alpha, trimaps, metadata, id_column, prov, limit, ids, mask_encoding)
    except (FileNotFoundError, ValueError, BadInputError) as exc:
        _fail(str(exc))
    for w in res.warnings[:20]:
        typer.secho(f"warning: {w}", fg=typer.colors.YELLOW, err=True)
    for q in res.quarantine:
        typer.secho(f"quarantined {q['id']}: {q['path']}: {q['reason']}", fg=typer.colors.YELLOW, err=True)
    what = f"imported {name} as revision {res.revision}" if res.created else f"{name}@{res.revision} already holds exactly this content; nothing written"
    typer.echo(f"{what}: {res.n_samples} samples ({res.n_negatives} without a subject), {len(res.quarantine)} quarantined")


@release_app.command("add")
def release_add(
    name: str = typer.Argument(..., help="catalog name of the release"),
    onnx: Optional[Path] = typer.Option(None, "--onnx", help="ONNX model file"),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="release.yaml of the ONNX model"),
    predictions: Optional[Path] = typer.Option(None, "--predictions", help="folder with masks/<id>.png and confidences.csv"),
    threshold: float = typer.Option(0.5, "--threshold", help="gate threshold of a predictions release"),
    version: Optional[str] = typer.Option(None, "--version", help="version of a predictions release"),
    encoding: str = typer.Option("probability", "--encoding",
                                 help="what the prediction files hold: probability (8-bit /255, 16-bit /65535) or binary (0/1 or 0/255 masks)"),
    database_url: Optional[str] = DB_OPT,
) -> None:
    """Register an ONNX model with its manifest, or a folder of predictions made elsewhere."""
    import db
    from db.catalog import register_release
    from evalhub.releases import (
        PREDICTION_ENCODINGS,
        PROXY_DESCRIPTION,
        OnnxRelease,
        ReleaseError,
        load_manifest,
        release_content,
        scan_predictions,
    )

    if (onnx is None) == (predictions is None):
        _fail("give either --onnx with --manifest, or --predictions")
    try:
        if onnx is not None:
            if manifest is None:
                _fail("--onnx needs --manifest release.yaml")
            man = load_manifest(manifest)
            rel = OnnxRelease(onnx, man)
            proxy = not rel.has_confidence
            reg = register_release(db.connect(database_url), name, "onnx", str(onnx.resolve()), man.threshold,
                                   man.model_dump(mode="json"), man.version, proxy, release_content("onnx", onnx))
        else:
            if not 0 <= threshold <= 1:
                _fail(f"--threshold must be in [0, 1], got {threshold}")
            if encoding not in PREDICTION_ENCODINGS:
                _fail(f"--encoding must be one of {', '.join(PREDICTION_ENCODINGS)}, got {encoding!r}")
            files, conf = scan_predictions(predictions)
            proxy = conf is None
            reg = register_release(db.connect(database_url), name, "predictions", str(predictions.resolve()), threshold,
                                   {"n_masks": len(files), "confidences": conf is not None, "encoding": encoding}, version, proxy,
                                   release_content("predictions", predictions))
    except (ReleaseError, FileNotFoundError) as exc:
        _fail(str(exc))
    typer.echo(_registered("release", reg))
    if proxy:
        typer.secho(f"note: {PROXY_DESCRIPTION}", fg=typer.colors.YELLOW, err=True)


def _registered(what: str, reg) -> str:
    """One line about a :class:`db.catalog.Registration`."""
    if not reg.created:
        return f"{what} {reg.ref} already holds exactly this content; nothing written"
    earlier = f" (revision {reg.revision - 1} and earlier stay, with their runs)" if reg.revision > 1 else ""
    return f"{what} registered as {reg.ref}{earlier}"


@release_app.command("baseline")
def release_baseline(
    name: str = typer.Argument(..., help="catalog name of the release"),
    dataset: str = typer.Option(..., "--dataset", "-d", help="catalog dataset to predict"),
    method: str = typer.Option("grabcut", "--method", help="grabcut | centre | ellipse"),
    out: Path = typer.Option(..., "--out", help="prediction folder to write"),
    threshold: float = typer.Option(0.5, "--threshold", help="gate threshold"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1),
    database_url: Optional[str] = DB_OPT,
) -> None:
    """Predict a dataset with a model-free baseline (GrabCut, the centre prior or the centre ellipse)
    and register it as a predictions release."""
    import db
    from db.catalog import register_release
    from evalhub.baselines import write_baseline

    if not 0 <= threshold <= 1:
        _fail(f"--threshold must be in [0, 1], got {threshold}")
    engine = db.connect(database_url)
    try:
        res = write_baseline(engine, dataset, method, out, workers)
    except (KeyError, ValueError) as exc:
        _fail(exc.args[0])
    for e in res["errors"]:
        typer.secho(f"skipped {e['id']}: {e['error']}", fg=typer.colors.YELLOW, err=True)
    from evalhub.releases import release_content

    reg = register_release(engine, name, "predictions", str(Path(out).resolve()), threshold,
                           {"n_masks": res["n"], "confidences": method == "grabcut", "baseline": method, "encoding": "probability"},
                           f"baseline-{method}",
                           method != "grabcut", release_content("predictions", out))
    typer.echo(f"baseline {method}: {res['n']} predictions in {out}; " + _registered("release", reg))


@release_app.command("list")
def release_list(database_url: Optional[str] = DB_OPT) -> None:
    """List the registered releases."""
    import db
    from db.catalog import list_releases
    from evalhub.releases import describe

    for r in list_releases(db.connect(database_url)):
        typer.echo(describe(r))


@app.command("score")
def score_cmd(
    release: str = typer.Option(..., "--release", help="release name"),
    dataset: str = typer.Option(..., "--dataset", help="dataset name"),
    out: Path = typer.Option(..., "--out", help="run folder"),
    accept_iou: float = typer.Option(0.8, "--accept-iou", min=0.0, max=1.0, help="an extraction is acceptable when IoU >= this (tau)"),
    boundary_px: Optional[int] = typer.Option(None, "--boundary-px", min=1, help="boundary F1 tolerance in pixels [default: ceil(0.008 x diagonal)]"),
    target_precision: float = typer.Option(0.95, "--target-precision", min=0.0, max=1.0, help="precision the recommended threshold must reach"),
    min_n: int = typer.Option(30, "--min-n", min=1, help="slices with fewer images are marked insufficient"),
    intersections: Optional[str] = typer.Option(None, "--intersections", help="a*b,c*d [default: every pair of attributes]; '' for none"),
    split: Optional[str] = typer.Option(None, "--split", help="score only this split"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="score only the first N samples"),
    allow_missing: bool = typer.Option(False, "--allow-missing", help="score what has predictions and list the rest"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="processes [default: all cores]"),
    executor: str = typer.Option("local", "--executor", help="local or ray"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address"),
    seed: int = typer.Option(0, "--seed", help="bootstrap seed"),
    sod: bool = typer.Option(False, "--sod", help="also the salient-object set: S-measure, E-measure, weighted F, F-measure (PySODMetrics)"),
    min_subject_area: float = typer.Option(0.005, "--min-subject-area", min=0.0, max=1.0,
                                           help="smallest subject for Panoptic Quality, as a fraction of the image"),
    subject_opening: int = typer.Option(1, "--subject-opening", min=0, help="radius (px) of the opening that cleans masks before subjects are split"),
    truth: str = typer.Option("original", "--truth", help="original (the dataset's masks) or corrected (raters' newest corrections where made)"),
    no_progress: bool = typer.Option(False, "--no-progress"),
    database_url: Optional[str] = DB_OPT,
) -> None:
    """Score a release on a dataset: per-image metrics, subjects (Panoptic Quality), gate calibration, slices."""
    import db
    from evalhub.metrics import DAVIS_BOUND_TH
    from evalhub.releases import ReleaseError
    from evalhub.scoring import ScoreError, score
    from evalhub.subjects import SubjectSpec

    try:
        res = score(
            db.connect(database_url), release, dataset, out, accept_iou=accept_iou,
            bound_th=float(boundary_px) if boundary_px else DAVIS_BOUND_TH, target_precision=target_precision,
            min_n=min_n, intersections=intersections, split=split, limit=limit, allow_missing=allow_missing,
            workers=workers, executor=executor, ray_address=ray_address, seed=seed, progress=not no_progress, sod=sod,
            subjects=SubjectSpec(min_subject_area, subject_opening), truth=truth,
        )
    except (KeyError, ScoreError, ReleaseError, FileNotFoundError) as exc:
        _fail(str(exc).strip("'\""))
    s = res.summary
    for w in s["warnings"][:20]:
        typer.secho(f"warning: {w}", fg=typer.colors.YELLOW, err=True)
    for q in res.quarantine:
        typer.secho(f"quarantined {q['id']}: {q['path']}: {q['reason']}", fg=typer.colors.YELLOW, err=True)
    typer.echo(_summary_lines(s))
    if res.reused:
        typer.echo(f"{res.out} already holds this run (catalog run id {res.run_id}: same release, dataset and settings); nothing scored again")
    else:
        typer.echo(f"run written to {res.out} (catalog run id {res.run_id})")


def _summary_lines(s: dict) -> str:
    c = s["counts"]
    lines = [f"{s['release']['name']} on {s['dataset']['name']}: {c['n']} images ({c['n_positive']} with a subject, {c['n_negative']} negatives), "
             f"{c['n_quarantined']} quarantined"]
    from evalhub.registry import names

    for m in names(headline=True):
        if m in s["metrics"]:
            v = s["metrics"][m]
            lines.append(f"  {m:<13} {v['mean']:.4f}  [{v['lo']:.4f}, {v['hi']:.4f}]")
    pooled = (s.get("subjects") or {}).get("pooled")
    if pooled:
        lines.append(f"  subjects: PQ {_f(pooled['pq'])}  SQ {_f(pooled['sq'])}  RQ {_f(pooled['rq'])}  "
                     f"({pooled['tp']} matched, {pooled['fp']} false, {pooled['fn']} missed; pooled over images)")
    cal = s["calibration"]
    proxy = "  (proxy confidence)" if s.get("confidence_proxy") else ""
    lines.append(f"  gate: ECE {cal['ece']:.4f}  Brier {cal['brier']:.4f}  AURC {cal['aurc']:.4f}  FAR {_f(cal['far'])}  FRR {_f(cal['frr'])}{proxy}")
    rec = cal["recommended"]
    lines.append("  recommended threshold: " + (f"{rec['threshold']:.4f} (precision {rec['precision']:.3f}, coverage {rec['coverage']:.3f})" if rec else f"none reaches precision {cal['target_precision']}"))
    return "\n".join(lines)


def _f(v) -> str:
    return "n/a" if v is None or v != v else f"{v:.4f}"


@app.command("compare")
def compare_cmd(
    run_a: Path = typer.Argument(..., help="baseline run folder"),
    run_b: Path = typer.Argument(..., help="candidate run folder"),
    out: Optional[Path] = typer.Option(None, "--out", help="write compare.json here [default: RUN_B/compare-<A>.json]"),
    seed: int = typer.Option(0, "--seed"),
    database_url: Optional[str] = DB_OPT,
) -> None:
    """Paired comparison of two runs on the same dataset (B - A), overall and per slice; both runs
    are read from the catalog."""
    import db
    from evalhub.compare import CompareError, compare_runs, format_compare
    from evalhub.runs import RunNotFound

    try:
        res = compare_runs(db.connect(database_url), run_a, run_b, seed=seed)
    except (CompareError, RunNotFound) as exc:
        _fail(str(exc))
    from evalhub.scoring import _jsonable

    path = out or (Path(run_b) / f"compare-{Path(run_a).resolve().name}.json")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(_jsonable(res), indent=2))
    typer.echo(format_compare(res))
    typer.echo(f"comparison written to {path}")


@app.command("lift")
def lift_cmd(
    release: str = typer.Option(..., "--release", help="an ONNX release (name or name@N)"),
    photos: Path = typer.Option(..., "--photos", help="folder of photos"),
    out: Path = typer.Option(..., "--out", help="folder for the cut-outs and sidecars"),
    min_subject_area: float = typer.Option(0.005, "--min-subject-area", min=0.0, max=1.0, help="smallest subject, as a fraction of the photo"),
    subject_opening: int = typer.Option(1, "--subject-opening", min=0, help="radius (px) of the opening that cleans the mask"),
    no_progress: bool = typer.Option(False, "--no-progress"),
    database_url: Optional[str] = DB_OPT,
) -> None:
    """Run a release on photos: the gate's decision and, when it accepts, one RGBA cut-out per
    subject at full resolution plus their union, with a JSON sidecar per photo."""
    import db
    from evalhub.lift import LiftError, lift
    from evalhub.releases import ReleaseError
    from evalhub.subjects import SubjectSpec

    try:
        res = lift(db.connect(database_url), release, photos, out, subjects=SubjectSpec(min_subject_area, subject_opening),
                   progress=not no_progress)
    except (KeyError, LiftError, ReleaseError) as exc:
        _fail(str(exc).strip("'\""))
    for f in res.failures:
        typer.secho(f"not read: {f['photo']}: {f['reason']}", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"{res.n_photos} photos lifted into {res.out}: {res.n_accepted} accepted by the gate, {res.n_subjects} subject cut-outs; "
               f"{len(res.failures)} not read")


@app.command("calibrate")
def calibrate_cmd(
    run: Path = typer.Argument(..., help="a run of the release on its calibration set"),
    method: str = typer.Option("isotonic", "--method", help="platt, temperature or isotonic"),
    folds: int = typer.Option(5, "--folds", min=2, help="cross-fitting folds for the out-of-sample numbers"),
    target_precision: float = typer.Option(0.95, "--target-precision", min=0.0, max=1.0,
                                           help="precision the new threshold must reach among accepted images"),
    n_boot: int = typer.Option(1000, "--n-boot", min=100, help="bootstrap resamples for the threshold's CI"),
    seed: int = typer.Option(0, "--seed"),
    database_url: Optional[str] = DB_OPT,
) -> None:
    """Fit a gate calibrator (score -> P(acceptable)) on a run and store it as a new revision of the
    run's release; scoring and lift apply it."""
    import db
    from evalhub.gate import METHODS, calibrate_release
    from evalhub.runs import RunNotFound

    if method not in METHODS:
        _fail(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    try:
        res = calibrate_release(db.connect(database_url), run, method, folds, target_precision, n_boot, seed)
    except (RunNotFound, ValueError, ArithmeticError, KeyError) as exc:
        _fail(str(exc).strip("'\""))
    b, a = res.before, res.after
    typer.echo(f"{res.release}: {method} calibration of {res.base} on {res.n} images ({res.n_acceptable} acceptable), {folds}-fold cross-fitted"
               + ("" if res.created else " (this very fit was already stored as that revision; nothing new registered)"))
    typer.echo(f"  ECE   {b['ece']:.4f} -> {a['ece']:.4f}   Brier {b['brier']:.4f} -> {a['brier']:.4f}   AURC {b['aurc']:.4f} -> {a['aurc']:.4f}")
    if res.threshold is None:
        typer.echo(f"  no calibrated threshold reaches precision {res.target_precision}; the old threshold is kept")
    else:
        ci = f" [{res.threshold_ci[0]:.4f}, {res.threshold_ci[1]:.4f}]" if res.threshold_ci else ""
        typer.echo(f"  threshold for precision {res.target_precision}: {res.threshold:.4f}{ci} (calibrated scale)")


@app.command("report")
def report_cmd(
    run: Path = typer.Argument(..., help="run folder"),
    compare: Optional[Path] = typer.Option(None, "--compare", help="a second run to compare against (B = this one)"),
    worst: int = typer.Option(8, "--worst", help="how many worst images to show as overlays"),
    database_url: Optional[str] = DB_OPT,
) -> None:
    """Write RUN/report.html (and report.json) with plots, slices and the worst images, from the run
    the catalog holds."""
    import db
    from evalhub.compare import CompareError
    from evalhub.report import write_report
    from evalhub.runs import RunNotFound

    try:
        html = write_report(db.connect(database_url), run, compare, worst=worst)
    except (CompareError, RunNotFound) as exc:
        _fail(str(exc))
    typer.echo(f"report written to {html}")


@app.command("delete")
def delete_cmd(
    kind: str = typer.Argument(..., help="dataset | release | run"),
    ref: str = typer.Argument(..., help="NAME (newest revision) or NAME@N; for a run, its folder or catalog id"),
    yes: bool = typer.Option(False, "--yes", help="delete; without it, only list what would go"),
    with_ratings: bool = typer.Option(False, "--with-ratings", help="allow deleting human ratings (and ground-truth corrections) that depend on it"),
    database_url: Optional[str] = DB_OPT,
) -> None:
    """Delete a dataset revision, release revision or run from the catalog, with the runs, campaigns,
    assignments and ratings that depend on it. Lists what would go unless --yes; refuses while
    ratings (or raters' ground-truth corrections) depend on it unless --with-ratings. Files (build and run folders) are never touched."""
    import db
    from db.catalog import KINDS, DeleteRefused, delete, dependents

    if kind not in KINDS:
        _fail(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    target: str | int = ref
    if kind == "run":
        target = int(ref) if ref.isdigit() else str(Path(ref).resolve())
    engine = db.connect(database_url)
    try:
        dep = dependents(engine, kind, target)
        if not yes:
            typer.echo(f"would delete {kind} {dep.ref} with {dep.describe()} "
                       f"({dep.n_items} campaign item(s), {dep.n_assignments} assignment(s)); pass --yes to delete")
            if (dep.n_ratings or dep.n_corrections) and not with_ratings:
                typer.echo("ratings or ground-truth corrections depend on it: --with-ratings is needed as well")
            return
        dep = delete(engine, kind, target, with_ratings=with_ratings)
    except KeyError as exc:
        _fail(exc.args[0])
    except DeleteRefused as exc:
        _fail(f"{exc} with --with-ratings")
    typer.echo(f"deleted {kind} {dep.ref} with {dep.describe()}; files on disk were left as they are")


cli = console_script(app)
"""The ``evalhub`` console script (:func:`synth.errors.run`: one line and exit 2 for any failure, the traceback
with --debug)."""


if __name__ == "__main__":
    cli()
