"""``fairness`` command line: composition audits, model-card reports and gap comparisons."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from synth.errors import console_script

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help="Fairness audits, model-card reports and gap comparisons.")


@app.callback()
def main() -> None:
    """Fairness audits, model-card reports and gap comparisons."""


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(2)


def _split(spec: Optional[str]) -> Optional[list[str]]:
    return None if spec is None else [s.strip() for s in spec.split(",") if s.strip()]


def _connect(database_url: Optional[str]):
    import db

    return db.connect(database_url)


@app.command()
def audit(
    dataset: str = typer.Option(..., "--dataset", "-d"),
    intersections: Optional[str] = typer.Option(None, "--intersections", help="a*b,c*d"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
    database_url: Optional[str] = typer.Option(None, "--database-url"),
) -> None:
    """Representation (n, share) of every attribute and intersection of a catalog dataset, with each
    attribute's provenance; for a synth dataset, the achieved distribution against its recipe."""
    from fairness.audit import composition

    try:
        res = composition(_connect(database_url), dataset, _split(intersections) or [])
    except KeyError as exc:
        _fail(exc.args[0])
    if as_json:
        typer.echo(json.dumps(res, indent=2))
        return
    typer.echo(f"{res['dataset']} ({res['kind']}): {res['n_samples']} samples")
    for name, rows in res["attributes"].items():
        prov = " x ".join(res["provenance"].get(a, "?") for a in name.split("*"))
        typer.echo(f"  {name} [{prov}]: " + ", ".join(f"{r['value']} {r['n']} ({r['share']:.1%})" for r in rows))
    for name, st in res["continuous"].items():
        typer.echo(f"  {name}: n {st['n']}, min {st['min']:g}, median {st['median']:g}, max {st['max']:g}")
    t = res["targets"]
    if t:
        typer.echo(f"  against the recipe: negatives {t['negatives']['achieved']:.1%} (target {t['negatives']['target']:.1%}); "
                   + ", ".join(f"{s['split']} {s['achieved']:.1%} (target {s['target']:.1%})" for s in t["splits"]))
        if t["balance"]:
            b = t["balance"]
            typer.echo(f"  balance over {' x '.join(b['columns'])}: TVD {b['total_variation_distance']:.4f}, "
                       f"largest deviation {b['max_abs_deviation']:.4f}")
            for c in b["cells"]:
                cell = ", ".join(f"{k}={v}" for k, v in c["cell"].items())
                typer.echo(f"    {cell}: {c['achieved']} ({c['achieved_share']:.1%}), target {c['target']} ({c['target_share']:.1%})")


@app.command()
def report(
    run: Path = typer.Option(..., "--run", help="an evalhub run folder"),
    out: Path = typer.Option(..., "--out", help="folder for model_card.md/.html and fairness.json"),
    attributes: Optional[str] = typer.Option(None, "--attributes", help="a,b,... (default: every sliceable attribute)"),
    intersections: Optional[str] = typer.Option(None, "--intersections", help="a*b,..."),
    min_n: int = typer.Option(30, "--min-n", min=1, help="groups below this n are insufficient data"),
    k_sd: float = typer.Option(3.0, "--k-sd", help="iou_sd rule: SDs from the mean over groups"),
    d_points: float = typer.Option(2.52, "--d-points", help="iou_points rule: IoU points from the mean over groups"),
    ratio_low: float = typer.Option(0.8, "--ratio-low", help="four_fifths rule: lowest acceptance ratio to overall"),
    ratio_high: float = typer.Option(1.25, "--ratio-high", help="four_fifths rule: highest acceptance ratio to overall"),
    test: str = typer.Option("permutation", "--test", help="permutation | bootstrap"),
    correction: str = typer.Option("holm", "--correction", help="holm | bh (across all comparisons)"),
    alpha: float = typer.Option(0.05, "--alpha"),
    n_boot: int = typer.Option(2000, "--n-boot", min=100, help="bootstrap replicates (>= 100 for a 95 % interval)"),
    n_perm: int = typer.Option(2000, "--n-perm", min=100),
    seed: int = typer.Option(0, "--seed"),
    database_url: Optional[str] = typer.Option(None, "--database-url", help="the catalog that holds the run [default: $DATABASE_URL or ./liftlab.db]"),
) -> None:
    """Per-group quality, gate parity and calibration of a run, with disparities and flags, as a model card."""
    from pydantic import ValidationError

    from evalhub.runs import RunNotFound
    from fairness.flags import FlagRules
    from fairness.report import analyse, write_model_card

    try:
        rules = FlagRules(k_sd=k_sd, d_points=d_points, ratio_low=ratio_low, ratio_high=ratio_high, test=test,
                          correction=correction, alpha=alpha, min_n=min_n)
    except ValidationError as exc:
        _fail("; ".join(f"--{'-'.join(str(x) for x in e['loc']).replace('_', '-')}: {e['msg']}" for e in exc.errors()))
    try:
        res = analyse(_connect(database_url), run, _split(attributes), _split(intersections), rules, n_boot=n_boot,
                      n_perm=n_perm, seed=seed)
    except (RunNotFound, KeyError) as exc:
        _fail(exc.args[0])
    paths = write_model_card(res, out)
    typer.echo(f"{res['release']['name']} on {res['dataset']['name']}: {len(res['tables'])} attribute(s)/intersection(s), "
               f"{len(res['tests'])} comparisons, {len(res['flags'])} flag(s)")
    for f in res["flags"]:
        typer.echo(f"  FLAG {f['rule']} {f['attribute']}={f['group']}: {f['detail']}")
    for c in res["caveats"]:
        typer.echo(f"  caveat: {c}")
    typer.echo(f"wrote {paths['md']}, {paths['html']}, {paths['json']}")


@app.command()
def compare(
    run_a: Path = typer.Argument(..., help="baseline run (A)"),
    run_b: Path = typer.Argument(..., help="candidate run (B)"),
    attributes: Optional[str] = typer.Option(None, "--attributes"),
    intersections: Optional[str] = typer.Option(None, "--intersections"),
    min_n: int = typer.Option(30, "--min-n", min=1),
    n_boot: int = typer.Option(2000, "--n-boot", min=100, help="bootstrap replicates (>= 100 for a 95 % interval)"),
    seed: int = typer.Option(0, "--seed"),
    out: Optional[Path] = typer.Option(None, "--out", help="also write fairness_compare.md and .json here"),
    as_json: bool = typer.Option(False, "--json"),
    database_url: Optional[str] = typer.Option(None, "--database-url", help="the catalog that holds the runs"),
) -> None:
    """Did each gap between groups shrink or grow from A to B? Paired bootstrap CIs."""
    from evalhub.compare import CompareError
    from evalhub.runs import RunNotFound
    from fairness.compare import compare_fairness, format_fairness_compare

    try:
        res = compare_fairness(_connect(database_url), run_a, run_b, _split(attributes), _split(intersections), n_boot=n_boot,
                               seed=seed, min_n=min_n)
    except (RunNotFound, KeyError, CompareError) as exc:
        _fail(exc.args[0])
    text = format_fairness_compare(res)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "fairness_compare.md").write_text(f"# Fairness comparison\n\n{text}\n")
        (out / "fairness_compare.json").write_text(json.dumps(res, indent=2))
    typer.echo(json.dumps(res, indent=2) if as_json else text)


cli = console_script(app)
"""The ``fairness`` console script (:func:`synth.errors.run`: one line and exit 2 for any failure, the traceback
with --debug)."""


if __name__ == "__main__":
    cli()
