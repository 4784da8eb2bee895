"""``synth`` command line: ``synth build``, ``synth schema``, ``synth validate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from synth.balance import QuotaError
from synth.recipe import RecipeError, load_recipe, recipe_schema

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Build synthetic subject-lifting training sets.")


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


if __name__ == "__main__":  # pragma: no cover
    app()
