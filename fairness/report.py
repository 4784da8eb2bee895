"""``fairness report``: per-group quality, gate parity and calibration of one evalhub run, with
disparities and flags, written as a model card (Mitchell et al., "Model Cards for Model
Reporting", FAT* 2019) in Markdown, HTML and JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evalhub.runs import read_run
from evalhub.scoring import _jsonable
from evalhub.slicing import attribute_columns, sliceable
from fairness.audit import dataset_targets, representation
from fairness.flags import FlagRules, max_sd_reachable, quality_flags, significance_flags
from fairness.groups import GROUP_METRICS, METRIC_LABELS, GroupSettings, group_table

TEMPLATES = Path(__file__).parent / "templates"


def _provenance(spec: str, provenance: dict[str, str]) -> str:
    """Provenance of an attribute or intersection (``annotated x estimated``); attributes the
    catalog does not list were derived from the masks at scoring time."""
    return " x ".join(provenance.get(a, "derived") for a in spec.split("*"))


def analyse(
    engine: Any,
    run: str | Path | int,
    attributes: list[str] | None = None,
    intersections: list[str] | None = None,
    rules: FlagRules = FlagRules(),
    n_boot: int = 2000,
    n_perm: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Everything a fairness report shows, for one run, read from the catalog.

    Args:
        engine: the catalog that holds the run (also for the release manifest and a synth
            dataset's stored targets).
        run: an ``evalhub score`` run folder or catalog run id.
        attributes: attributes to analyse (default: every sliceable attribute of the run table,
            :func:`evalhub.slicing.sliceable`).
        intersections: ``"a*b"`` specs analysed like attributes (default none).
        rules: flag thresholds, test and correction (:class:`fairness.flags.FlagRules`).
        n_boot, n_perm, seed: bootstrap replicates, permutations and base seed.

    Returns:
        A JSON-able dict: ``release``, ``dataset``, ``settings``, ``rules``, ``composition``,
        ``tables`` (one :func:`fairness.groups.group_table` per attribute/intersection, with its
        ``provenance``), ``flags``, ``tests``, ``caveats``.

    Raises:
        evalhub.runs.RunNotFound: the catalog holds no such run.
        KeyError: an unknown attribute (named, with the known ones).
    """
    rt = read_run(engine, run)
    df, summary = rt.table, rt.summary
    known = attribute_columns(df)
    keep, not_sliced = sliceable(df)
    for a in [a for a in keep if df["attr_" + a].nunique() < 2]:
        keep.remove(a)
        not_sliced[a] = "one value"
    if attributes is None:
        attributes = keep
    unknown = [a for a in attributes if a not in known]
    if unknown:
        raise KeyError(f"attributes {unknown} are not in run {run} (known: {known})")
    specs = list(attributes) + list(intersections or [])
    provenance = dict(summary["dataset"].get("provenance") or {})
    settings = GroupSettings(n_boot=n_boot, seed=seed, min_n=rules.min_n)
    tables = []
    for spec in specs:
        t = group_table(df, spec, settings, test=rules.test, n_perm=n_perm)
        t["provenance"] = _provenance(spec, provenance)
        t["flags"], t["flag_context"] = quality_flags(t, rules)
        tables.append(t)
    tests = [{"attribute": t["attribute"], **x} for t in tables for x in t["tests"]]
    sig = significance_flags(tests, rules)
    flags = [f for t in tables for f in t["flags"]] + sig
    for t in tables:
        t["flags"] = [f for f in flags if f["attribute"] == t["attribute"]]
        t["tests"] = [x for x in tests if x["attribute"] == t["attribute"]]

    release = dict(summary["release"])
    from db.catalog import get_release

    rec = get_release(engine, rt.record.release)
    manifest = rec["manifest"] if rec["kind"] == "onnx" else None
    composition = representation(
        [{a: (None if pd.isna(v) else str(v)) for a, v in zip(known, row)} for row in df[["attr_" + a for a in known]].itertuples(index=False)],
        attributes=[a for a in known if a in specs or a in keep], intersections=list(intersections or []),
    )
    composition["targets"] = _targets(engine, rt.record.dataset)
    return _jsonable({
        "release": {**release, "manifest": manifest},
        "dataset": summary["dataset"],
        "run": rt.record.path,
        "run_settings": summary["settings"],
        "counts": summary["counts"],
        "overall_metrics": summary["metrics"],
        "settings": {"n_boot": n_boot, "n_perm": n_perm, "seed": seed, "level": settings.level, "n_bins": settings.n_bins},
        "rules": rules.model_dump(),
        "rule_text": rules.describe(len(tests)),
        "metric_labels": METRIC_LABELS,
        "metrics": list(GROUP_METRICS),
        "composition": composition,
        "not_sliced": not_sliced,
        "tables": tables,
        "flags": flags,
        "tests": tests,
        "caveats": _caveats(tables, summary, rules),
    })


def _targets(engine: Any, dataset: str) -> dict[str, Any] | None:
    """Achieved against target for a synth dataset revision (:func:`fairness.audit.dataset_targets`)."""
    from db.catalog import dataset_samples

    info, samples = dataset_samples(engine, dataset)
    return dataset_targets(info, samples)


def _caveats(tables: list[dict[str, Any]], summary: dict[str, Any], rules: FlagRules) -> list[str]:
    out = []
    for t in tables:
        if t["insufficient"]:
            small = ", ".join(f"{g['value']} (n={g['n']})" for g in t["groups"] if g["insufficient"])
            out.append(f"{t['attribute']}: insufficient data (n < {rules.min_n}) for {small}; their numbers are shown "
                       f"but they are left out of disparities, flags and tests.")
        if t["n_missing"]:
            out.append(f"{t['attribute']}: {t['n_missing']} image(s) have no value and are in no group.")
        if "estimated" in t["provenance"]:
            out.append(f"{t['attribute']}: values are estimated ({t['provenance']}), not annotated or self-reported; "
                       f"group numbers inherit the estimator's errors.")
        ctx = t["flag_context"]
        if ctx["groups"] >= 2 and not ctx["sd_rule_can_fire"]:
            out.append(f"{t['attribute']}: with {ctx['groups']} sufficient groups no group can lie more than "
                       f"{max_sd_reachable(ctx['groups']):.2f} SD from their mean, so the {rules.k_sd:g}-SD rule cannot fire.")
    if summary["release"].get("confidence_proxy"):
        out.append("The release has no confidence output: gate numbers (acceptance, FRR, FAR, ECE) use the proxy confidence: "
                   + (summary.get("confidence_proxy") or ""))
    out.append("Demographic attributes come only from the dataset's metadata table, never inferred from pixels.")
    return out


def _forest_png(table: dict[str, Any], metrics: tuple[str, ...] = ("iou", "acceptance_rate", "ece")) -> str | None:
    """Per-group values with 95% CIs (insufficient groups grey) and the overall value, one panel per
    metric; base64 PNG."""
    from evalhub.report import _plt, _png

    groups = table["groups"]
    if not groups:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.3 * len(metrics), 0.32 * len(groups) + 1.3), sharey=True)
    y = np.arange(len(groups))[::-1]
    for ax, m in zip(np.atleast_1d(axes), metrics):
        v = np.array([np.nan if g["metrics"][m]["value"] is None else g["metrics"][m]["value"] for g in groups], float)
        lo = np.array([np.nan if g["metrics"][m]["lo"] is None else g["metrics"][m]["lo"] for g in groups], float)
        hi = np.array([np.nan if g["metrics"][m]["hi"] is None else g["metrics"][m]["hi"] for g in groups], float)
        colors = ["#bbbbbb" if g["insufficient"] else "#4477aa" for g in groups]
        ax.errorbar(v, y, xerr=[np.nan_to_num(v - lo), np.nan_to_num(hi - v)], fmt="none", ecolor="k", lw=1, capsize=2)
        ax.scatter(v, y, c=colors, zorder=3, s=22)
        ov = table["overall"][m]["value"]
        if ov is not None:
            ax.axvline(ov, color="#ee6677", lw=1, ls="--")
        ax.set_title(METRIC_LABELS[m].split(" (")[0], fontsize=9)
        ax.tick_params(labelsize=7)
    np.atleast_1d(axes)[0].set_yticks(y, [f"{g['value']} (n={g['n']}){' *' if g['insufficient'] else ''}" for g in groups], fontsize=7)
    fig.suptitle(f"{table['attribute']}: 95% bootstrap CIs, dashed = overall, grey * = insufficient", fontsize=8)
    return _png(fig)


def write_model_card(analysis: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """Write ``model_card.md``, ``model_card.html`` (figures embedded) and ``fairness.json`` into
    ``out`` (created).

    Returns:
        ``{"md", "html", "json"}`` paths.
    """
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures = {t["attribute"]: _forest_png(t) for t in analysis["tables"]}
    num = lambda v, d=3: "n/a" if v is None or v != v else f"{v:.{d}f}"  # noqa: E731
    paths = {"md": out / "model_card.md", "html": out / "model_card.html", "json": out / "fairness.json"}
    for kind, template, auto in (("md", "model_card.md.j2", False), ("html", "model_card.html.j2", True)):
        env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]) if auto else False,
                          trim_blocks=True, lstrip_blocks=True)
        env.filters["num"] = num
        env.filters["pct"] = lambda v, d=1: "n/a" if v is None or v != v else f"{100 * v:.{d}f}%"
        env.filters["signed"] = lambda v, d=3: "n/a" if v is None or v != v else f"{v:+.{d}f}"
        paths[kind].write_text(env.get_template(template).render(a=analysis, figures=figures if kind == "html" else {}))
    paths["json"].write_text(json.dumps(analysis, indent=2))
    return paths

