"""``raters`` command line."""

from __future__ import annotations

from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Human rating campaigns.")


@app.callback()
def main() -> None:
    """Human rating campaigns."""


@app.command("init-db")
def init_db(database_url: Optional[str] = typer.Option(None, "--database-url")) -> None:
    """Create or upgrade the catalog schema (Alembic ``upgrade head``) and print its URL."""
    import db

    engine = db.connect(database_url)
    typer.echo(f"catalog ready at {engine.url.render_as_string(hide_password=True)}")
