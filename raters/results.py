"""Campaign quality and results: progress, gold accuracy, time-on-task outliers, Krippendorff's
alpha, per-release ratings with bootstrap CIs, Dawid-Skene and Bradley-Terry aggregation, human
against metric, and the gate's confidence calibrated against "would you use this cut-out?".

Sources: Krippendorff's alpha by the ``krippendorff`` package (Krippendorff, "Content Analysis",
2004; interval distance for the 1-5 scales, nominal for the categories); Dawid & Skene (JRSS-C 1979)
and Bradley & Terry (Biometrika 1952, fitted by Hunter's MM algorithm, Ann. Statist. 2004) by
crowd-kit; the modified z-score of Iglewicz & Hoaglin (1993) for time-on-task outliers; Spearman's
rank correlation by scipy; ECE and the reliability diagram by :mod:`evalhub.calibration`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select

from db.engine import session_scope
from db.models import Assignment, Campaign, CampaignItem, Dataset, Rater, Rating, Release, Run, Sample, TruthVersion
from evalhub.calibration import ece, reliability_diagram
from evalhub.runs import read_run
from evalhub.scoring import _jsonable
from evalhub.slicing import slice_seed
from evalhub.stats import bootstrap_indices, bootstrap_mean, percentile_interval
from raters.service import ARTIFACTS, NotFound

SCALES = ("overall", "edge")
CATEGORIES = ("completeness", "background_leak", "would_use")
OUTLIER_Z = 3.5
MISMATCH_HIGH_IOU, MISMATCH_LOW_RATING = 0.9, 2.0
MISMATCH_LOW_IOU, MISMATCH_HIGH_RATING = 0.7, 4.0


def _campaign(s, name: str) -> Campaign:
    """The campaign named ``name`` (:func:`db.catalog._by_name`), as :class:`NotFound` when absent."""
    from db.catalog import _by_name

    try:
        return _by_name(s, Campaign, name, "campaign")
    except KeyError as exc:
        raise NotFound(exc.args[0]) from None


def progress_table(engine: Engine, campaign: str) -> dict[str, Any]:
    """Assignments done / total per rater, and items with all their k ratings.

    Raises:
        NotFound: no such campaign.
    """
    with session_scope(engine) as s:
        c = _campaign(s, campaign)
        rows = s.execute(
            select(Rater.name, Assignment.done, CampaignItem.id, CampaignItem.is_gold)
            .join(Assignment, Assignment.rater_id == Rater.id)
            .join(CampaignItem, CampaignItem.id == Assignment.item_id)
            .where(CampaignItem.campaign_id == c.id)
        ).all()
        k = c.raters_per_item
    df = pd.DataFrame(rows, columns=["rater", "done", "item", "is_gold"])
    per = df.groupby("rater")["done"].agg(["sum", "count"]).reset_index()
    reg = df[~df["is_gold"].astype(bool)].groupby("item")["done"].sum()
    return {
        "campaign": campaign,
        "raters": [{"rater": r.rater, "done": int(r.sum), "total": int(r.count), "share": r.sum / r.count if r.count else 0.0}
                   for r in per.itertuples()],
        "done": int(df["done"].sum()), "total": int(len(df)),
        "items_complete": int((reg >= k).sum()), "items": int(len(reg)),
    }


def ratings_frame(engine: Engine, campaign: str) -> tuple[dict[str, Any], pd.DataFrame]:
    """A campaign's record and one row per rating, with its item, photo, gold answer and (A/B) the
    release shown left and the winner's release name.

    Raises:
        NotFound: no such campaign.
    """
    with session_scope(engine) as s:
        c = _campaign(s, campaign)
        runs = {r.id: (r.path, s.get(Release, r.release_id).name) for r in s.scalars(select(Run).where(Run.id.in_([c.run_a_id, c.run_b_id or -1])))}
        q = (select(Rating, Rater.name, CampaignItem, Sample.sample_key, Sample.image_path, Dataset.root)
             .join(Rater, Rater.id == Rating.rater_id)
             .join(CampaignItem, CampaignItem.id == Rating.item_id)
             .join(Sample, Sample.id == CampaignItem.sample_id)
             .join(Dataset, Dataset.id == Sample.dataset_id)
             .where(CampaignItem.campaign_id == c.id).order_by(Rating.id))
        rows = []
        for r, rater, item, key, image, root in s.execute(q):
            rows.append({
                "rating_id": r.id, "rater": rater, "item_id": item.id, "sample_key": key, "image": str(Path(root) / image),
                "is_gold": item.is_gold, "gold_answer": item.gold_answer, "stratum": item.stratum,
                "overall": r.overall, "edge": r.edge, "completeness": r.completeness, "background_leak": r.background_leak,
                "artifacts": r.artifacts, "would_use": r.would_use, "choice": r.choice, "reasons": r.reasons,
                "winner": runs[r.winner_run_id][1] if r.winner_run_id else (None if c.kind != "ab" else "tie"),
                "winner_run_id": r.winner_run_id, "left": runs[item.left_run_id][1] if item.left_run_id else None,
                "comment": r.comment, "seconds": r.seconds, "submitted_at": r.submitted_at,
            })
        info = {"name": c.name, "kind": c.kind, "k": c.raters_per_item, "settings": c.settings,
                "run_a": {"id": c.run_a_id, "path": runs[c.run_a_id][0], "release": runs[c.run_a_id][1]},
                "run_b": {"id": c.run_b_id, "path": runs[c.run_b_id][0], "release": runs[c.run_b_id][1]} if c.run_b_id else None}
    cols = ["rating_id", "rater", "item_id", "sample_key", "image", "is_gold", "gold_answer", "stratum", "overall", "edge", "completeness",
            "background_leak", "artifacts", "would_use", "choice", "reasons", "winner", "winner_run_id", "left", "comment", "seconds", "submitted_at"]
    return info, pd.DataFrame(rows, columns=cols)


def gold_accuracy(ratings: pd.DataFrame, kind: str) -> list[dict[str, Any]]:
    """Per rater: gold items answered and the share matching the reference (``would_use`` for single
    extractions, the winning release for A/B)."""
    g = ratings[ratings["is_gold"].astype(bool)]
    out = []
    for rater, part in g.groupby("rater"):
        if kind == "ab":
            hit = [r.winner_run_id == r.gold_answer.get("winner_run_id") for r in part.itertuples()]
        else:
            hit = [r.would_use == r.gold_answer.get("would_use") for r in part.itertuples()]
        out.append({"rater": rater, "n": len(hit), "accuracy": float(np.mean(hit))})
    return out


def time_outliers(ratings: pd.DataFrame, z: float = OUTLIER_Z) -> dict[str, Any]:
    """Ratings whose time on task has a modified z-score ``0.6745 (x - median) / MAD`` beyond
    ``z`` (Iglewicz & Hoaglin 1993), and each rater's median seconds."""
    t = ratings.dropna(subset=["seconds"])
    x = t["seconds"].to_numpy(float)
    if x.size == 0:
        return {"median": None, "mad": None, "outliers": [], "per_rater": []}
    med = float(np.median(x))
    mad = float(np.median(np.abs(x - med)))
    mz = 0.6745 * (x - med) / mad if mad > 0 else np.zeros_like(x)
    flagged = t.assign(z=mz)[np.abs(mz) > z]
    return {
        "median": med, "mad": mad,
        "outliers": [{"rating_id": int(r.rating_id), "rater": r.rater, "sample_key": r.sample_key, "seconds": float(r.seconds), "z": float(r.z)}
                     for r in flagged.itertuples()],
        "per_rater": [{"rater": k, "median_seconds": float(v)} for k, v in t.groupby("rater")["seconds"].median().items()],
    }


def reliability_matrix(ratings: pd.DataFrame, column: str) -> np.ndarray:
    """``(raters, items)`` float matrix of one question's answers (categories coded by their sorted
    order), NaN where a rater did not answer an item: the layout ``krippendorff.alpha`` takes."""
    d = ratings.dropna(subset=[column])
    if d.empty:
        return np.zeros((0, 0))
    values = d[column]
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        codes = {v: i for i, v in enumerate(sorted(values.astype(str).unique()))}
        values = values.astype(str).map(codes)
    m = d.assign(v=values.astype(float)).pivot_table(index="rater", columns="item_id", values="v", aggfunc="first")
    return m.to_numpy(float)


def krippendorff_alphas(ratings: pd.DataFrame, kind: str) -> dict[str, float | None]:
    """Krippendorff's alpha per question: interval for ``overall`` and ``edge``, nominal for the
    categories, each artifact flag and the A/B choice; None where no item has two answers or every
    answer is the same (alpha undefined)."""
    import krippendorff

    r = ratings.copy()
    questions: dict[str, str] = {}
    if kind == "ab":
        r["choice_shown"] = r["choice"]
        questions["choice"] = "nominal"
        cols = {"choice": "choice_shown"}
    else:
        for a in ARTIFACTS:
            r["artifact_" + a] = r["artifacts"].map(lambda v, a=a: None if v is None else (a in v))
        questions.update({q: "interval" for q in SCALES})
        questions.update({q: "nominal" for q in CATEGORIES})
        questions.update({"artifact_" + a: "nominal" for a in ARTIFACTS})
        cols = {q: q for q in questions}
    out: dict[str, float | None] = {}
    for q, level in questions.items():
        m = reliability_matrix(r, cols[q])
        pairable = (np.isfinite(m).sum(axis=0) >= 2).sum() if m.size else 0
        if pairable == 0 or np.unique(m[np.isfinite(m)]).size < 2:
            out[q] = None
            continue
        out[q] = float(krippendorff.alpha(reliability_data=m, level_of_measurement=level))
    return out


DS_MAX_ITER = 10_000
DS_TOL = 1e-12
_DS_EPS = np.finfo(np.float64).eps  # crowd-kit's floor for error rates and priors


def dawid_skene_em(tasks: np.ndarray, workers: np.ndarray, labels: np.ndarray, n_iter: int = DS_MAX_ITER,
                   tol: float = DS_TOL) -> tuple[np.ndarray, int]:
    """Dawid-Skene EM (Dawid & Skene, JRSS C 1979), vectorised, run to convergence.

    The same steps as crowd-kit's ``DawidSkene`` (majority-vote start; M-step: each worker's error
    matrix from the posteriors, floored at machine epsilon over the (worker, label) pairs the worker
    used, normalised per true class; E-step: log2-domain posteriors from the priors and error
    rates), which the tests check iteration by iteration. crowd-kit itself stops when the
    log-likelihood gain falls below 1e-5, which also happens on a dip while the likelihood still
    rises, and each of its iterations costs about 20 ms of pandas; here the EM runs until no
    posterior moves by more than ``tol`` (or ``n_iter`` iterations), in microseconds per iteration.

    Args:
        tasks, workers, labels: ``(M,)`` int codes of each observation (task in ``[0, T)``, worker
            in ``[0, W)``, label in ``[0, L)``); every task has at least one observation.

    Returns:
        ``(posteriors (T, L) float64, iterations run)``.
    """
    n_t, n_w, n_l = int(tasks.max()) + 1, int(workers.max()) + 1, int(labels.max()) + 1
    probas = np.zeros((n_t, n_l))
    np.add.at(probas, (tasks, labels), 1.0)
    probas /= probas.sum(axis=1, keepdims=True)
    used = np.zeros((n_w, n_l), bool)
    used[workers, labels] = True

    def m_step(p: np.ndarray) -> np.ndarray:
        err = np.zeros((n_w, n_l, n_l))  # worker, observed label, true label
        np.add.at(err, (workers, labels), p[tasks])
        err = np.where(used[:, :, None], np.maximum(err, _DS_EPS), 0.0)
        return err / err.sum(axis=1, keepdims=True)

    priors, errors = probas.mean(axis=0), m_step(probas)
    it = 0
    for it in range(1, n_iter + 1):
        with np.errstate(divide="ignore"):
            log_err = np.log2(errors[workers, labels])  # (M, L)
        log_lik = np.log2(np.maximum(priors, _DS_EPS))[None, :] + np.zeros((n_t, n_l))
        np.add.at(log_lik, tasks, log_err)
        scaled = np.exp2(log_lik - log_lik.max(axis=1, keepdims=True))
        new = scaled / scaled.sum(axis=1, keepdims=True)
        priors, errors = new.mean(axis=0), m_step(new)
        moved = float(np.abs(new - probas).max())
        probas = new
        if moved < tol:
            break
    return probas, it


def dawid_skene(ratings: pd.DataFrame, column: str, n_iter: int = DS_MAX_ITER) -> pd.Series:
    """Dawid-Skene aggregated label per item for one categorical question, fitted to convergence
    (:func:`dawid_skene_em`).

    Returns:
        ``item_id -> label`` (text); a tie of the posterior goes to the first label in sorted order.
    """
    d = ratings.dropna(subset=[column])
    if d.empty:
        return pd.Series(dtype=object)
    task_codes, task_ids = pd.factorize(d["item_id"], sort=True)
    worker_codes, _ = pd.factorize(d["rater"], sort=True)
    label_codes, label_names = pd.factorize(d[column].astype(str), sort=True)
    probas, _ = dawid_skene_em(task_codes, worker_codes, label_codes, n_iter=n_iter)
    return pd.Series(np.asarray(label_names)[probas.argmax(axis=1)], index=pd.Index(task_ids, name="task"), name="agg_label")


def bt_comparisons(ratings: pd.DataFrame, releases: tuple[str, str]) -> pd.DataFrame:
    """A/B votes as crowd-kit's ``left, right, label`` rows (release names), with a tie as half a win
    for each side, the convention the reported win rate uses.

    crowd-kit's rows carry no weights, so every decisive vote is written twice and a tie once for
    each side: the Bradley-Terry likelihood is then the half-win one squared, with the same maximum
    (a tie as a full win for each side, as before, moves the scores towards 1/2 whenever there are
    ties: 2 wins and 2 ties give 2/3 instead of the win rate's 3/4).
    """
    rows = []
    for r in ratings.itertuples():
        left = r.left
        right = releases[1] if left == releases[0] else releases[0]
        winners = [left, right] if r.winner == "tie" else [r.winner, r.winner]
        rows += [{"left": left, "right": right, "label": w, "item_id": r.item_id} for w in winners]
    return pd.DataFrame(rows, columns=["left", "right", "label", "item_id"])


def bradley_terry(comparisons: pd.DataFrame, n_boot: int = 200, seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Bradley-Terry scores (crowd-kit, summing to 1) with a percentile CI from resampling items
    (cluster bootstrap)."""
    from crowdkit.aggregation import BradleyTerry

    if comparisons.empty:
        return {"scores": {}}
    fit = lambda d: BradleyTerry(n_iter=100).fit(d[["left", "right", "label"]]).scores_  # noqa: E731
    scores = fit(comparisons)
    items = comparisons["item_id"].unique()
    by_item = {i: g for i, g in comparisons.groupby("item_id")}
    reps = []
    for idx in bootstrap_indices(len(items), n_boot, seed):
        d = pd.concat([by_item[items[i]] for i in idx], ignore_index=True)
        if d["label"].nunique() < 2 and len(scores) > 1:
            reps.append({k: float(k == d["label"].iloc[0]) for k in scores.index})
            continue
        reps.append(fit(d).to_dict())
    rep = pd.DataFrame(reps)
    return {"scores": {k: {"value": float(v), **dict(zip(("lo", "hi"), percentile_interval(rep[k].to_numpy(), level)))}
                       for k, v in scores.items()}}


def _item_table(ratings: pd.DataFrame) -> pd.DataFrame:
    """Per item: mean overall and edge rating, share answering would_use = yes, number of ratings."""
    g = ratings.groupby("item_id")
    return pd.DataFrame({
        "sample_key": g["sample_key"].first(), "image": g["image"].first(), "n": g.size(),
        "overall": g["overall"].mean(), "edge": g["edge"].mean(),
        "would_use": g["would_use"].apply(lambda v: float(np.mean(v.dropna().astype(float))) if v.notna().any() else np.nan),
    })


def campaign_results(engine: Engine, campaign: str, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Everything the admin results page and ``raters results`` show (JSON-able).

    Raises:
        NotFound: no such campaign.
    """
    info, r = ratings_frame(engine, campaign)
    if info["kind"] == "correct":
        return _jsonable({"campaign": info, "n_ratings": int(len(r)), "progress": progress_table(engine, campaign),
                          "time_on_task": time_outliers(r), "corrections": correction_summary(engine, info)})
    out: dict[str, Any] = {"campaign": info, "n_ratings": int(len(r)), "progress": progress_table(engine, campaign),
                           "gold_accuracy": gold_accuracy(r, info["kind"]), "time_on_task": time_outliers(r),
                           "krippendorff_alpha": krippendorff_alphas(r, info["kind"]) if len(r) else {}}
    reg = r[~r["is_gold"].astype(bool)]
    if info["kind"] == "ab":
        rel = (info["run_a"]["release"], info["run_b"]["release"])
        comp = bt_comparisons(reg, rel)
        out["bradley_terry"] = bradley_terry(comp, n_boot=min(n_boot, 200), seed=seed)
        ties = float((reg["winner"] == "tie").sum())
        out["bradley_terry"]["win_rate"] = {k: ((reg["winner"] == k).sum() + 0.5 * ties) / len(reg) if len(reg) else None for k in rel}
        out["votes"] = {"n": int(len(reg)), "ties": int((reg["winner"] == "tie").sum()),
                        **{f"wins_{k}": int((reg["winner"] == k).sum()) for k in rel}}
        out["human_vs_metric"] = _ab_vs_metric(engine, reg, info)
        return _jsonable(out)
    items = _item_table(reg) if len(reg) else pd.DataFrame(columns=["sample_key", "image", "n", "overall", "edge", "would_use"])
    release = info["run_a"]["release"]
    out["per_release"] = {release: {
        q: bootstrap_mean(items[q].to_numpy(float), n_boot=n_boot, seed=slice_seed(seed, release, q)) for q in ("overall", "edge", "would_use")
    }}
    ds = {}
    for q in CATEGORIES:
        lab = dawid_skene(reg, q)
        ds[q] = {"labels": {str(k): v for k, v in lab.items()}, "distribution": {str(k): float(v) for k, v in lab.value_counts(normalize=True).items()}}
    out["dawid_skene"] = ds
    out["human_vs_metric"] = _single_vs_metric(engine, items, info, ds["would_use"]["labels"])
    return _jsonable(out)


def _single_vs_metric(engine: Engine, items: pd.DataFrame, info: dict[str, Any], would_use: dict[str, str]) -> dict[str, Any]:
    """Spearman of mean ratings with IoU and boundary F1, the mismatch list, and the release's
    confidence calibrated against the Dawid-Skene "would use" label."""
    from scipy.stats import spearmanr

    rule = (f"IoU >= {MISMATCH_HIGH_IOU} and mean overall <= {MISMATCH_LOW_RATING}; "
            f"IoU < {MISMATCH_LOW_IOU} and mean overall >= {MISMATCH_HIGH_RATING}")
    if items.empty:
        return {"release": info["run_a"]["release"], "n_items": 0, "spearman_overall_iou": None, "spearman_overall_boundary_f1": None,
                "mismatches": {"metric_high_rating_low": [], "metric_low_rating_high": [], "rule": rule}, "points": []}
    table = read_run(engine, info["run_a"]["id"]).table
    j = items.rename_axis("item_id").reset_index().merge(table[["sample_key", "iou", "boundary_f1", "confidence"]], on="sample_key", how="left")
    out: dict[str, Any] = {"release": info["run_a"]["release"], "n_items": int(len(j))}
    for m in ("iou", "boundary_f1"):
        ok = j[["overall", m]].dropna()
        out[f"spearman_overall_{m}"] = float(spearmanr(ok["overall"], ok[m]).statistic) if len(ok) >= 3 and ok["overall"].nunique() > 1 and ok[m].nunique() > 1 else None
    hi = j[(j["iou"] >= MISMATCH_HIGH_IOU) & (j["overall"] <= MISMATCH_LOW_RATING)]
    lo = j[(j["iou"] < MISMATCH_LOW_IOU) & (j["overall"] >= MISMATCH_HIGH_RATING)]
    cols = ["sample_key", "image", "iou", "boundary_f1", "overall", "confidence"]
    out["mismatches"] = {"metric_high_rating_low": hi[cols].to_dict("records"), "metric_low_rating_high": lo[cols].to_dict("records"),
                         "rule": rule}
    out["points"] = j[["sample_key", "iou", "overall"]].to_dict("records")
    lab = j["item_id"].astype(str).map(would_use)
    ok = lab.notna() & j["confidence"].notna()
    if ok.any():
        conf, y = j.loc[ok, "confidence"].to_numpy(float), (lab[ok] == "True").to_numpy()
        rd = reliability_diagram(conf, y)
        out["gate_vs_would_use"] = {"n": int(ok.sum()), "ece": ece(conf, y), "reliability": {k: v.tolist() for k, v in rd.items()}}
    return out


def _ab_vs_metric(engine: Engine, reg: pd.DataFrame, info: dict[str, Any]) -> dict[str, Any]:
    """Spearman of the share of votes for B (ties half) with the IoU and boundary F1 gaps B - A."""
    from scipy.stats import spearmanr

    a, b = read_run(engine, info["run_a"]["id"]).table, read_run(engine, info["run_b"]["id"]).table
    rb = info["run_b"]["release"]
    votes = reg.assign(v=np.where(reg["winner"] == rb, 1.0, np.where(reg["winner"] == "tie", 0.5, 0.0))).groupby("sample_key")["v"].mean()
    j = a[["sample_key", "iou", "boundary_f1"]].merge(b[["sample_key", "iou", "boundary_f1"]], on="sample_key", suffixes=("_a", "_b"))
    j = j.merge(votes.rename("share_b").reset_index(), on="sample_key")
    out: dict[str, Any] = {"n_items": int(len(j))}
    for m in ("iou", "boundary_f1"):
        d = (j[f"{m}_b"] - j[f"{m}_a"]).to_numpy()
        ok = np.isfinite(d)
        out[f"spearman_votes_{m}_gap"] = float(spearmanr(j["share_b"][ok], d[ok]).statistic) if ok.sum() >= 3 and np.unique(d[ok]).size > 1 and j["share_b"][ok].nunique() > 1 else None
    return out


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralize_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` safe to open in a spreadsheet: every text cell that a spreadsheet would
    evaluate (starting with ``= + - @``, tab or carriage return, OWASP's CSV-injection list) gets a
    leading apostrophe, so ``=HYPERLINK(...)`` in a comment stays text. Numbers are left alone."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or str(out[col].dtype).startswith("str"):
            out[col] = out[col].map(lambda v: "'" + v if isinstance(v, str) and v.startswith(FORMULA_STARTS) else v)
    return out


def export(engine: Engine, campaign: str, out: str | Path, n_boot: int = 1000, seed: int = 0) -> dict[str, Path]:
    """Write ``ratings.csv``/``.parquet`` (one row per rating), ``items.csv``/``.parquet`` (per-item
    means, single campaigns) and ``results.json`` into ``out``.

    Raises:
        NotFound: no such campaign.
    """
    import json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _, r = ratings_frame(engine, campaign)
    flat = r.assign(gold_answer=r["gold_answer"].map(lambda v: None if v is None else json.dumps(v)),
                    artifacts=r["artifacts"].map(lambda v: None if v is None else ";".join(v)),
                    reasons=r["reasons"].map(lambda v: None if v is None else ";".join(v)),
                    submitted_at=pd.to_datetime(r["submitted_at"], utc=True))
    paths = {"ratings_csv": out / "ratings.csv", "ratings_parquet": out / "ratings.parquet", "results": out / "results.json"}
    neutralize_formulas(flat).to_csv(paths["ratings_csv"], index=False)
    flat.to_parquet(paths["ratings_parquet"], index=False)
    reg = r[~r["is_gold"].astype(bool)]
    if len(reg) and reg["overall"].notna().any():
        items = _item_table(reg).reset_index()
        paths["items_csv"], paths["items_parquet"] = out / "items.csv", out / "items.parquet"
        neutralize_formulas(items).to_csv(paths["items_csv"], index=False)
        items.to_parquet(paths["items_parquet"], index=False)
    paths["results"].write_text(json.dumps(campaign_results(engine, campaign, n_boot, seed), indent=2, default=str))
    return paths


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def correction_summary(engine: Engine, info: dict[str, Any]) -> dict[str, Any]:
    """What a correction campaign changed: per correction, the IoU of the corrected mask with the
    dataset's own mask (version 1) and the IoU of the run's prediction (at 0.5) with each; their
    means; and, where several raters corrected one photo, their mean pairwise IoU (agreement).

    Returns:
        ``{"n", "rows": [{sample_key, rater, version, base, snapped, iou_with_original,
        pred_iou_original, pred_iou_corrected}], "mean_iou_with_original", "mean_pred_iou_original",
        "mean_pred_iou_corrected", "agreement": {"n_photos", "mean_pairwise_iou"}}``.
    """
    from evalhub.datasets import read_mask
    from raters.corrections import png_to_mask, prediction_mask
    from synth.io import BadInput

    with session_scope(engine) as s:
        q = (select(TruthVersion, Sample.sample_key, Sample.mask_path, Dataset.root, Dataset.info, Rater.name)
             .join(Sample, Sample.id == TruthVersion.sample_id).join(Dataset, Dataset.id == Sample.dataset_id)
             .join(Rater, Rater.id == TruthVersion.rater_id).where(TruthVersion.campaign == info["name"]).order_by(TruthVersion.id))
        found = [(tv.version, bytes(tv.mask_png), tv.base, tv.snapped, key, mask_path, root, dinfo, rater)
                 for tv, key, mask_path, root, dinfo, rater in s.execute(q)]
    rows, by_photo = [], {}
    for version, png, base, snapped, key, mask_path, root, dinfo, rater in found:
        corrected = png_to_mask(png)
        by_photo.setdefault(key, []).append(corrected)
        row: dict[str, Any] = {"sample_key": key, "rater": rater, "version": version, "base": base, "snapped": snapped,
                               "iou_with_original": None, "pred_iou_original": None, "pred_iou_corrected": None}
        try:
            original = read_mask(Path(root) / mask_path, (dinfo or {}).get("mask_encoding", "0-255")) if mask_path else None
            pred = prediction_mask(info["run_a"]["path"], key, corrected.shape)
        except BadInput:
            original, pred = None, None
        if original is not None and original.shape == corrected.shape:
            row["iou_with_original"] = _mask_iou(corrected, original)
            if pred is not None:
                row["pred_iou_original"] = _mask_iou(pred, original)
        if pred is not None:
            row["pred_iou_corrected"] = _mask_iou(pred, corrected)
        rows.append(row)

    def mean(k: str) -> float | None:
        v = [r[k] for r in rows if r[k] is not None]
        return float(np.mean(v)) if v else None

    pairs = [_mask_iou(m[i], m[j]) for m in by_photo.values() for i in range(len(m)) for j in range(i + 1, len(m))]
    return {"n": len(rows), "rows": rows, "mean_iou_with_original": mean("iou_with_original"),
            "mean_pred_iou_original": mean("pred_iou_original"), "mean_pred_iou_corrected": mean("pred_iou_corrected"),
            "agreement": {"n_photos": sum(len(m) > 1 for m in by_photo.values()),
                          "mean_pairwise_iou": float(np.mean(pairs)) if pairs else None}}
