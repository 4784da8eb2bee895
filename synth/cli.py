"""``synth`` command line: ``synth build``, ``synth schema``, ``synth validate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from synth.balance import QuotaError
from synth.errors import console_script
from synth.recipe import RecipeError, load_recipe, recipe_schema

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help="Build synthetic subject-lifting training sets.")


@app.command()
def build(
    recipe: Path = typer.Option(..., "--recipe", "-r", help="recipe YAML"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="output folder [default: runs/<recipe name>]"),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", min=1, help="worker processes [default: all cores]"),
    executor: str = typer.Option("local", "--executor", help="local or ray"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster address (default: start a local one)"),
    resume: bool = typer.Option(False, "--resume", help="finish an interrupted build in --out"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an earlier build in --out"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    database_url: Optional[str] = typer.Option(None, "--database-url", help="catalog URL [default: $DATABASE_URL or ./liftlab.db]"),
) -> None:
    """Composite foregrounds over backgrounds as the recipe says; write images, masks, alpha,
    trimaps, manifest and report; register the dataset in the catalog."""
    from synth.build import BuildError
    from synth.build import build as run_build

    try:
        res = run_build(
            recipe, out, workers=workers, executor=executor, ray_address=ray_address, resume=resume,
            overwrite=overwrite, progress=progress, catalog_url=database_url,
        )
    except (RecipeError, QuotaError, BuildError, FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    c = res.report["counts"]
    b = res.report["balance"]
    typer.echo(
        f"built {c['samples']} samples ({c['positives']} with a subject, {c['negatives']} negatives; "
        f"splits {c['splits']}) in {res.report['timings_s']['total']:.1f} s"
    )
    if b["columns"]:
        typer.echo(f"balance over {', '.join(b['columns'])}: max |deviation| {b['max_abs_deviation']:.4f}, TVD {b['total_variation_distance']:.4f}")
    q = res.report["quarantine"]
    if q["entries"]:
        typer.echo(f"quarantined {q['n_bad_input']} bad inputs, skipped {q['n_skipped']} (see build_report.md)")
    typer.echo(f"output: {res.out_dir}  (manifest.parquet, build_report.md)")
    if res.dataset_id is not None:
        typer.echo(f"catalog: dataset id {res.dataset_id}")


@app.command()
def realism(
    images: Path = typer.Option(..., "--images", help="folder of real photos"),
    masks: Path = typer.Option(..., "--masks", help="folder of their subject masks (foreground > 127), paired by file stem"),
    method: list[str] = typer.Option(
        ["illumination", "reinhard", "histogram", "poisson"], "--method", "-m",
        help="harmonization method as NAME or NAME@STRENGTH (repeat); 'none' is always scored",
    ),
    ids: Optional[Path] = typer.Option(None, "--ids", help="text file of ids (file stems) to use"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="first N photos (sorted by id)"),
    seed: int = typer.Option(0, "--seed", help="seeds each photo's appearance change with (seed, index)"),
    exposure: float = typer.Option(0.6, "--exposure-stops", min=0.0, help="exposure change range, +- stops"),
    temperature: float = typer.Option(0.15, "--temperature", min=0.0, help="white-balance change range, +- log gain"),
    contrast: float = typer.Option(1.25, "--contrast", min=1.0, help="contrast factor range [1/k, k]"),
    saturation: float = typer.Option(1.25, "--saturation", min=1.0, help="saturation factor range [1/k, k]"),
    workers: int = typer.Option(1, "--workers", "-j", min=1),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="write realism.json and realism.md here"),
    debug: bool = typer.Option(False, "--debug", help="show tracebacks"),
) -> None:
    """Measure harmonization on real photos (the iHarmony4 protocol): perturb only the subject's
    exposure, white balance, contrast and saturation, harmonize, and score MSE, fMSE and PSNR
    against the untouched photo, next to doing nothing."""
    import dataclasses

    from synth.io import atomic_write_text
    from synth.realism import (
        MethodSpec,
        Perturbation,
        evaluate,
        iter_photos,
        markdown_table,
    )
    from synth.sources import read_ids

    try:
        specs = [MethodSpec.parse(m) for m in method]
        wanted = read_ids(ids) if ids is not None else None
        photos = list(iter_photos(images, masks, wanted, limit))
        ranges = Perturbation(exposure, temperature, contrast, saturation)
        res = evaluate(photos, specs, seed=seed, ranges=ranges, workers=workers)
    except Exception as exc:  # the command's one error boundary
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    table = markdown_table(res, f"Harmonization on {res.n_photos} real photos of {images} (seed {seed}; lower MSE/fMSE is better)")
    typer.echo(table)
    for pid, why in res.skipped:
        typer.echo(f"skipped {pid}: {why}", err=True)
    if out is not None:
        doc = {
            "images": str(images), "masks": str(masks), "seed": seed, "perturbation": dataclasses.asdict(ranges),
            "n_photos": res.n_photos, "skipped": res.skipped,
            "summaries": [dataclasses.asdict(s) for s in res.summaries],
            "rows": [dataclasses.asdict(r) for r in res.rows],
        }
        import json

        atomic_write_text(out / "realism.json", json.dumps(doc, indent=2))
        atomic_write_text(out / "realism.md", table)
        typer.echo(f"wrote {out / 'realism.json'} and realism.md")


@app.command()
def schema(out: Optional[Path] = typer.Option(None, "--out", "-o", help="write to this file instead of stdout")) -> None:
    """Print the recipe's JSON schema."""
    text = json.dumps(recipe_schema(), indent=2)
    if out:
        out.write_text(text + "\n")
    else:
        typer.echo(text)


@app.command()
def validate(recipe: Path = typer.Option(..., "--recipe", "-r")) -> None:
    """Check a recipe without building (field paths for every problem)."""
    try:
        r = load_recipe(recipe)
    except RecipeError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{recipe}: valid recipe {r.name!r} ({r.n_samples} samples)")


cli = console_script(app)
"""The ``synth`` console script (:func:`synth.errors.run`: one line and exit 2 for any failure, the traceback
with --debug)."""


if __name__ == "__main__":
    cli()
