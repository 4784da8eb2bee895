"""raters service layer: accounts and sessions, access rules, campaign drawing and assignment,
idempotent submits, gold scoring, aggregation against krippendorff and crowd-kit, concurrency on
SQLite and PostgreSQL, export and the command line."""

from __future__ import annotations

import json
import threading
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select, text
from typer.testing import CliRunner

import db
from db.engine import session_scope
from db.models import Assignment, Campaign, CampaignItem, Rater, RaterSession, Rating
from raters import service as S
from raters.campaigns import CampaignError, _weights, allocate, assign, create_campaign
from raters.cli import app
from raters.results import (
    bradley_terry,
    bt_comparisons,
    campaign_results,
    export,
    krippendorff_alphas,
    ratings_frame,
    reliability_matrix,
    time_outliers,
)
from tests.helpers import add_raters, scored_catalog

runner = CliRunner()
SINGLE = {"overall": 4, "edge": 3, "completeness": "whole", "background_leak": "none", "artifacts": [], "would_use": True}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """SQLite catalog: 40 ECSSD photos, runs 'good' and 'eroded', raters r1-r4 and admin root."""
    tmp = tmp_path_factory.mktemp("raters")
    w = scored_catalog(f"sqlite:///{tmp / 'catalog.db'}", tmp)
    w["passwords"] = add_raters(w["engine"], ["r1", "r2", "r3", "r4"])
    w["tmp"] = tmp
    return w


def token(w, name):
    return S.login(w["engine"], name, w["passwords"][name])


# --- accounts, sessions, access -----------------------------------------------------------------

def test_accounts_and_sessions(sqlite_url):
    import db

    e = db.connect(sqlite_url)
    S.add_user(e, "ann", "correct horse", "rater")
    with session_scope(e) as s:
        h = s.scalar(select(Rater.password_hash).where(Rater.name == "ann"))
    assert h.startswith("$argon2id$") and "correct horse" not in h
    for bad, msg in ((("", "longenough", "rater"), "empty"), (("bo", "short", "rater"), "8 characters"),
                     (("bo", "longenough", "boss"), "role"), (("ann", "longenough", "rater"), "already exists")):
        with pytest.raises(ValueError, match=msg):
            S.add_user(e, *bad)
    with pytest.raises(S.AccessDenied, match="wrong name or password"):
        S.login(e, "ann", "wrong horse")
    with pytest.raises(S.AccessDenied, match="wrong name or password"):
        S.login(e, "nobody", "correct horse")
    t = S.login(e, "ann", "correct horse")
    assert S.authenticate(e, t).name == "ann"
    with session_scope(e) as s:  # only the token's SHA-256 is stored
        assert s.scalar(select(func.count()).select_from(RaterSession).where(RaterSession.token_hash == t)) == 0
    expired = S.login(e, "ann", "correct horse", hours=-1)
    with pytest.raises(S.AccessDenied, match="expired"):
        S.authenticate(e, expired)
    S.logout(e, t)
    with pytest.raises(S.AccessDenied, match="session ended"):
        S.authenticate(e, t)
    t2 = S.login(e, "ann", "correct horse")
    S.disable_user(e, "ann")
    with pytest.raises(S.AccessDenied):
        S.authenticate(e, t2)
    with pytest.raises(S.AccessDenied, match="disabled"):
        S.login(e, "ann", "correct horse")
    with pytest.raises(S.NotFound, match="'zed'"):
        S.disable_user(e, "zed")


def test_access_rules(world):
    e = world["engine"]
    create_campaign(e, "acc", [world["runs"]["good"]], 8, 2, raters=["r1", "r2"], seed=3)
    t1, t2, admin = token(world, "r1"), token(world, "r2"), token(world, "root")
    for call in (lambda t: S.next_item(e, t), lambda t: S.my_ratings(e, t), lambda t: S.submit(e, t, 1, SINGLE),
                 lambda t: S.list_campaigns(e, t), lambda t: S.progress(e, t, "acc"), lambda t: S.results(e, t, "acc"),
                 lambda t: S.get_rating(e, t, 1), lambda t: S.rater_answers(e, t, "r1")):
        for anonymous in (None, "", "forged-token"):
            with pytest.raises(S.AccessDenied):
                call(anonymous)
    for admin_only in (lambda: S.list_campaigns(e, t1), lambda: S.progress(e, t1, "acc"), lambda: S.results(e, t1, "acc"),
                       lambda: S.rater_answers(e, t1, "r2")):
        with pytest.raises(S.AccessDenied, match="not an admin"):
            admin_only()
    item1, item2 = S.next_item(e, t1), S.next_item(e, t2)
    with pytest.raises(S.AccessDenied, match="another rater"):
        S.submit(e, t1, item2["assignment_id"], SINGLE)
    evil = "'); DROP TABLE ratings; -- \" OR 1=1 --"
    r = S.submit(e, t1, item1["assignment_id"], {**SINGLE, "comment": evil}, seconds=4.0)
    with pytest.raises(S.AccessDenied, match="another rater"):
        S.get_rating(e, t2, r["rating_id"])
    assert S.get_rating(e, t1, r["rating_id"])["comment"] == evil
    assert S.get_rating(e, admin, r["rating_id"])["comment"] == evil
    assert [x["rating_id"] for x in S.rater_answers(e, admin, "r1")] == [r["rating_id"]]
    assert S.my_ratings(e, t2) == []  # r2 sees only their own answers
    with session_scope(e) as s:
        assert s.execute(text("select comment from ratings where id = :i"), {"i": r["rating_id"]}).scalar() == evil
    with pytest.raises(S.NotFound):
        S.submit(e, t1, 10**9, SINGLE)


def test_answers_are_validated_with_the_field_named(world):
    e = world["engine"]
    create_campaign(e, "val", [world["runs"]["good"]], 4, 1, raters=["r3"], seed=5)
    t = token(world, "r3")
    item = S.next_item(e, t)
    for bad, field in (({**SINGLE, "overall": 6}, "overall"), ({**SINGLE, "completeness": "most"}, "completeness"),
                       ({k: v for k, v in SINGLE.items() if k != "would_use"}, "would_use"), ({**SINGLE, "artifacts": ["glow"]}, "artifacts"),
                       ({**SINGLE, "comment": "x" * 2001}, "comment")):
        with pytest.raises(ValueError, match=field):
            S.submit(e, t, item["assignment_id"], bad)
    with pytest.raises(ValueError, match="seconds"):
        S.submit(e, t, item["assignment_id"], SINGLE, seconds=-1)
    assert S.next_item(e, t)["assignment_id"] == item["assignment_id"]  # nothing stored, same item


# --- campaigns ----------------------------------------------------------------------------------

def test_weights_and_allocation_by_hand():
    t = pd.DataFrame({"confidence": [0.5, 0.6, 0.9], "iou": [0.9, 0.8, 0.7], "boundary_f1": [0.7, 0.8, 0.9]})
    # percentile ranks: iou 1, 2/3, 1/3; boundary F1 1/3, 2/3, 1 -> d = 2/3, 0, 2/3
    want = 1 + 2 * np.exp(-np.abs(np.array([0.0, 0.1, 0.4])) / 0.1) + 2 * np.array([2 / 3, 0, 2 / 3])
    assert _weights(t, [0.5], ab=False) == pytest.approx(want)
    assert allocate({"a": 2, "b": 10, "c": 10}, 12) == {"a": 2, "b": 5, "c": 5}
    assert allocate({"a": 5, "b": 5}, 7) in ({"a": 4, "b": 3}, {"a": 3, "b": 4})
    with pytest.raises(CampaignError, match="exceeds"):
        allocate({"a": 1}, 2)


def test_assign_rules():
    triples = assign(list(range(100, 112)), [900, 901], [1, 2, 3, 4], k=2, seed=0)
    by_item: dict[int, list[int]] = {}
    for i, r, _ in triples:
        by_item.setdefault(i, []).append(r)
    assert all(len(v) == 2 and len(set(v)) == 2 for i, v in by_item.items() if i < 900)  # k distinct raters
    assert sorted(by_item[900]) == [1, 2, 3, 4] and sorted(by_item[901]) == [1, 2, 3, 4]  # gold for everyone
    load = Counter(r for i, r, _ in triples if i < 900)
    assert set(load.values()) == {6}  # 12 items x 2 / 4 raters, balanced
    for r in (1, 2, 3, 4):
        pos = sorted(p for _, rr, p in triples if rr == r)
        assert pos == list(range(len(pos)))
    orders = [[i for i, rr, p in sorted(triples, key=lambda x: x[2]) if rr == r] for r in (1, 2)]
    assert orders[0][:3] != orders[1][:3] or orders[0] != orders[1]  # randomised per rater
    with pytest.raises(CampaignError, match="at least 3 active raters"):
        assign([1], [], [1, 2], k=3, seed=0)


def test_create_campaign_single_and_ab(world):
    e = world["engine"]
    res = create_campaign(e, "single-1", [world["runs"]["good"]], 12, 2, n_gold=2, raters=["r1", "r2", "r3", "r4"], seed=1)
    assert (res["items"], res["gold"], res["kind"]) == (12, 2, "single")
    assert res["assignments"] == 12 * 2 + 2 * 4
    assert res["gold_rate"] == pytest.approx(2 / (12 * 2 / 4 + 2))
    table = pd.read_parquet(world["runs"]["good"] / "samples.parquet").set_index("sample_key")
    with session_scope(e) as s:
        from db.models import Campaign, Sample

        cid = s.scalar(select(Campaign.id).where(Campaign.name == "single-1"))
        items = s.execute(select(CampaignItem, Sample.sample_key).join(Sample).where(CampaignItem.campaign_id == cid)).all()
        golds = [(it.gold_answer, k) for it, k in items if it.is_gold]
        strata = Counter(it.stratum for it, _ in items if not it.is_gold)
        per_item = Counter(a.item_id for a in s.scalars(select(Assignment).join(CampaignItem).where(CampaignItem.campaign_id == cid)))
    # one broken (IoU 0 -> would_use no) and one clean (IoU 1 -> yes) gold item, with reference answers
    assert sorted((g["would_use"], table.loc[k, "iou"] < 0.5) for g, k in golds) == [(False, True), (True, False)]
    # stratified over area_bucket: equal shares, capped by what each stratum has (gold items excluded)
    gold_keys = {k for _, k in golds}
    avail = table.drop(index=list(gold_keys))["attr_area_bucket"].value_counts().to_dict()
    assert dict(strata) == {k: v for k, v in allocate(avail, 12).items() if v}
    assert sorted(set(per_item.values())) == [2, 4]
    ab = create_campaign(e, "ab-1", [world["runs"]["good"], world["runs"]["eroded"]], 10, 2, n_gold=2, raters=["r1", "r2"], seed=2)
    assert ab["kind"] == "ab"
    with session_scope(e) as s:
        from db.models import Campaign, Sample

        c = s.scalar(select(Campaign).where(Campaign.name == "ab-1"))
        lefts = Counter(it.left_run_id for it in s.scalars(select(CampaignItem).where(CampaignItem.campaign_id == c.id)))
        gold_ab = s.execute(select(CampaignItem.gold_answer, Sample.sample_key).join(Sample)
                            .where(CampaignItem.campaign_id == c.id, CampaignItem.is_gold)).all()
    assert set(lefts) == {c.run_a_id, c.run_b_id}  # sides randomised
    # gold pairs differ by >= 0.3 IoU; the reference answer is the better release
    eroded = pd.read_parquet(world["runs"]["eroded"] / "samples.parquet").set_index("sample_key")["iou"]
    assert len(gold_ab) == 2
    for ans, k in gold_ab:
        gap = table.loc[k, "iou"] - eroded[k]
        assert abs(gap) >= 0.3 and ans == {"winner_run_id": c.run_a_id if gap > 0 else c.run_b_id}
    for bad, msg in ((dict(runs=[world["tmp"]]), "not in the catalog"), (dict(n_items=500), "exceeds"),
                     (dict(raters_per_item=9), "at least 9"), (dict(n_gold=40), "gold needs"), (dict(stratify=["shoe"]), "shoe"),
                     (dict(name="single-1"), "already exists"), (dict(raters=["ghost"]), "ghost")):
        kw = dict(name="x", runs=[world["runs"]["good"]], n_items=5, raters_per_item=2, raters=["r1", "r2", "r3"]) | bad
        with pytest.raises(CampaignError, match=msg):
            create_campaign(e, kw.pop("name"), kw.pop("runs"), kw.pop("n_items"), **kw)


# --- submits, gold, aggregation -----------------------------------------------------------------

def test_queue_is_stable_and_submit_is_idempotent(world):
    e = world["engine"]
    create_campaign(e, "idem", [world["runs"]["eroded"]], 6, 1, raters=["r4"], seed=4)
    t = token(world, "r4")
    first = S.next_item(e, t)
    assert S.next_item(e, t)["assignment_id"] == first["assignment_id"]  # a rerun shows the same item
    a = S.submit(e, t, first["assignment_id"], SINGLE, seconds=3)
    b = S.submit(e, t, first["assignment_id"], {**SINGLE, "overall": 1}, seconds=3)
    assert a["created"] and not b["created"] and a["rating_id"] == b["rating_id"]
    assert S.get_rating(e, t, a["rating_id"])["overall"] == 4  # the first answer stands
    # two submits at once: one row
    nxt = S.next_item(e, t)
    barrier = threading.Barrier(2)
    results = []

    def go():
        barrier.wait()
        results.append(S.submit(e, t, nxt["assignment_id"], SINGLE, seconds=2))

    threads = [threading.Thread(target=go) for _ in range(2)]
    [th.start() for th in threads]
    [th.join() for th in threads]
    assert sorted(r["created"] for r in results) == [False, True] and len({r["rating_id"] for r in results}) == 1
    with session_scope(e) as s:
        assert s.scalar(select(func.count()).select_from(Rating).where(Rating.assignment_id == nxt["assignment_id"])) == 1
    assert S.next_item(e, t)["assignment_id"] not in (first["assignment_id"], nxt["assignment_id"])


def _answer_all(e, tok, answer_fn):
    while (item := S.next_item(e, tok)) is not None:
        S.submit(e, tok, item["assignment_id"], answer_fn(item), seconds=answer_fn.__dict__.get("seconds", 5.0))


def test_gold_accuracy_and_results_against_the_libraries(tmp_path):
    """Three raters answer by rule on a fresh catalog; gold accuracy, Krippendorff's alpha,
    Dawid-Skene and Spearman are checked against hand counts and the libraries on the same data."""
    import krippendorff
    from crowdkit.aggregation import DawidSkene
    from scipy.stats import spearmanr

    w = scored_catalog(f"sqlite:///{tmp_path / 'c.db'}", tmp_path)
    e = w["engine"]
    pw = add_raters(e, ["a", "b", "c"])
    create_campaign(e, "gold", [w["runs"]["good"]], 10, 3, n_gold=2, seed=7)
    table = pd.read_parquet(w["runs"]["good"] / "samples.parquet").set_index("sample_key")

    def by_iou(bias):
        def answer(item):
            iou = table.loc[item["sample_key"], "iou"]
            q = int(np.clip(round(1 + 4 * iou) + bias, 1, 5))
            return {**SINGLE, "overall": q, "edge": q, "would_use": bool(q >= 3 if bias >= 0 else q >= 5),
                    "completeness": "whole" if iou > 0.9 else "partly"}
        return answer

    for name, bias in (("a", 0), ("b", 0), ("c", -2)):
        _answer_all(e, S.login(e, name, pw[name]), by_iou(bias))
    res = campaign_results(e, "gold", n_boot=200)
    _, r = ratings_frame(e, "gold")
    # gold: one broken (IoU 0 -> a, b say no, correct) and one clean (IoU 1 -> would_use yes; c says q = 3 -> no)
    acc = {g["rater"]: g["accuracy"] for g in res["gold_accuracy"]}
    assert acc == {"a": 1.0, "b": 1.0, "c": 0.5}
    # Krippendorff's alpha: the same matrix handed to the library directly
    m = r.pivot_table(index="rater", columns="item_id", values="overall", aggfunc="first").to_numpy(float)
    assert res["krippendorff_alpha"]["overall"] == pytest.approx(krippendorff.alpha(reliability_data=m, level_of_measurement="interval"))
    use = r.assign(u=r["would_use"].astype(str).map({"False": 0.0, "True": 1.0}))
    mu = use.pivot_table(index="rater", columns="item_id", values="u", aggfunc="first").to_numpy(float)
    assert res["krippendorff_alpha"]["would_use"] == pytest.approx(krippendorff.alpha(reliability_data=mu, level_of_measurement="nominal"))
    # Dawid-Skene labels: crowd-kit on the same (task, worker, label) triples, fitted to convergence
    reg = r[~r["is_gold"]]
    ds = DawidSkene(n_iter=300, tol=-np.inf).fit_predict(pd.DataFrame({"task": reg["item_id"], "worker": reg["rater"], "label": reg["completeness"].astype(str)}))
    assert res["dawid_skene"]["completeness"]["labels"] == {str(k): v for k, v in ds.items()}
    # per-release mean: the mean over items of each item's mean rating
    item_means = reg.groupby("item_id")["overall"].mean()
    assert res["per_release"]["good"]["overall"]["mean"] == pytest.approx(item_means.mean())
    lo, hi = res["per_release"]["good"]["overall"]["lo"], res["per_release"]["good"]["overall"]["hi"]
    assert lo <= item_means.mean() <= hi
    # Spearman of mean rating with IoU: scipy on the same pairs
    keys = reg.groupby("item_id")["sample_key"].first()
    rho = spearmanr(item_means.to_numpy(), table.loc[keys.to_numpy(), "iou"].to_numpy()).statistic
    assert res["human_vs_metric"]["spearman_overall_iou"] == pytest.approx(rho)
    assert rho > 0.5  # ratings follow IoU by construction
    assert res["human_vs_metric"]["gate_vs_would_use"]["n"] == len(item_means)


def test_reliability_matrix_and_alpha_by_hand():
    """Krippendorff (2011, "Computing Krippendorff's alpha-reliability") example with 2 coders, nominal
    data: alpha = 1 - (n - 1) D_o / D_e, here by hand: 10 units, all pairable, 2 disagreements."""
    import krippendorff

    a = [1, 2, 3, 3, 2, 1, 4, 1, 2, 5]
    b = [1, 2, 3, 3, 2, 2, 4, 1, 2, 4]
    rows = [{"rater": r, "item_id": i, "q": v} for r, vals in (("x", a), ("y", b)) for i, v in enumerate(vals)]
    m = reliability_matrix(pd.DataFrame(rows), "q")
    assert m.tolist() == [a, b]
    # coincidences: n = 20 values; D_o = 2 disagreeing pairs x 2 / 20; D_e = (n^2 - sum n_c^2) / (n (n - 1))
    counts = Counter(a + b)
    d_o = 4 / 20
    d_e = (20**2 - sum(c * c for c in counts.values())) / (20 * 19)
    assert krippendorff.alpha(reliability_data=m, level_of_measurement="nominal") == pytest.approx(1 - d_o / d_e)
    df = pd.DataFrame(rows).rename(columns={"q": "overall"}).assign(edge=np.nan, completeness=None, background_leak=None,
                                                                   would_use=None, artifacts=None)
    assert krippendorff_alphas(df, "single")["overall"] == pytest.approx(krippendorff.alpha(reliability_data=m, level_of_measurement="interval"))


def test_time_outliers_by_hand():
    r = pd.DataFrame({"rating_id": range(7), "rater": list("aaaabbb"), "sample_key": list("abcdefg"), "seconds": [10, 11, 9, 10, 12, 10, 95.0]})
    res = time_outliers(r)
    # median 10, MAD median(|0,1,1,0,2,0,85|) = 1 -> z(95) = 0.6745 * 85 = 57.3, z(12) = 1.35
    assert res["median"] == 10 and res["mad"] == 1
    assert [(o["rating_id"], round(o["z"], 3)) for o in res["outliers"]] == [(6, round(0.6745 * 85, 3))]


def test_bradley_terry_against_crowdkit_and_win_rates(world):
    from crowdkit.aggregation import BradleyTerry

    e = world["engine"]
    pw = add_raters(e, ["bt1", "bt2"], admin=None)  # raters with no other queue
    create_campaign(e, "ab-bt", [world["runs"]["good"], world["runs"]["eroded"]], 12, 2, raters=["bt1", "bt2"], seed=9)
    # both raters prefer the release with the higher IoU, and call a tie when the IoUs are within 0.05
    a = pd.read_parquet(world["runs"]["good"] / "samples.parquet").set_index("sample_key")["iou"]
    b = pd.read_parquet(world["runs"]["eroded"] / "samples.parquet").set_index("sample_key")["iou"]
    with session_scope(e) as s:
        from db.models import Campaign

        c = s.scalar(select(Campaign).where(Campaign.name == "ab-bt"))
        run_a = c.run_a_id

    def choose(item):
        with session_scope(e) as s:
            it = s.scalar(select(CampaignItem).join(Assignment).where(Assignment.id == item["assignment_id"]))
            left_is_a = it.left_run_id == run_a
        ia, ib = a[item["sample_key"]], b[item["sample_key"]]
        if abs(ia - ib) < 0.05:
            return {"choice": "tie"}
        a_wins = ia > ib
        return {"choice": "A" if a_wins == left_is_a else "B", "reasons": ["edges"]}

    for n in ("bt1", "bt2"):
        _answer_all(e, S.login(e, n, pw[n]), choose)
    res = campaign_results(e, "ab-bt", n_boot=100)
    _, r = ratings_frame(e, "ab-bt")
    want = {"good": 0, "eroded": 0, "tie": 0}
    for k in r["sample_key"]:
        want["tie" if abs(a[k] - b[k]) < 0.05 else ("good" if a[k] > b[k] else "eroded")] += 1
    assert res["votes"] == {"n": len(r), "ties": want["tie"], "wins_good": want["good"], "wins_eroded": want["eroded"]}
    assert res["bradley_terry"]["win_rate"]["good"] == pytest.approx((want["good"] + want["tie"] / 2) / len(r))
    comp = bt_comparisons(r, ("good", "eroded"))
    scores = BradleyTerry(n_iter=100).fit(comp[["left", "right", "label"]]).scores_
    for k in ("good", "eroded"):
        v = res["bradley_terry"]["scores"][k]
        assert v["value"] == pytest.approx(scores[k])
        assert v["lo"] <= v["value"] <= v["hi"]
        # with two releases the Bradley-Terry MLE is the win share: ties count half, as in the win rate
        assert v["value"] == pytest.approx(res["bradley_terry"]["win_rate"][k], abs=1e-4)
    assert bradley_terry(comp.iloc[:0])["scores"] == {}


def test_bradley_terry_counts_a_tie_as_half_a_win_by_hand():
    """Regression (issue 15): 2 wins for A and 2 ties: the win rate says 3/4; ties as a full win for
    each side gave Bradley-Terry 2/3."""
    votes = pd.DataFrame({"left": ["A", "B", "A", "B"], "winner": ["A", "A", "tie", "tie"], "item_id": [1, 2, 3, 4]})
    comp = bt_comparisons(votes, ("A", "B"))
    res = bradley_terry(comp, n_boot=20)
    assert res["scores"]["A"]["value"] == pytest.approx(0.75, abs=1e-4)
    assert res["scores"]["B"]["value"] == pytest.approx(0.25, abs=1e-4)


def _noisy_votes(seed: int, n_items: int = 40, n_raters: int = 6, k: int = 3) -> pd.DataFrame:
    """Binary votes of raters of accuracy U(0.55, 0.95) on items true with p 0.6, k raters per item."""
    rng = np.random.default_rng(seed)
    truth = rng.random(n_items) < 0.6
    acc = rng.uniform(0.55, 0.95, n_raters)
    rows = []
    for i in range(n_items):
        for r in rng.choice(n_raters, k, replace=False):
            rows.append({"item_id": i, "rater": f"r{r}", "would_use": bool(truth[i] if rng.random() < acc[r] else not truth[i])})
    return pd.DataFrame(rows)


def test_dawid_skene_is_crowdkits_em_fitted_to_convergence():
    """Regression (issue 15): crowd-kit's default stopping rule ends the EM early on these votes and
    one label differs from the converged fit. liftlab's EM takes crowd-kit's steps (posteriors equal
    to 1e-12 after 1, 5 and 30 iterations) and runs them to convergence."""
    from crowdkit.aggregation import DawidSkene

    from raters.results import dawid_skene, dawid_skene_em

    votes = _noisy_votes(0)
    data = pd.DataFrame({"task": votes["item_id"], "worker": votes["rater"], "label": votes["would_use"].astype(str)})
    t, _ = pd.factorize(votes["item_id"], sort=True)
    w, _ = pd.factorize(votes["rater"], sort=True)
    lab, names = pd.factorize(votes["would_use"].astype(str), sort=True)
    for n in (1, 5, 30):
        ck = DawidSkene(n_iter=n, tol=-np.inf).fit(data).probas_[list(names)].to_numpy()
        ours, ran = dawid_skene_em(t, w, lab, n_iter=n, tol=-1.0)
        assert ran == n and np.abs(ck - ours).max() < 1e-12
    _, ran = dawid_skene_em(t, w, lab)
    assert 100 < ran < 10_000  # converged, after more iterations than crowd-kit's default budget
    converged = DawidSkene(n_iter=300, tol=-np.inf).fit_predict(data)
    early = DawidSkene(n_iter=100).fit_predict(data)
    assert (early.sort_index() != converged.sort_index()).sum() >= 1  # the failure this guards against
    ours = dawid_skene(votes, "would_use")
    assert ours.sort_index().tolist() == converged.sort_index().tolist()
    assert list(ours.sort_index().index) == sorted(converged.index)


def test_export_and_cli(world, tmp_path):
    e = world["engine"]
    url = str(e.url)
    r = runner.invoke(app, ["user", "add", "cli-user", "--role", "rater", "--password-stdin", "--database-url", url], input="a-long-password\n")
    assert r.exit_code == 0, r.output
    assert S.authenticate(e, S.login(e, "cli-user", "a-long-password")).role == "rater"
    r = runner.invoke(app, ["user", "add", "x", "--password-stdin", "--database-url", url], input="short\n")
    assert r.exit_code == 2 and "8 characters" in r.output
    r = runner.invoke(app, ["campaign", "create", "cli-c", "--run", str(world["runs"]["good"]), "--items", "4", "-k", "1",
                            "--raters", "cli-user", "--database-url", url])
    assert r.exit_code == 0 and "4 items + 0 gold, 4 assignments" in r.output, r.output
    t = S.login(e, "cli-user", "a-long-password")
    _answer_all(e, t, lambda item: {**SINGLE, "comment": "fine, \"quoted\""})
    r = runner.invoke(app, ["results", "cli-c", "--out", str(tmp_path / "exp"), "--n-boot", "100", "--database-url", url])
    assert r.exit_code == 0, r.output
    assert "4/4 assignments done" in r.output
    csv = pd.read_csv(tmp_path / "exp" / "ratings.csv")
    pq = pd.read_parquet(tmp_path / "exp" / "ratings.parquet")
    assert len(csv) == len(pq) == 4 and set(csv["comment"]) == {'fine, "quoted"'} and set(pq["overall"]) == {4}
    assert json.loads((tmp_path / "exp" / "results.json").read_text())["progress"]["done"] == 4
    assert runner.invoke(app, ["user", "disable", "cli-user", "--database-url", url]).exit_code == 0
    with pytest.raises(S.AccessDenied):
        S.authenticate(e, t)
    r = runner.invoke(app, ["results", "nope", "--database-url", url])
    assert r.exit_code == 2 and "no campaign named 'nope'" in r.output
    assert export(e, "cli-c", tmp_path / "again")["ratings_csv"].exists()


# --- concurrency --------------------------------------------------------------------------------

def _hammer(url: str, tmp, n_raters: int = 50, per_rater: int = 20) -> None:
    """50 raters x 20 submits in parallel threads, every submit sent twice (a double click) and a
    third time by a second thread of the same rater: no rating lost, none duplicated."""
    w = scored_catalog(url, tmp, n=100)
    e = w["engine"]
    names = [f"u{i:02d}" for i in range(n_raters)]
    pw = add_raters(e, names, admin=None)
    create_campaign(e, "load", [w["runs"]["eroded"]], 100, n_raters * per_rater // 100, seed=1)
    errors: list[BaseException] = []

    def rater(name):
        try:
            t = S.login(e, name, pw[name])
            while (item := S.next_item(e, t)) is not None:
                S.submit(e, t, item["assignment_id"], SINGLE, seconds=1.0)
                S.submit(e, t, item["assignment_id"], SINGLE, seconds=1.0)
        except BaseException as exc:  # noqa: BLE001 - collected and re-raised by the test
            errors.append(exc)

    threads = [threading.Thread(target=rater, args=(n,)) for n in names] + [threading.Thread(target=rater, args=(n,)) for n in names[:10]]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors, errors[:3]
    with session_scope(e) as s:
        n_ratings = s.scalar(select(func.count()).select_from(Rating))
        n_distinct = s.scalar(select(func.count(func.distinct(Rating.assignment_id))))
        n_assign = s.scalar(select(func.count()).select_from(Assignment))
        pending = s.scalar(select(func.count()).select_from(Assignment).where(Assignment.done.is_(False)))
        per = Counter(s.scalars(select(Rating.rater_id)))
    assert n_assign == n_raters * per_rater
    assert n_ratings == n_distinct == n_assign and pending == 0
    assert set(per.values()) == {per_rater}


@pytest.mark.slow
def test_concurrent_submits_sqlite(tmp_path):
    _hammer(f"sqlite:///{tmp_path / 'load.db'}", tmp_path)


@pytest.mark.slow
@pytest.mark.postgres
def test_concurrent_submits_postgres(pg_url, tmp_path):
    _hammer(pg_url, tmp_path)


@pytest.mark.postgres
def test_service_on_postgres(pg_url, tmp_path):
    w = scored_catalog(pg_url, tmp_path, n=20)
    e = w["engine"]
    pw = add_raters(e, ["p1", "p2"])
    create_campaign(e, "pg", [w["runs"]["good"]], 6, 2, n_gold=2, seed=0)
    t = S.login(e, "p1", pw["p1"])
    item = S.next_item(e, t)
    evil = "x'; DELETE FROM ratings; --"
    first = S.submit(e, t, item["assignment_id"], {**SINGLE, "comment": evil}, seconds=2)
    again = S.submit(e, t, item["assignment_id"], SINGLE, seconds=2)
    assert first["created"] and not again["created"] and first["rating_id"] == again["rating_id"]
    assert S.my_ratings(e, t)[0]["comment"] == evil
    with pytest.raises(S.AccessDenied):
        S.results(e, t, "pg")
    admin = S.login(e, "root", pw["root"])
    assert S.progress(e, admin, "pg")["done"] == 1
    exp = S.login(e, "p2", pw["p2"], hours=-0.001)
    with pytest.raises(S.AccessDenied, match="expired"):
        S.next_item(e, exp)


def test_results_before_any_rating(world):
    e = world["engine"]
    create_campaign(e, "empty-single", [world["runs"]["good"]], 3, 1, raters=["r1"], seed=11)
    create_campaign(e, "empty-ab", [world["runs"]["good"], world["runs"]["eroded"]], 3, 1, raters=["r1"], seed=11)
    one = campaign_results(e, "empty-single", n_boot=50)
    assert one["n_ratings"] == 0 and one["per_release"]["good"]["overall"]["n"] == 0
    assert one["human_vs_metric"]["mismatches"]["metric_high_rating_low"] == []
    two = campaign_results(e, "empty-ab", n_boot=50)
    assert two["bradley_terry"]["scores"] == {} and two["votes"]["n"] == 0


def test_submit_and_next_returns_the_following_item(world):
    e = world["engine"]
    pw = add_raters(e, ["sn"], admin=None)
    create_campaign(e, "sn", [world["runs"]["eroded"]], 3, 1, raters=["sn"], seed=12)
    t = S.login(e, "sn", pw["sn"])
    first = S.next_item(e, t)
    res = S.submit_and_next(e, t, first["assignment_id"], SINGLE, seconds=1)
    assert res["created"] and res["next"]["done"] == 1 and res["next"]["assignment_id"] != first["assignment_id"]
    assert res["next"] == S.next_item(e, t)
    again = S.submit_and_next(e, t, first["assignment_id"], SINGLE, seconds=1)
    assert not again["created"] and again["rating_id"] == res["rating_id"] and again["next"] == res["next"]


# --- security: brute force, timing, text fields, CSV injection (issue 14) -----------------------

def test_failed_logins_are_throttled_with_backoff_and_logged(sqlite_url, caplog):
    engine = db.connect(sqlite_url)
    S.add_user(engine, "victim", "right-password", "rater")
    S.THROTTLE.succeeded(["name:victim", "client:10.0.0.9"])
    t = [1000.0]
    with caplog.at_level("WARNING", logger="liftlab.raters.auth"):
        for _ in range(S.THROTTLE_FREE_FAILURES):
            with pytest.raises(S.AccessDenied, match="wrong name or password"):
                S.login(engine, "victim", "guess", client="10.0.0.9", clock=lambda: t[0])
    assert sum("failed login: name='victim' client='10.0.0.9'" in r.getMessage() for r in caplog.records) == S.THROTTLE_FREE_FAILURES
    # from now on even the right password waits: 1 s after the 5th failure, 2 s after the 6th, ...
    with pytest.raises(S.AccessDenied, match=r"too many failed logins; try again in 1 s"):
        S.login(engine, "victim", "right-password", client="10.0.0.9", clock=lambda: t[0])
    # the same client cannot move on to another name, and another client cannot use this name
    with pytest.raises(S.AccessDenied, match="too many failed logins"):
        S.login(engine, "someone-else", "x", client="10.0.0.9", clock=lambda: t[0])
    with pytest.raises(S.AccessDenied, match="too many failed logins"):
        S.login(engine, "victim", "right-password", client="10.0.0.7", clock=lambda: t[0])
    t[0] += 1.5
    with pytest.raises(S.AccessDenied, match="wrong name or password"):
        S.login(engine, "victim", "guess", client="10.0.0.9", clock=lambda: t[0])
    with pytest.raises(S.AccessDenied, match=r"too many failed logins; try again in 2 s"):
        S.login(engine, "victim", "right-password", client="10.0.0.9", clock=lambda: t[0])
    t[0] += 2.5
    assert S.login(engine, "victim", "right-password", client="10.0.0.9", clock=lambda: t[0])  # after the wait: in
    assert S.THROTTLE.wait(["name:victim", "client:10.0.0.9"], t[0]) == 0.0  # and the count is cleared


def test_unknown_and_known_names_take_the_same_time(sqlite_url):
    """Tolerance: the medians of 5 logins differ by less than a factor 2 (an argon2 verification is
    ~50-500 ms; an unknown name without the dummy hash took ~1 ms)."""
    import time as _time

    engine = db.connect(sqlite_url)
    S.add_user(engine, "known", "the-password", "rater")

    def median_time(name):
        times = []
        for _ in range(5):
            S.THROTTLE.succeeded([f"name:{name}"])
            t0 = _time.perf_counter()
            with pytest.raises(S.AccessDenied):
                S.login(engine, name, "wrong-password")
            times.append(_time.perf_counter() - t0)
        return sorted(times)[2]

    known, unknown = median_time("known"), median_time("nobody-by-this-name")
    assert 0.5 < unknown / known < 2.0, (known, unknown)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_nul_and_control_characters_never_reach_the_database(backend, request, tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    engine = db.connect(url)
    with pytest.raises(S.AccessDenied, match="wrong name or password"):  # not a database error
        S.login(engine, "adm\x00in", "whatever-password")
    with pytest.raises(ValueError, match=r"user name: control characters are not allowed \('\\x00'\)"):
        S.add_user(engine, "bad\x00name", "long-enough", "rater")
    with pytest.raises(ValueError, match="comment: Value error, comment: control characters"):
        S.validate_answer("single", {**SINGLE, "comment": "fine\x00not"})
    assert S.validate_answer("single", {**SINGLE, "comment": "two\nlines\tok"}).comment == "two\nlines\tok"
    engine.dispose()


def test_csv_exports_neutralise_spreadsheet_formulas(tmp_path):
    from raters.results import neutralize_formulas

    frame = pd.DataFrame({"comment": ["=HYPERLINK(\"http://x\",\"y\")", "+1", "-2", "@SUM(A1)", "plain", None],
                          "overall": [1, 2, 3, 4, 5, 1]})
    out = neutralize_formulas(frame)
    assert out["comment"].tolist()[:5] == ["'=HYPERLINK(\"http://x\",\"y\")", "'+1", "'-2", "'@SUM(A1)", "plain"]
    assert out["overall"].tolist() == [1, 2, 3, 4, 5, 1] and frame["comment"][0].startswith("=")


def test_sessions_end_when_idle_and_at_the_cap(sqlite_url, monkeypatch):
    from datetime import datetime, timedelta, timezone

    import db

    e = db.connect(sqlite_url)
    S.add_user(e, "ivy", "correct horse", "rater")
    clock = [datetime(2026, 1, 1, 9, 0, tzinfo=timezone.utc)]
    monkeypatch.setattr(S, "_now", lambda: clock[0])
    t = S.login(e, "ivy", "correct horse")
    for minutes in (29, 29, 29):  # every request moves the idle deadline on
        clock[0] += timedelta(minutes=minutes)
        assert S.authenticate(e, t).name == "ivy"
    clock[0] += timedelta(minutes=S.IDLE_MINUTES + 1)
    with pytest.raises(S.AccessDenied, match="expired"):
        S.authenticate(e, t)
    # an active session still ends SESSION_HOURS after the login
    t = S.login(e, "ivy", "correct horse")
    start = clock[0]
    while clock[0] + timedelta(minutes=20) < start + timedelta(hours=S.SESSION_HOURS):
        clock[0] += timedelta(minutes=20)
        S.authenticate(e, t)
    clock[0] = start + timedelta(hours=S.SESSION_HOURS, seconds=1)
    with pytest.raises(S.AccessDenied, match="expired"):
        S.authenticate(e, t)
    e.dispose()


def test_results_are_computed_once_per_change(world, monkeypatch):
    import raters.results as RR

    e = world["engine"]
    pw = add_raters(e, ["c1"], admin="boss-c")
    create_campaign(e, "cached", [world["runs"]["eroded"]], 3, 1, raters=["c1"], seed=13)
    boss, t = S.login(e, "boss-c", pw["boss-c"]), S.login(e, "c1", pw["c1"])
    calls = []
    real = RR.campaign_results
    monkeypatch.setattr(RR, "campaign_results", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = S.results(e, boss, "cached", n_boot=100)
    again = S.results(e, boss, "cached", n_boot=100)
    assert len(calls) == 1 and again == first and again is not first  # a copy: callers cannot alter the cache
    item = S.next_item(e, t)
    S.submit(e, t, item["assignment_id"], SINGLE, seconds=2)
    after = S.results(e, boss, "cached", n_boot=100)
    assert len(calls) == 2 and after["n_ratings"] == first["n_ratings"] + 1
    with pytest.raises(S.NotFound, match="'nope'"):
        S.results(e, boss, "nope")


def _two_raters_and_an_admin(world, name: str, campaign: str, n_items: int, seed: int) -> tuple[str, str, str]:
    """Raters ``name`` and ``other-name`` sharing every item of a new campaign on the eroded run
    (k = 2), and admin ``boss-name``; returns their session tokens in that order."""
    e = world["engine"]
    names = [name, f"other-{name}"]
    pw = add_raters(e, names, admin=f"boss-{name}")
    create_campaign(e, campaign, [world["runs"]["eroded"]], n_items, 2, raters=names, seed=seed)
    return tuple(S.login(e, n, pw[n]) for n in (*names, f"boss-{name}"))


def test_a_rater_skips_an_item_by_reporting_a_problem_and_admins_see_it(world):
    e = world["engine"]
    t, o, boss = _two_raters_and_an_admin(world, "sk", "skips", 3, seed=14)
    first = S.next_item(e, t)
    assert (first["done"], first["total"]) == (0, 3)  # progress within this campaign
    with pytest.raises(ValueError, match="reason"):
        S.report_problem(e, t, first["assignment_id"], "   ")
    with pytest.raises(ValueError, match="control characters"):
        S.report_problem(e, t, first["assignment_id"], "bad\x00photo")
    with pytest.raises(S.AccessDenied, match="another rater"):
        S.report_problem(e, o, first["assignment_id"], "not mine")
    res = S.report_problem(e, t, first["assignment_id"], "the photo does not load")
    assert res["reported"] and res["next"]["assignment_id"] != first["assignment_id"] and res["next"]["done"] == 1
    assert S.next_item(e, t) == res["next"]
    again = S.report_problem(e, t, first["assignment_id"], "twice")
    assert not again["reported"]
    nxt = res["next"]
    S.submit(e, t, nxt["assignment_id"], SINGLE, seconds=1)
    with pytest.raises(ValueError, match="already answered"):
        S.report_problem(e, t, nxt["assignment_id"], "too late")
    listed = S.problems(e, boss, "skips")
    assert [(p["rater"], p["problem"]) for p in listed] == [("sk", "the photo does not load")]
    with pytest.raises(S.AccessDenied):
        S.problems(e, t, "skips")
    # no rating was made up for the skipped item
    assert S.results(e, boss, "skips", n_boot=100)["n_ratings"] == 1


def test_admin_manages_users_and_campaigns(world, tmp_path):
    import db

    solo = db.connect(f"sqlite:///{tmp_path / 'solo.db'}")
    S.add_user(solo, "only-admin", "a good password", "admin")
    with pytest.raises(ValueError, match="last active admin"):
        S.set_role(solo, "only-admin", "rater")
    solo.dispose()
    e = world["engine"]
    pw = add_raters(e, ["m1", "m2", "m3"], admin="boss-m")
    boss, t1 = S.login(e, "boss-m", pw["boss-m"]), S.login(e, "m1", pw["m1"])
    # only admins
    for call in (lambda: S.users(e, t1), lambda: S.admin_users(e, t1, "add", "x1", "longenough"),
                 lambda: S.close_campaign(e, t1, "managed"), lambda: S.reassign_open_items(e, t1, "managed", "m1")):
        with pytest.raises(S.AccessDenied):
            call()
    S.admin_users(e, boss, "add", "m4", "a good password")
    assert {"m4": ("rater", True)}.items() <= {u["name"]: (u["role"], u["active"]) for u in S.users(e, boss)}.items()
    S.admin_users(e, boss, "reset_password", "m1", "another password")
    with pytest.raises(S.AccessDenied):
        S.authenticate(e, t1)  # a reset ends the open sessions
    with pytest.raises(S.AccessDenied):
        S.login(e, "m1", pw["m1"])
    t1 = S.login(e, "m1", "another password")
    with pytest.raises(ValueError, match="8 characters"):
        S.admin_users(e, boss, "reset_password", "m1", "short")
    with pytest.raises(ValueError, match="own account"):
        S.admin_users(e, boss, "disable", "boss-m")
    S.admin_users(e, boss, "role", "m2", "admin")
    assert S.require_admin(e, S.login(e, "m2", pw["m2"])).name == "m2"
    S.admin_users(e, boss, "role", "m2", "rater")
    # a disabled rater's open items move to the least loaded active raters without the item
    create_campaign(e, "managed", [world["runs"]["eroded"]], 6, 2, raters=["m1", "m2", "m3"], seed=15)
    item = S.next_item(e, t1)
    S.submit(e, t1, item["assignment_id"], SINGLE, seconds=1)
    with pytest.raises(ValueError, match="disable the account"):
        S.reassign_open_items(e, boss, "managed", "m1")
    S.admin_users(e, boss, "disable", "m1")
    with session_scope(e) as s:
        def queue(name):
            return s.execute(select(Assignment.item_id, Assignment.done).join(Rater, Rater.id == Assignment.rater_id)
                             .join(CampaignItem, CampaignItem.id == Assignment.item_id).join(Campaign)
                             .where(Campaign.name == "managed", Rater.name == name)).all()
        open_m1 = [i for i, done in queue("m1") if not done]
    res = S.reassign_open_items(e, boss, "managed", "m1")
    assert res["moved"] + res["left"] == len(open_m1) and res["moved"] > 0
    with session_scope(e) as s:
        left = [(i, done) for i, done in queue("m1")]
        assert left == [(item_id, True) for item_id, done in left]  # only the answered item stays with m1
        for i in open_m1[: res["moved"]]:
            raters_of = s.scalars(select(Rater.name).join(Assignment, Assignment.rater_id == Rater.id).where(Assignment.item_id == i)).all()
            assert len(raters_of) == len(set(raters_of))  # nobody got an item twice
    # closing: the open items leave the queues, the ratings stay
    t3 = S.login(e, "m3", pw["m3"])
    assert S.next_item(e, t3)["campaign"] == "managed"
    assert S.close_campaign(e, boss, "managed") and not S.close_campaign(e, boss, "managed")
    nxt = S.next_item(e, t3)
    assert nxt is None or nxt["campaign"] != "managed"
    assert S.results(e, boss, "managed", n_boot=100)["n_ratings"] == 1
    assert next(c for c in S.list_campaigns(e, boss) if c["name"] == "managed")["status"] == "closed"


def test_raters_edit_their_answers_while_the_campaign_is_open_and_history_is_kept(world):
    from db.models import RatingRevision

    e = world["engine"]
    t, o, boss = _two_raters_and_an_admin(world, "ed", "edits", 2, seed=16)
    item = S.next_item(e, t)
    rid = S.submit(e, t, item["assignment_id"], {**SINGLE, "overall": 2, "comment": "first"}, seconds=3)["rating_id"]
    before = S.results(e, boss, "edits", n_boot=100)
    with pytest.raises(S.AccessDenied, match="another rater"):
        S.edit_rating(e, o, rid, SINGLE)
    with pytest.raises(ValueError, match="overall"):
        S.edit_rating(e, t, rid, {**SINGLE, "overall": 9})
    assert S.edit_rating(e, t, rid, {**SINGLE, "overall": 5, "comment": "second look"}) == {"rating_id": rid, "revisions": 1}
    assert S.edit_rating(e, t, rid, {**SINGLE, "overall": 4, "comment": "third"})["revisions"] == 2
    mine = next(r for r in S.my_ratings(e, t) if r["rating_id"] == rid)
    assert (mine["overall"], mine["comment"], mine["seconds"], mine["editable"]) == (4, "third", 3, True)
    with session_scope(e) as s:
        history = s.scalars(select(RatingRevision.answer).where(RatingRevision.rating_id == rid).order_by(RatingRevision.id)).all()
    assert [(h["overall"], h["comment"]) for h in history] == [(2, "first"), (5, "second look")]
    after = S.results(e, boss, "edits", n_boot=100)  # recomputed: the edit is a change
    assert after["per_release"] != before["per_release"]
    S.close_campaign(e, boss, "edits")
    with pytest.raises(ValueError, match="closed"):
        S.edit_rating(e, t, rid, SINGLE)
    assert next(r for r in S.my_ratings(e, t) if r["rating_id"] == rid)["editable"] is False
