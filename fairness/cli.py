"""``fairness`` command line."""

from __future__ import annotations

import json
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Fairness audits and reports.")


@app.callback()
def main() -> None:
    """Fairness audits and reports."""


@app.command()
def audit(
    dataset: str = typer.Option(..., "--dataset", "-d"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
    database_url: Optional[str] = typer.Option(None, "--database-url"),
) -> None:
    """Representation (n, share) of every attribute of a catalog dataset."""
    import db
    from fairness.audit import composition

    try:
        res = composition(db.connect(database_url), dataset)
    except KeyError as exc:
        typer.echo(f"error: {exc.args[0]}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(res, indent=2))
        return
    typer.echo(f"{res['dataset']}: {res['n_samples']} samples")
    for name, rows in res["attributes"].items():
        typer.echo(f"  {name}: " + ", ".join(f"{r['value']} {r['n']} ({r['share']:.1%})" for r in rows))
    for name, st in res["continuous"].items():
        typer.echo(f"  {name}: n {st['n']}, min {st['min']:g}, median {st['median']:g}, max {st['max']:g}")
