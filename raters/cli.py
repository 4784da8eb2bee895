"""``raters`` command line: accounts, campaigns, results and the app server. It runs with the
catalog's own credentials (an operator), so it needs no login."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from synth.errors import console_script

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help="Human rating campaigns.")
user_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Accounts.")
campaign_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Campaigns.")
app.add_typer(user_app, name="user")
corrections_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Raters' ground-truth corrections.")
app.add_typer(campaign_app, name="campaign")
app.add_typer(corrections_app, name="corrections")
DB_OPT = typer.Option(None, "--database-url", help="catalog URL [default: $DATABASE_URL, else sqlite:///liftlab.db]")


@app.callback()
def main() -> None:
    """Human rating campaigns."""


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(2)


def _engine(url: Optional[str]):
    import db

    return db.connect(url)


@app.command("init-db")
def init_db(database_url: Optional[str] = DB_OPT) -> None:
    """Create or upgrade the catalog schema (Alembic ``upgrade head``) and print its URL."""
    engine = _engine(database_url)
    typer.echo(f"catalog ready at {engine.url.render_as_string(hide_password=True)}")


@user_app.command("add")
def user_add(
    name: str = typer.Argument(...),
    role: str = typer.Option("rater", "--role", help="rater | admin"),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="read the password from the first line of stdin"),
    database_url: Optional[str] = DB_OPT,
) -> None:
    """Create an account (the password is asked twice, hidden, or read from stdin; stored as argon2id)."""
    from raters.service import add_user

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        uid = add_user(_engine(database_url), name, password, role)
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(f"user {name} ({role}) created (id {uid})")


@user_app.command("disable")
def user_disable(name: str = typer.Argument(...), database_url: Optional[str] = DB_OPT) -> None:
    """Disable an account and end its sessions."""
    from raters.service import NotFound, disable_user

    try:
        disable_user(_engine(database_url), name)
    except NotFound as exc:
        _fail(exc.args[0])
    typer.echo(f"user {name} disabled")


@user_app.command("list")
def user_list(database_url: Optional[str] = DB_OPT) -> None:
    """List the accounts."""
    from raters.service import list_users

    for u in list_users(_engine(database_url)):
        typer.echo(f"{u['name']:<20} {u['role']:<6} {'active' if u['active'] else 'disabled'}")


@campaign_app.command("create")
def campaign_create(
    name: str = typer.Argument(...),
    run: list[Path] = typer.Option(..., "--run", help="evalhub run folder; give two for a blind A/B campaign"),
    items: int = typer.Option(..., "--items", min=1, help="regular items (gold items come on top)"),
    raters_per_item: int = typer.Option(3, "--raters-per-item", "-k", min=1),
    gold: int = typer.Option(0, "--gold", min=0, help="gold items with reference answers (obvious cases)"),
    gold_file: Optional[Path] = typer.Option(None, "--gold-file", help="CSV sample_id,would_use (or sample_id,winner for A/B)"),
    stratify: Optional[str] = typer.Option(None, "--stratify", help="a,b: attributes whose values are the strata [default: area_bucket]"),
    raters: Optional[str] = typer.Option(None, "--raters", help="names [default: every active rater]"),
    seed: int = typer.Option(0, "--seed"),
    correct: Optional[str] = typer.Option(None, "--correct", help="a correction campaign starting from 'prediction' or 'truth'"),
    database_url: Optional[str] = DB_OPT,
) -> None:
    """Draw items from evalhub runs (stratified, weighted towards the gate threshold and metric
    disagreements, with gold items) and assign each to k distinct raters. With --correct, raters
    correct the masks with a brush; each correction is a new version of the photo's ground truth."""
    from raters.campaigns import CampaignError, create_campaign

    try:
        res = create_campaign(_engine(database_url), name, [str(r) for r in run], items, raters_per_item, gold,
                              None if stratify is None else [s for s in stratify.split(",") if s],
                              None if raters is None else [s for s in raters.split(",") if s], seed, gold_file, correct)
    except (CampaignError, FileNotFoundError) as exc:
        _fail(str(exc))
    typer.echo(f"campaign {name} ({res['kind']}): {res['items']} items + {res['gold']} gold, {res['assignments']} assignments, "
               f"gold rate {res['gold_rate']:.1%} of a rater's queue")


@corrections_app.command("export")
def corrections_export(
    dataset: str = typer.Option(..., "--dataset", help="dataset name (or name@N)"),
    out: Path = typer.Option(..., "--out", help="folder to write images/, masks/ and corrections.csv into"),
    database_url: Optional[str] = DB_OPT,
) -> None:
    """Write a dataset's newest ground-truth corrections as a foreground folder for synth
    (kind: image_mask, metadata: corrections.csv)."""
    from raters.corrections import ExportError, export_corrections

    try:
        res = export_corrections(_engine(database_url), dataset, out)
    except (KeyError, ExportError) as exc:
        _fail(str(exc).strip("'\""))
    for key, reason in res.skipped:
        typer.secho(f"skipped {key}: {reason}", fg=typer.colors.YELLOW, err=True)
    if res.reused:
        typer.echo(f"{res.out} already holds these {res.n} corrections; nothing written")
    else:
        typer.echo(f"{res.n} corrected photo(s) written to {res.out}")


@campaign_app.command("list")
def campaign_list(database_url: Optional[str] = DB_OPT) -> None:
    """List the campaigns with their progress."""
    from raters.campaigns import campaign_overview

    for c in campaign_overview(_engine(database_url)):
        typer.echo(f"{c['name']:<24} {c['kind']:<6} {c['dataset']:<16} items {c['items']} (+{c['gold']} gold)  done {c['done']}/{c['total']}")


@app.command()
def results(
    campaign: str = typer.Argument(...),
    out: Optional[Path] = typer.Option(None, "--out", help="export ratings and results (CSV, Parquet, JSON) here"),
    n_boot: int = typer.Option(1000, "--n-boot", min=100, help="bootstrap replicates (>= 100 for a 95 % interval)"),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = typer.Option(False, "--json"),
    database_url: Optional[str] = DB_OPT,
) -> None:
    """Progress, gold accuracy, agreement and results of a campaign."""
    from raters.results import campaign_results, export
    from raters.service import NotFound

    engine = _engine(database_url)
    try:
        res = campaign_results(engine, campaign, n_boot=n_boot, seed=seed)
        if out is not None:
            paths = export(engine, campaign, out, n_boot=n_boot, seed=seed)
    except NotFound as exc:
        _fail(exc.args[0])
    if as_json:
        typer.echo(json.dumps(res, indent=2, default=str))
        return
    p = res["progress"]
    typer.echo(f"{campaign} ({res['campaign']['kind']}): {p['done']}/{p['total']} assignments done, "
               f"{p['items_complete']}/{p['items']} items complete, {res['n_ratings']} ratings")
    for g in res["gold_accuracy"]:
        typer.echo(f"  gold accuracy {g['rater']}: {g['accuracy']:.2f} ({g['n']} gold)")
    for q, a in res["krippendorff_alpha"].items():
        typer.echo(f"  Krippendorff's alpha {q}: {'n/a' if a is None else f'{a:.3f}'}")
    typer.echo(f"  time-on-task outliers: {len(res['time_on_task']['outliers'])}")
    if res["campaign"]["kind"] == "ab":
        for k, v in res["bradley_terry"]["scores"].items():
            lo, hi = v.get("lo"), v.get("hi")
            ci = "" if lo is None or hi is None else f" [{lo:.3f}, {hi:.3f}]"
            typer.echo(f"  Bradley-Terry {k}: {v['value']:.3f}{ci}, win rate {res['bradley_terry']['win_rate'][k]:.3f}")
    else:
        for rel, qs in res["per_release"].items():
            for q, v in qs.items():
                if v["mean"] is not None:
                    typer.echo(f"  {rel} {q}: {v['mean']:.3f} [{v['lo']:.3f}, {v['hi']:.3f}] (n items {v['n']})")
        hm = res["human_vs_metric"]
        typer.echo(f"  Spearman overall vs IoU {hm.get('spearman_overall_iou')}, vs boundary F1 {hm.get('spearman_overall_boundary_f1')}")
    if out is not None:
        typer.echo("wrote " + ", ".join(str(p) for p in paths.values()))


@app.command()
def serve(
    port: int = typer.Option(8501, "--port", min=1, max=65535),
    address: str = typer.Option("127.0.0.1", "--address"),
    database_url: Optional[str] = DB_OPT,
) -> None:
    """Start the Streamlit rater app on the catalog."""
    import db

    env = dict(os.environ)
    env["DATABASE_URL"] = db.database_url(database_url)
    _engine(env["DATABASE_URL"]).dispose()  # migrate before serving
    script = Path(__file__).with_name("app.py")
    cmd = [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port), "--server.address", address,
           "--server.headless", "true", "--browser.gatherUsageStats", "false",
           # visitors never see a traceback (file paths, SQL, parameters): errors show as one line
           "--client.showErrorDetails", "none"]
    # become the server (no child process): a signal to this process, as a supervisor or a test
    # sends it, stops the app itself rather than leaving it running with its database connections
    sys.stdout.flush()
    os.execve(sys.executable, cmd, env)


cli = console_script(app)
"""The ``raters`` console script (:func:`synth.errors.run`: one line and exit 2 for any failure, the traceback
with --debug)."""


if __name__ == "__main__":
    cli()
