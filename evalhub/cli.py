"""``evalhub`` command line."""

from __future__ import annotations

from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Score subject-lifting model releases.")


@app.callback()
def main() -> None:
    """Score subject-lifting model releases."""


@app.command()
def datasets(database_url: Optional[str] = typer.Option(None, "--database-url", help="[default: $DATABASE_URL or ./liftlab.db]")) -> None:
    """List the datasets in the catalog with their kind, sample count and root folder."""
    import db
    from db.catalog import dataset_summary

    rows = dataset_summary(db.connect(database_url))
    if not rows:
        typer.echo("the catalog holds no dataset yet (run `synth build`)")
    for r in rows:
        typer.echo(f"{r['name']}\t{r['kind']}\t{r['n_samples']} samples\t{r['root']}")
