"""fairness: group metrics against fairlearn's MetricFrame, every flag rule on hand-built cases,
insufficient groups, multiple-comparison correction, CI coverage on a simulated population, the
composition audit, and reports and comparisons on real CCP and ECSSD runs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import db
from evalhub.calibration import ece
from evalhub.cli import app as evalhub_app
from fairness.audit import recipe_targets, representation
from fairness.cli import app
from fairness.flags import FlagRules, quality_flags, significance_flags
from fairness.groups import GROUP_METRICS, GroupSettings, group_table
from tests.conftest import CCP, ECSSD
from tests.helpers import ecssd_ids, erode_px, write_predictions

runner = CliRunner()


def run_table(groups, iou, accepted, acceptable=None, has_subject=None, conf=None, extra=None, seed=0) -> pd.DataFrame:
    """A run table as ``evalhub score`` writes it, from per-row arrays."""
    n = len(groups)
    rng = np.random.default_rng(seed)
    iou = np.asarray(iou, float)
    has_subject = np.ones(n, bool) if has_subject is None else np.asarray(has_subject, bool)
    acceptable = (has_subject & (np.nan_to_num(iou) >= 0.8)) if acceptable is None else np.asarray(acceptable, bool)
    df = pd.DataFrame({
        "sample_key": [f"s{i:04d}" for i in range(n)], "has_subject": has_subject,
        "iou": np.where(has_subject, iou, np.nan), "boundary_f1": np.where(has_subject, rng.random(n), np.nan),
        "confidence": rng.random(n) if conf is None else np.asarray(conf, float),
        "accepted": np.asarray(accepted, bool), "acceptable": acceptable, "attr_g": list(groups),
    })
    for k, v in (extra or {}).items():
        df["attr_" + k] = list(v)
    return df


@pytest.fixture(scope="module")
def population():
    rng = np.random.default_rng(7)
    n = 900
    g = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])
    h = rng.choice(["x", "y"], n)
    pos = rng.random(n) < 0.9
    iou = np.clip(rng.beta(8, 2, n) - (g == "c") * 0.1, 0, 1)
    conf = np.clip(iou + rng.normal(0, 0.15, n), 0, 1)
    return run_table(g, iou, conf >= 0.6, has_subject=pos, conf=conf, extra={"h": h}, seed=1)


def _mean_of(y_true, y_pred):
    return float(np.nanmean(y_pred)) if np.isfinite(y_pred).any() else float("nan")


def _ece_of(y_true, y_pred, conf):
    return ece(np.asarray(conf), np.asarray(y_true))


@pytest.mark.parametrize("spec", ["g", "g*h"])
def test_group_metrics_match_fairlearn_metricframe(population, spec):
    from fairlearn.metrics import MetricFrame, false_negative_rate, false_positive_rate, selection_rate

    df = population
    t = group_table(df, spec, GroupSettings(n_boot=50, min_n=1), n_perm=20)
    sf = df["attr_g"] if spec == "g" else df[["attr_g", "attr_h"]]
    y_true, y_pred = df["acceptable"].to_numpy(), df["accepted"].to_numpy()
    frames = {
        "acceptance_rate": MetricFrame(metrics=selection_rate, y_true=y_true, y_pred=y_pred, sensitive_features=sf),
        "frr": MetricFrame(metrics=false_negative_rate, y_true=y_true, y_pred=y_pred, sensitive_features=sf),
        "far": MetricFrame(metrics=false_positive_rate, y_true=y_true, y_pred=y_pred, sensitive_features=sf),
        "iou": MetricFrame(metrics=_mean_of, y_true=y_true, y_pred=df["iou"].to_numpy(), sensitive_features=sf),
        "boundary_f1": MetricFrame(metrics=_mean_of, y_true=y_true, y_pred=df["boundary_f1"].to_numpy(), sensitive_features=sf),
        "ece": MetricFrame(metrics=_ece_of, y_true=y_true, y_pred=y_pred, sensitive_features=sf,
                           sample_params={"conf": df["confidence"].to_numpy()}),
    }
    assert set(frames) == set(GROUP_METRICS)
    for m, mf in frames.items():
        by_group = mf.by_group
        for g in t["groups"]:
            key = g["value"] if spec == "g" else tuple(g["value"].split(" & "))
            assert g["metrics"][m]["value"] == pytest.approx(by_group.loc[key], abs=1e-12), (m, key)
        assert t["overall"][m]["value"] == pytest.approx(mf.overall, abs=1e-12), m
        d = t["disparities"][m]
        assert d["max_minus_min"]["value"] == pytest.approx(mf.difference(method="between_groups"), abs=1e-12), m
        assert d["min_over_max"]["value"] == pytest.approx(mf.ratio(method="between_groups"), abs=1e-12), m
        assert d["max_abs_diff_to_overall"] == pytest.approx(mf.difference(method="to_overall"), abs=1e-12), m
        assert d["min_ratio_to_overall"] == pytest.approx(mf.ratio(method="to_overall"), abs=1e-12), m
        for g in t["groups"]:
            key = g["value"] if spec == "g" else tuple(g["value"].split(" & "))
            assert g["diff_to_overall"][m]["value"] == pytest.approx(by_group.loc[key] - mf.overall, abs=1e-12)
    # every point estimate lies inside its bootstrap CI
    for g in t["groups"]:
        for m in GROUP_METRICS:
            r = g["metrics"][m]
            assert r["lo"] - 1e-12 <= r["value"] <= r["hi"] + 1e-12, (g["value"], m)


def test_group_denominators_by_hand():
    # 6 images: group a = 4 (3 with a subject), group b = 2
    df = run_table(["a", "a", "a", "a", "b", "b"], [0.9, 0.5, 0.85, np.nan, 0.7, 0.95],
                   accepted=[True, True, False, True, False, True], has_subject=[1, 1, 1, 0, 1, 1],
                   conf=[0.9, 0.7, 0.3, 0.8, 0.2, 0.95])
    t = group_table(df, "g", GroupSettings(n_boot=20, min_n=1), n_perm=10)
    a = t["groups"][0]["metrics"]
    assert a["iou"]["value"] == pytest.approx((0.9 + 0.5 + 0.85) / 3) and a["iou"]["n"] == 3
    assert a["acceptance_rate"]["value"] == pytest.approx(3 / 4)
    # acceptable in a: images 0 and 2 (IoU >= 0.8); image 2 was rejected
    assert a["frr"]["value"] == pytest.approx(1 / 2) and a["frr"]["n"] == 2
    # unacceptable in a: image 1 (IoU 0.5) and the negative 3; both accepted
    assert a["far"]["value"] == pytest.approx(2 / 2) and a["far"]["n"] == 2
    # ECE by the definition: bins of width 1/15; a's confidences 0.9, 0.7, 0.3, 0.8 each alone in its bin
    assert a["ece"]["value"] == pytest.approx((abs(0.9 - 1) + abs(0.7 - 0) + abs(0.3 - 1) + abs(0.8 - 0)) / 4)


def _constant_groups(means: dict[str, float], n: int = 30, accept: dict[str, float] | None = None) -> pd.DataFrame:
    groups, iou, acc = [], [], []
    for g, m in means.items():
        groups += [g] * n
        iou += [m] * n
        k = round((accept or {}).get(g, 0.5) * n)
        acc += [True] * k + [False] * (n - k)
    return run_table(groups, iou, acc)


def test_flag_iou_points_hand_case():
    # group means 0.80, 0.80, 0.85: mean over groups 0.81667; c is 3.33 points away (> 2.52), a and b 1.67
    t = group_table(_constant_groups({"a": 0.80, "b": 0.80, "c": 0.85}), "g", GroupSettings(n_boot=20), n_perm=10)
    flags, ctx = quality_flags(t, FlagRules())
    pts = [f for f in flags if f["rule"] == "iou_points"]
    assert [f["group"] for f in pts] == ["c"]
    assert ctx["mean_over_groups"] == pytest.approx(2.45 / 3)
    assert "3.33 IoU points" in pts[0]["detail"]
    # d = 3.5 points: nobody
    flags, _ = quality_flags(t, FlagRules(d_points=3.5))
    assert not [f for f in flags if f["rule"] == "iou_points"]
    # three groups: at most (3 - 1) / sqrt(3) = 1.15 SD from their mean, so the 3-SD rule cannot fire
    assert ctx["sd_rule_can_fire"] is False


def test_flag_iou_sd_hand_case():
    # 11 groups at 0.80 and one at 0.70: mean 0.791667, sample SD sqrt(11 * (1/120)^2 + (11/120)^2) / sqrt(11)
    # = 0.0288675; the outlier is (11/120) / 0.0288675 = 3.1754 SD away (Samuelson's bound for G = 12)
    means = {f"g{i:02d}": 0.80 for i in range(11)} | {"g11": 0.70}
    t = group_table(_constant_groups(means), "g", GroupSettings(n_boot=20), n_perm=10)
    flags, ctx = quality_flags(t, FlagRules(d_points=50))
    assert ctx["sd_over_groups"] == pytest.approx(0.0288675, abs=1e-6)
    assert ctx["sd_rule_can_fire"] is True
    sd = [f for f in flags if f["rule"] == "iou_sd"]
    assert [f["group"] for f in sd] == ["g11"] and "3.18 SD" in sd[0]["detail"]
    assert not [f for f in quality_flags(t, FlagRules(k_sd=3.2, d_points=50))[0] if f["rule"] == "iou_sd"]


def test_flag_four_fifths_hand_case():
    # acceptance 0.5 and 0.8 with 40 images each: overall 0.65; ratios 0.769 (< 0.8) and 1.231 (<= 1.25)
    t = group_table(_constant_groups({"a": 0.9, "b": 0.9}, n=40, accept={"a": 0.5, "b": 0.8}), "g", GroupSettings(n_boot=20), n_perm=10)
    flags, _ = quality_flags(t, FlagRules())
    ff = [f for f in flags if f["rule"] == "four_fifths"]
    assert [f["group"] for f in ff] == ["a"] and ff[0]["value"] == pytest.approx(0.5 / 0.65)
    assert t["disparities"]["acceptance_rate"]["min_over_max"]["value"] == pytest.approx(0.5 / 0.8)
    # a band of 0.75-1.35 accepts both
    assert not [f for f in quality_flags(t, FlagRules(ratio_low=0.75, ratio_high=1.35))[0] if f["rule"] == "four_fifths"]
    # 0.5-1.2 flags b instead (1.231 > 1.2)
    assert [f["group"] for f in quality_flags(t, FlagRules(ratio_low=0.5, ratio_high=1.2))[0] if f["rule"] == "four_fifths"] == ["b"]


@pytest.mark.parametrize("test", ["permutation", "bootstrap"])
def test_flag_significant_difference(test):
    rng = np.random.default_rng(3)
    n = 80
    g = np.array(["a"] * n + ["b"] * n)
    iou = np.concatenate([rng.normal(0.9, 0.05, n), rng.normal(0.7, 0.05, n)]).clip(0, 1)
    null = rng.choice(["p", "q"], 2 * n)
    df = run_table(g, iou, rng.random(2 * n) < 0.5, extra={"noise": null})
    rules = FlagRules(test=test)
    tests = []
    for spec in ("g", "noise"):
        t = group_table(df, spec, GroupSettings(n_boot=500), test=test, n_perm=500)
        assert len(t["tests"]) == len(GROUP_METRICS)  # two groups: one test per metric
        tests += [{"attribute": spec, **x} for x in t["tests"]]
    flags = significance_flags(tests, rules)
    iou_a = next(x for x in tests if x["attribute"] == "g" and x["metric"] == "iou")
    # two groups: one test, on the worse-off group's side (b, IoU 0.7 against 0.9)
    assert iou_a["group"] == "b" and iou_a["statistic"] == pytest.approx(iou[n:].mean() - iou[:n].mean())
    assert iou_a["p"] == pytest.approx(1 / 501)  # no resample reaches a 0.2 gap
    assert iou_a["p_adjusted"] == pytest.approx(min(1, len(tests) / 501))
    assert ("g", "iou") in {(f["attribute"], f["metric"]) for f in flags}
    assert not [f for f in flags if f["attribute"] == "noise"]


def test_multiple_comparison_correction_on_known_pvalues():
    tests = [{"attribute": "x", "group": f"g{i}", "metric": "iou", "statistic": 0.1, "p": p} for i, p in enumerate([0.01, 0.02, 0.03, 0.04])]
    # Holm: 4 x 0.01 = 0.04, 3 x 0.02 = 0.06, 2 x 0.03 = 0.06, 1 x 0.04 -> 0.06 (monotone): one rejection
    holm_flags = significance_flags([dict(t) for t in tests], FlagRules(correction="holm"))
    assert [f["group"] for f in holm_flags] == ["g0"]
    # BH: p_(i) m / i = 0.04 for every i: all four rejected
    copy = [dict(t) for t in tests]
    bh_flags = significance_flags(copy, FlagRules(correction="bh"))
    assert len(bh_flags) == 4 and [t["p_adjusted"] for t in copy] == pytest.approx([0.04] * 4)
    # alpha 0.03: BH rejects none
    assert significance_flags([dict(t) for t in tests], FlagRules(correction="bh", alpha=0.03)) == []


def test_insufficient_groups_reported_not_dropped():
    df = _constant_groups({"a": 0.8, "b": 0.9}, n=40)
    df = pd.concat([df, run_table(["tiny"] * 5, [0.1] * 5, [False] * 5, seed=2).assign(sample_key=[f"t{i}" for i in range(5)])])
    t = group_table(df, "g", GroupSettings(n_boot=50, min_n=30), n_perm=50)
    tiny = next(g for g in t["groups"] if g["value"] == "tiny")
    assert tiny["insufficient"] and tiny["n"] == 5 and tiny["metrics"]["iou"]["value"] == pytest.approx(0.1)
    assert t["insufficient"] == ["tiny"]
    # disparities over a and b only: max - min = 0.1, not 0.8
    assert t["disparities"]["iou"]["groups"] == 2
    assert t["disparities"]["iou"]["max_minus_min"]["value"] == pytest.approx(0.1)
    assert {x["group"] for x in t["tests"]} <= {"a", "b"}
    flags, _ = quality_flags(t, FlagRules())
    assert all(f["group"] != "tiny" for f in flags)
    # with min_n 5 it counts
    t5 = group_table(df, "g", GroupSettings(n_boot=50, min_n=5), n_perm=50)
    assert t5["disparities"]["iou"]["max_minus_min"]["value"] == pytest.approx(0.8)


def test_bootstrap_cis_cover_the_true_values_at_about_the_nominal_rate():
    # population: acceptance rates 0.6 and 0.4 (true gap 0.2), IoU ~ Beta(8, 2) (mean 0.8) in both
    rng = np.random.default_rng(11)
    sims, n = 200, 150
    hits = {"rate_a": 0, "gap": 0, "iou_a": 0, "ratio": 0}
    for s in range(sims):
        g = np.array(["a"] * n + ["b"] * n)
        acc = np.concatenate([rng.random(n) < 0.6, rng.random(n) < 0.4])
        df = run_table(g, rng.beta(8, 2, 2 * n), acc, seed=s)
        t = group_table(df, "g", GroupSettings(n_boot=400, seed=s), n_perm=5)
        a = t["groups"][0]["metrics"]
        hits["rate_a"] += a["acceptance_rate"]["lo"] <= 0.6 <= a["acceptance_rate"]["hi"]
        hits["iou_a"] += a["iou"]["lo"] <= 0.8 <= a["iou"]["hi"]
        d = t["disparities"]["acceptance_rate"]
        hits["gap"] += d["max_minus_min"]["lo"] <= 0.2 <= d["max_minus_min"]["hi"]
        hits["ratio"] += d["min_over_max"]["lo"] <= 0.4 / 0.6 <= d["min_over_max"]["hi"]
    # 200 simulations: the SE of a 0.95 coverage is 0.015; accept 0.90-0.99
    for k, v in hits.items():
        assert 0.90 <= v / sims <= 0.99, (k, v / sims)


def test_representation_and_recipe_targets_by_hand():
    rows = [{"a": "x", "b": "1"}, {"a": "x", "b": "2"}, {"a": "y"}, {"b": "1"}]
    rep = representation(rows, intersections=["a*b"])
    assert rep["attributes"]["a"] == [{"value": "x", "n": 2, "share": 0.5}, {"value": "y", "n": 1, "share": 0.25},
                                      {"value": None, "n": 1, "share": 0.25}]
    assert [(r["value"], r["n"]) for r in rep["attributes"]["a*b"]] == [("x & 1", 1), ("x & 2", 1), (None, 2)]
    with pytest.raises(KeyError, match="'zz'"):
        representation(rows, intersections=["a*zz"])
    # synth: 8 samples, 2 negatives (target 0.25); positives 4 x and 2 y against a uniform 3 / 3
    samples = [{"has_subject": True, "split": "train", "attributes": {"kind": "x"}}] * 4 + \
              [{"has_subject": True, "split": "test", "attributes": {"kind": "y"}}] * 2 + \
              [{"has_subject": False, "split": "train", "attributes": {}}] * 2
    recipe = {"negatives": 0.25, "splits": {"train": 0.75, "val": 0.0, "test": 0.25}, "balance": {"columns": ["kind"], "mode": "uniform", "cells": []}}
    t = recipe_targets(recipe, samples)
    assert t["negatives"] == {"target": 0.25, "achieved": 0.25, "deviation": 0.0}
    assert [(s["split"], s["achieved"]) for s in t["splits"]] == [("train", 0.75), ("val", 0.0), ("test", 0.25)]
    cells = {c["cell"]["kind"]: c for c in t["balance"]["cells"]}
    assert (cells["x"]["target"], cells["x"]["achieved"], cells["y"]["target"], cells["y"]["achieved"]) == (3, 4, 3, 2)
    assert t["balance"]["total_variation_distance"] == pytest.approx(1 / 6, abs=1e-6)


# --- real data -------------------------------------------------------------------------------------

N_CCP = 120


def _eroded(folder, root, ids, amount):
    """Ground truth eroded by ``amount(id)`` px (a stand-in release with known per-group quality),
    confidence 1 - amount / 30."""
    return write_predictions(folder, ids, lambda m, k: erode_px(m, amount(k)), lambda i: round(1 - amount(ids[i]) / 30, 4), root=root)


@pytest.fixture(scope="module")
def ccp_runs(tmp_path_factory):
    """CCP (first 120 photos, real metadata): run A erodes trousers wearers' masks by 12 px and the
    others by 2; run B erodes everyone by 2."""
    tmp = tmp_path_factory.mktemp("ccp")
    url = f"sqlite:///{tmp / 'catalog.db'}"
    meta = pd.read_csv(CCP / "metadata.csv", dtype=str).head(N_CCP)
    ids = meta["sample_id"].tolist()
    garment = dict(zip(meta["sample_id"], meta["bottom_garment"]))
    r = runner.invoke(evalhub_app, ["import-dataset", "ccp", "--images", str(CCP / "images"), "--masks", str(CCP / "masks"),
                                    "--metadata", str(CCP / "metadata.csv"), "--limit", str(N_CCP), "--database-url", url])
    assert r.exit_code == 0, r.output
    for name, amount in (("A", lambda k: 12 if garment[k] == "trousers" else 2), ("B", lambda k: 2)):
        _eroded(tmp / f"pred{name}", CCP, ids, amount)
        r = runner.invoke(evalhub_app, ["release", "add", f"rel{name}", "--predictions", str(tmp / f"pred{name}"), "--database-url", url])
        assert r.exit_code == 0, r.output
        r = runner.invoke(evalhub_app, ["score", "--release", f"rel{name}", "--dataset", "ccp", "--out", str(tmp / f"run{name}"),
                                        "--workers", "1", "--no-progress", "--database-url", url])
        assert r.exit_code == 0, r.output
    return {"tmp": tmp, "url": url, "meta": meta}


def test_report_on_ccp(ccp_runs):
    tmp, url, meta = ccp_runs["tmp"], ccp_runs["url"], ccp_runs["meta"]
    out = tmp / "card"
    r = runner.invoke(app, ["report", "--run", str(tmp / "runA"), "--out", str(out), "--attributes", "bottom_garment,carries_bag,headwear",
                            "--intersections", "bottom_garment*carries_bag", "--n-boot", "300", "--n-perm", "300", "--database-url", url])
    assert r.exit_code == 0, r.output
    res = json.loads((out / "fairness.json").read_text())
    table = pd.read_parquet(tmp / "runA" / "samples.parquet")
    by = {t["attribute"]: t for t in res["tables"]}
    assert list(by) == ["bottom_garment", "carries_bag", "headwear", "bottom_garment*carries_bag"]
    counts = meta["bottom_garment"].value_counts()
    for g in by["bottom_garment"]["groups"]:
        assert g["n"] == counts[g["value"]]
        assert g["insufficient"] == (counts[g["value"]] < 30)
        assert g["metrics"]["iou"]["value"] == pytest.approx(table.loc[table["attr_bottom_garment"] == g["value"], "iou"].mean())
    assert by["bottom_garment"]["provenance"] == "annotated"
    assert by["bottom_garment*carries_bag"]["provenance"] == "annotated x annotated"
    # trousers lose 12 px of mask: far below the others, flagged by the points rule and the test
    trousers = next(g for g in by["bottom_garment"]["groups"] if g["value"] == "trousers")
    others = [g for g in by["bottom_garment"]["groups"] if g["value"] != "trousers" and not g["insufficient"]]
    assert all(trousers["metrics"]["iou"]["value"] < g["metrics"]["iou"]["value"] - 0.05 for g in others)
    rules = {(f["rule"], f["group"]) for f in by["bottom_garment"]["flags"]}
    assert ("iou_points", "trousers") in rules and ("significant", "trousers") in rules
    md = (out / "model_card.md").read_text()
    for section in ("## Model details", "## Intended use", "## Factors", "## Metrics and thresholds", "## Evaluation data",
                    "## Quantitative analyses", "## Caveats"):
        assert section in md
    small = [v for v, c in counts.items() if c < 30]
    assert small and all(f"{v} (insufficient)" in md for v in small)
    assert "insufficient data" in md and "annotated" in md
    html = (out / "model_card.html").read_text()
    assert html.count("data:image/png;base64,") == 4
    assert "FLAG iou_points bottom_garment=trousers" in r.output


def test_compare_on_ccp(ccp_runs):
    tmp = ccp_runs["tmp"]
    r = runner.invoke(app, ["compare", str(tmp / "runA"), str(tmp / "runB"), "--attributes", "bottom_garment", "--n-boot", "300",
                            "--out", str(tmp / "cmp"), "--json", "--database-url", ccp_runs["url"]])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp / "cmp" / "fairness_compare.json").read_text())
    row = next(x for x in res["rows"] if x["attribute"] == "bottom_garment" and x["metric"] == "iou")
    a = pd.read_parquet(tmp / "runA" / "samples.parquet")
    b = pd.read_parquet(tmp / "runB" / "samples.parquet")
    big = [g for g, c in ccp_runs["meta"]["bottom_garment"].value_counts().items() if c >= 30]
    gap = lambda t: max(t[t["attr_bottom_garment"] == g]["iou"].mean() for g in big) - min(t[t["attr_bottom_garment"] == g]["iou"].mean() for g in big)  # noqa: E731
    assert row["gap_a"] == pytest.approx(gap(a)) and row["gap_b"] == pytest.approx(gap(b))
    assert row["verdict"] == "shrank" and row["change"]["hi"] < 0
    assert "shrank" in (tmp / "cmp" / "fairness_compare.md").read_text()


def test_audit_cli_on_ccp(ccp_runs):
    r = runner.invoke(app, ["audit", "--dataset", "ccp", "--intersections", "carries_bag*headwear", "--json", "--database-url", ccp_runs["url"]])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    meta = ccp_runs["meta"]
    want = meta.groupby(["carries_bag", "headwear"]).size()
    got = {row["value"]: row["n"] for row in res["attributes"]["carries_bag*headwear"]}
    assert got == {f"{a} & {b}": int(n) for (a, b), n in want.items()}
    assert res["provenance"]["bottom_garment"] == "annotated" and res["targets"] is None
    r = runner.invoke(app, ["audit", "--dataset", "nope", "--database-url", ccp_runs["url"]])
    assert r.exit_code == 2 and "no dataset named 'nope'" in r.output


def test_report_with_constructed_demographics_on_ecssd(tmp_path):
    """Demographic attributes from a metadata table built here, values known by hand: the first 36
    ECSSD photos are 'monk 1-4' (self-reported), the next 24 'monk 8-10'; age group is estimated."""
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    ids = ecssd_ids(60)
    tone = {k: ("monk 1-4" if i < 36 else "monk 8-10") for i, k in enumerate(ids)}
    age = {k: ("18-40" if i % 2 else "41+") for i, k in enumerate(ids)}
    meta = tmp_path / "meta.csv"
    meta.write_text("sample_id,skin_tone,age_group\n" + "".join(f"{k},{tone[k]},{age[k]}\n" for k in ids))
    engine = db.connect(url)
    from evalhub.datasets import import_dataset
    from evalhub.scoring import score

    import_dataset(engine, "ecssd60", ECSSD / "images", ECSSD / "masks", metadata=meta,
                   provenance={"skin_tone": "self-reported", "age_group": "estimated"}, limit=60)
    _eroded(tmp_path / "pred", ECSSD, ids, lambda k: 0 if tone[k] == "monk 1-4" else 10)
    r = runner.invoke(evalhub_app, ["release", "add", "rel", "--predictions", str(tmp_path / "pred"), "--database-url", url])
    assert r.exit_code == 0, r.output
    score(engine, "rel", "ecssd60", tmp_path / "run", workers=1, n_boot=100, progress=False)
    r = runner.invoke(app, ["report", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "card"), "--min-n", "20",
                            "--n-boot", "300", "--n-perm", "300", "--database-url", url])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "card" / "fairness.json").read_text())
    by = {t["attribute"]: t for t in res["tables"]}
    assert {"skin_tone", "age_group", "area_bucket", "touches_border"} <= set(by)
    assert by["skin_tone"]["provenance"] == "self-reported" and by["age_group"]["provenance"] == "estimated"
    assert by["area_bucket"]["provenance"] == "derived"
    assert [(g["value"], g["n"]) for g in by["skin_tone"]["groups"]] == [("monk 1-4", 36), ("monk 8-10", 24)]
    light = by["skin_tone"]["groups"][0]["metrics"]
    assert light["iou"]["value"] == pytest.approx(1.0) and light["boundary_f1"]["value"] == pytest.approx(1.0)
    assert light["acceptance_rate"]["value"] == pytest.approx(1.0)  # confidence 1 >= 0.5
    dark = by["skin_tone"]["groups"][1]["metrics"]
    # confidence 1 - 10/30 = 0.667: accepted; the ECE of the group is |0.667 - share acceptable|
    table = pd.read_parquet(tmp_path / "run" / "samples.parquet")
    share = table.loc[table["attr_skin_tone"] == "monk 8-10", "acceptable"].mean()
    assert dark["ece"]["value"] == pytest.approx(abs((1 - 10 / 30) - share), abs=1e-4)
    flags = {(f["attribute"], f["rule"], f["group"]) for f in res["flags"]}
    assert ("skin_tone", "iou_points", "monk 8-10") in flags and ("skin_tone", "significant", "monk 8-10") in flags
    assert not any(f[0] == "age_group" and f[1] in ("iou_points", "significant") for f in flags)
    assert any("age_group: values are estimated" in c for c in res["caveats"])
    md = (tmp_path / "card" / "model_card.md").read_text()
    assert "self-reported" in md and "estimated" in md and "never inferred from pixels" in md


def test_report_errors_name_the_problem(ccp_runs, tmp_path):
    db_opt = ["--database-url", ccp_runs["url"]]
    r = runner.invoke(app, ["report", "--run", str(ccp_runs["tmp"] / "runA"), "--out", str(tmp_path / "x"), "--attributes", "skin", *db_opt])
    assert r.exit_code == 2 and "'skin'" in r.output and "bottom_garment" in r.output
    r = runner.invoke(app, ["report", "--run", str(tmp_path), "--out", str(tmp_path / "x"), *db_opt])
    assert r.exit_code == 2 and f"{tmp_path} is not a run in the catalog" in r.output
    r = runner.invoke(app, ["report", "--run", str(ccp_runs["tmp"] / "runA"), "--out", str(tmp_path / "x"), "--ratio-low", "1.5", *db_opt])
    assert r.exit_code == 2 and "--ratio-low" in r.output


def test_compare_does_not_call_a_tiny_gap_over_a_zero_gap_growth(tmp_path):
    """A's gate accepts nothing anywhere (gap exactly 0, zero replicates); B accepts 2 of 60 in group a
    and 3 of 100 in group b (gap 1/300): B's max - min replicates are >= 0 by construction, so the
    percentile CI alone would say 'grew'; the shifted p-value does not."""
    from fairness.compare import compare_fairness_tables

    g = ["a"] * 60 + ["b"] * 100
    iou = np.full(160, 0.9)
    acc_b = np.zeros(160, bool)
    acc_b[[0, 1, 60, 61, 62]] = True
    a = run_table(g, iou, np.zeros(160, bool), conf=np.full(160, 0.1))
    b = run_table(g, iou, acc_b, conf=np.full(160, 0.1))
    res = compare_fairness_tables(a, b, attributes=["g"], n_boot=500)
    row = next(r for r in res["rows"] if r["metric"] == "acceptance_rate")
    assert row["gap_a"] == 0.0
    assert row["gap_b"] == pytest.approx(abs(2 / 60 - 3 / 100))
    assert row["change"]["lo"] > 0  # the percentile CI excludes zero ...
    assert row["verdict"] == "no significant change"  # ... but the change is not significant
