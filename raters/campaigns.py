"""Rating campaigns: drawing items from evalhub runs and assigning them to raters.

Items (:func:`draw_items`):

- **Gold items** first: obvious cases with a reference answer set by the admin who creates the
  campaign. Single extractions: half of them broken (IoU < 0.5, reference ``would_use = no``), half
  clean (IoU >= 0.95, reference ``would_use = yes``). A/B: pairs whose IoUs differ by >= 0.3
  (reference: the better release). ``--gold-file`` gives them explicitly instead.
- **Regular items**, stratified over slices: an equal share per stratum (the values of the
  ``stratify`` attributes; a stratum short of images gives its remainder to the others), and within a
  stratum a weighted sample without replacement (Efraimidis & Spirakis 2006, keys ``u^(1/w)``) with
  weight ``w = 1 + 2 exp(-|c - t| / 0.1) + 2 d``: ``c`` the gate confidence and ``t`` the release
  threshold (the nearest of both releases for A/B), ``d`` the disagreement between metrics (the gap
  between the percentile ranks of IoU and boundary F1; for A/B the IoU gap of the two releases).

Assignments (:func:`assign`): each regular item goes to ``k`` distinct raters, always those with the
fewest assignments so far (ties broken at random); every gold item goes to every rater, so each
rater's gold accuracy is measured and gold items appear at the stated rate; each rater's queue is
shuffled (seeded), which mixes the gold items in.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError

from db.engine import session_scope
from db.models import Assignment, Campaign, CampaignItem, Dataset, Rater, Release, Run, Sample
from evalhub.runs import read_run
from evalhub.slicing import ATTR_PREFIX

GOLD_BROKEN_IOU = 0.5
GOLD_CLEAN_IOU = 0.95
GOLD_AB_GAP = 0.3


CORRECTION_STARTS = ("prediction", "truth")


class CampaignError(ValueError):
    """A campaign that cannot be created as asked (the message names the run, option or count)."""


def _stratum_text(v: Any) -> str:
    """An attribute value as stratum text: ``(missing)`` for None / NaN."""
    return "(missing)" if v is None or (isinstance(v, float) and v != v) else str(v)


def _pct_rank(x: pd.Series) -> np.ndarray:
    return x.rank(pct=True, method="average").fillna(0.5).to_numpy()


def _weights(table: pd.DataFrame, thresholds: Sequence[float], ab: bool) -> np.ndarray:
    """Sampling weight per row (module docstring)."""
    if ab:
        near = np.maximum(np.exp(-np.abs(table["confidence"] - thresholds[0]) / 0.1),
                          np.exp(-np.abs(table["confidence_b"] - thresholds[1]) / 0.1))
        d = np.abs(table["iou"].fillna(0) - table["iou_b"].fillna(0)).to_numpy()
    else:
        near = np.exp(-np.abs(table["confidence"] - thresholds[0]) / 0.1)
        d = np.abs(_pct_rank(table["iou"]) - _pct_rank(table["boundary_f1"]))
    return 1 + 2 * np.asarray(near) + 2 * d


def allocate(available: dict[str, int], n: int) -> dict[str, int]:
    """Equal shares of ``n`` over strata, capped by what each has; the shortfall of small strata goes
    to the others (water-filling). Raises :class:`CampaignError` when ``n`` exceeds the total."""
    total = sum(available.values())
    if n > total:
        raise CampaignError(f"--items {n} exceeds the {total} images available after gold items")
    out = {k: 0 for k in available}
    left = n
    while left > 0:
        open_ = sorted(k for k in available if out[k] < available[k])
        share = max(1, left // len(open_))
        for k in open_:
            take = min(share, available[k] - out[k], left)
            out[k] += take
            left -= take
            if left == 0:
                break
    return out


def draw_items(table: pd.DataFrame, n: int, n_gold: int, thresholds: Sequence[float], stratify: Sequence[str],
               ab: bool, seed: int, gold: dict[str, dict[str, Any]] | None = None) -> pd.DataFrame:
    """Choose gold and regular items from a run table (A/B: the joined table, B's columns ``_b``).

    Returns:
        The chosen rows with ``stratum``, ``weight``, ``is_gold`` and ``gold_answer`` (``{"would_use":
        bool}``, or ``{"winner": "a"|"b"}`` for A/B).

    Raises:
        CampaignError: not enough obvious gold candidates or images (counts named), or an unknown
            stratify attribute.
    """
    rng = np.random.default_rng(seed)
    t = table.reset_index(drop=True).copy()
    for a in stratify:
        if ATTR_PREFIX + a not in t.columns:
            raise CampaignError(f"--stratify {a!r} is not an attribute of the run (known: "
                                f"{[c[len(ATTR_PREFIX):] for c in t.columns if c.startswith(ATTR_PREFIX)]})")
    # a missing value (negatives have no mask attributes) is a stratum of its own; mapped value by
    # value because astype(str) keeps NaN under pandas 3's string dtype
    t["stratum"] = (t[[ATTR_PREFIX + a for a in stratify]].apply(lambda col: col.map(_stratum_text)).agg(" & ".join, axis=1)
                    if stratify else "all")
    t["weight"] = _weights(t, thresholds, ab)
    t["is_gold"] = False
    t["gold_answer"] = None
    if gold:
        unknown = sorted(set(gold) - set(t["sample_key"]))
        if unknown:
            raise CampaignError(f"--gold-file names ids not in the run: {unknown[:10]}")
        gi = t.index[t["sample_key"].isin(gold)]
        t.loc[gi, "is_gold"] = True
        t.loc[gi, "gold_answer"] = pd.Series([gold[k] for k in t.loc[gi, "sample_key"]], index=gi, dtype=object)
    elif n_gold:
        if ab:
            gap = t["iou"].fillna(0) - t["iou_b"].fillna(0)
            cand = t.index[gap.abs() >= GOLD_AB_GAP]
            if len(cand) < n_gold:
                raise CampaignError(f"only {len(cand)} pairs differ by IoU >= {GOLD_AB_GAP}: lower --gold or give --gold-file")
            pick = rng.choice(cand, n_gold, replace=False)
            t.loc[pick, "gold_answer"] = pd.Series([{"winner": "a" if gap[i] > 0 else "b"} for i in pick], index=pick, dtype=object)
        else:
            pos = t["has_subject"].astype(bool)
            broken = t.index[pos & (t["iou"] < GOLD_BROKEN_IOU)]
            clean = t.index[pos & (t["iou"] >= GOLD_CLEAN_IOU)]
            nb = n_gold // 2
            nc = n_gold - nb
            if len(broken) < nb or len(clean) < nc:
                raise CampaignError(f"gold needs {nb} broken (IoU < {GOLD_BROKEN_IOU}) and {nc} clean (IoU >= {GOLD_CLEAN_IOU}) "
                                    f"extractions; the run has {len(broken)} and {len(clean)}: lower --gold or give --gold-file")
            pick_b, pick_c = rng.choice(broken, nb, replace=False), rng.choice(clean, nc, replace=False)
            t.loc[pick_b, "gold_answer"] = pd.Series([{"would_use": False}] * nb, index=pick_b, dtype=object)
            t.loc[pick_c, "gold_answer"] = pd.Series([{"would_use": True}] * nc, index=pick_c, dtype=object)
            pick = np.concatenate([pick_b, pick_c])
        t.loc[pick, "is_gold"] = True
    rest = t[~t["is_gold"]]
    alloc = allocate(rest.groupby("stratum").size().to_dict(), n)
    chosen = []
    for stratum, k in alloc.items():
        part = rest[rest["stratum"] == stratum]
        keys = rng.random(len(part)) ** (1.0 / part["weight"].to_numpy())
        chosen.append(part.iloc[np.argsort(-keys, kind="stable")[:k]])
    return pd.concat([t[t["is_gold"]], *chosen])


def read_gold_file(path: str | Path, ab: bool) -> dict[str, dict[str, Any]]:
    """A gold CSV: ``sample_id,would_use`` (yes/no) or, for A/B, ``sample_id,winner`` (a/b = run A/B).

    Raises:
        CampaignError: a missing column or a bad value (row and value named).
    """
    col = "winner" if ab else "would_use"
    out = {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for i, r in enumerate(rows, start=2):
        if "sample_id" not in r or col not in r:
            raise CampaignError(f"{path}: needs columns sample_id,{col}")
        v = (r[col] or "").strip().lower()
        if ab:
            if v not in ("a", "b"):
                raise CampaignError(f"{path}:{i}: winner must be a or b, got {r[col]!r}")
            out[r["sample_id"]] = {"winner": v}
        else:
            if v not in ("yes", "no", "true", "false", "1", "0"):
                raise CampaignError(f"{path}:{i}: would_use must be yes or no, got {r[col]!r}")
            out[r["sample_id"]] = {"would_use": v in ("yes", "true", "1")}
    return out


def assign(item_ids: Sequence[int], gold_ids: Sequence[int], rater_ids: Sequence[int], k: int, seed: int) -> list[tuple[int, int, int]]:
    """``(item_id, rater_id, position)`` triples (module docstring).

    Raises:
        CampaignError: fewer raters than ``k``.
    """
    if k < 1:
        raise CampaignError(f"--raters-per-item must be >= 1, got {k}")
    if len(rater_ids) < k:
        raise CampaignError(f"--raters-per-item {k} needs at least {k} active raters; there are {len(rater_ids)}")
    rng = np.random.default_rng(seed)
    load = {r: 0 for r in rater_ids}
    queues: dict[int, list[int]] = {r: list(gold_ids) for r in rater_ids}
    for item in item_ids:
        order = sorted(rater_ids, key=lambda r: (load[r], rng.random()))
        for r in order[:k]:
            queues[r].append(item)
            load[r] += 1
    out = []
    for r, items in queues.items():
        for pos, item in enumerate(rng.permutation(len(items))):
            out.append((items[item], r, pos))
    return out


def _run(s, path: str | Path) -> Run:
    p = str(Path(path).resolve())
    run = s.scalar(select(Run).where(Run.path == p))
    if run is None:
        raise CampaignError(f"run folder {path} is not in the catalog: score it with 'evalhub score' first")
    return run


def create_campaign(engine: Engine, name: str, runs: Sequence[str | Path], n_items: int, raters_per_item: int = 3,
                    n_gold: int = 0, stratify: Sequence[str] | None = None, raters: Sequence[str] | None = None,
                    seed: int = 0, gold_file: str | Path | None = None, correct: str | None = None) -> dict[str, Any]:
    """Create a campaign over one run (single extractions) or two runs of one dataset (blind A/B),
    or a correction campaign over one run (``correct``), where raters correct a mask with a brush
    and each correction becomes a new version of the sample's ground truth.

    Args:
        runs: one or two ``evalhub score`` run folders registered in the catalog.
        n_items: regular items (gold items come on top).
        raters_per_item: k distinct raters per regular item.
        n_gold: gold items (ignored with ``gold_file``).
        stratify: attributes whose values make the strata (default ``area_bucket`` when the run has
            it, else none).
        raters: rater names (default: every active account with role ``rater``).
        correct: make a correction campaign starting from ``prediction`` (the run's mask at 0.5)
            or ``truth`` (the sample's newest ground truth). Items are drawn as for single
            extractions (towards the gate threshold and metric disagreements); no gold items.

    Returns:
        ``{"id", "name", "kind", "items", "gold", "assignments", "gold_rate"}``; ``gold_rate`` is the
        share of gold items in an average rater's queue.

    Raises:
        CampaignError: a bad run, count or name (named); a campaign name already taken.
    """
    if len(runs) not in (1, 2):
        raise CampaignError(f"give one --run (single extractions) or two (A/B), got {len(runs)}")
    if correct is not None and (correct not in CORRECTION_STARTS or len(runs) != 1 or n_gold or gold_file):
        raise CampaignError(f"a correction campaign takes one --run, no gold items, and starts from one of {CORRECTION_STARTS}, "
                            f"got {len(runs)} run(s), start {correct!r}")
    ab = len(runs) == 2
    with session_scope(engine) as s:
        run_rows = [_run(s, r) for r in runs]
        if ab and run_rows[0].dataset_id != run_rows[1].dataset_id:
            raise CampaignError(f"A/B runs must score the same dataset: {runs[0]} and {runs[1]} do not")
        if ab and run_rows[0].id == run_rows[1].id:
            raise CampaignError("A/B needs two different runs")
        thresholds = [s.get(Release, r.release_id).threshold for r in run_rows]
        keys = dict(s.execute(select(Sample.sample_key, Sample.id).where(Sample.dataset_id == run_rows[0].dataset_id)).all())
        q = select(Rater.id, Rater.name).where(Rater.active.is_(True))
        q = q.where(Rater.name.in_(list(raters))) if raters else q.where(Rater.role == "rater")
        rater_rows = s.execute(q.order_by(Rater.id)).all()
        if raters:
            missing = sorted(set(raters) - {n for _, n in rater_rows})
            if missing:
                raise CampaignError(f"no active user(s) {missing}")
        run_ids = [r.id for r in run_rows]
    table = read_run(engine, run_ids[0]).table
    if ab:
        b = read_run(engine, run_ids[1]).table
        table = table.merge(b[["sample_key", "iou", "boundary_f1", "confidence"]], on="sample_key", suffixes=("", "_b"))
    if stratify is None:
        stratify = ["area_bucket"] if ATTR_PREFIX + "area_bucket" in table.columns else []
    gold = read_gold_file(gold_file, ab) if gold_file else None
    chosen = draw_items(table, n_items, n_gold, thresholds, stratify, ab, seed, gold)
    rng = np.random.default_rng(seed + 1)
    settings = {"runs": [str(Path(r).resolve()) for r in runs], "n_items": n_items, "n_gold": int(chosen["is_gold"].sum()),
                "stratify": list(stratify), "seed": seed, "gold_file": str(gold_file) if gold_file else None,
                "weights": "1 + 2 exp(-|c - t| / 0.1) + 2 d", "raters": [n for _, n in rater_rows]}
    if correct is not None:
        settings["start"] = correct
    kind = "correct" if correct is not None else "ab" if ab else "single"
    try:
        with session_scope(engine) as s:
            camp = Campaign(name=name, kind=kind, run_a_id=run_ids[0], run_b_id=run_ids[1] if ab else None,
                            raters_per_item=raters_per_item, settings=settings)
            s.add(camp)
            s.flush()
            items, gold_items = [], []
            for r in chosen.itertuples(index=False):
                ans = r.gold_answer
                if ab and ans is not None:
                    ans = {"winner_run_id": run_ids[0] if ans["winner"] == "a" else run_ids[1]}
                it = CampaignItem(campaign_id=camp.id, sample_id=keys[r.sample_key], stratum=str(r.stratum), weight=float(r.weight),
                                  is_gold=bool(r.is_gold), gold_answer=ans,
                                  left_run_id=(run_ids[int(rng.integers(2))] if ab else None))
                s.add(it)
                s.flush()
                (gold_items if r.is_gold else items).append(it.id)
            triples = assign(items, gold_items, [i for i, _ in rater_rows], raters_per_item, seed)
            s.bulk_insert_mappings(Assignment, [{"item_id": i, "rater_id": r, "position": p, "done": False} for i, r, p in triples])
            n_raters = len(rater_rows)
            per_rater = len(items) * raters_per_item / n_raters + len(gold_items)
            gold_rate = len(gold_items) / per_rater if per_rater else 0.0
            camp.settings = {**settings, "gold_rate": gold_rate}
            return {"id": camp.id, "name": name, "kind": camp.kind, "items": len(items), "gold": len(gold_items),
                    "assignments": len(triples), "gold_rate": gold_rate}
    except IntegrityError:
        raise CampaignError(f"a campaign named {name!r} already exists") from None


def campaign_overview(engine: Engine) -> list[dict[str, Any]]:
    """Every campaign: name, kind, dataset, runs, regular items, gold items, assignments done / total,
    status (open or closed)."""
    with session_scope(engine) as s:
        out = []
        for c in s.scalars(select(Campaign).order_by(Campaign.id)):
            n_items, n_gold = s.execute(select(func.count(), func.count().filter(CampaignItem.is_gold.is_(True)))
                                        .where(CampaignItem.campaign_id == c.id)).one()
            done, total = s.execute(select(func.count().filter(Assignment.done.is_(True)), func.count())
                                    .join(CampaignItem, CampaignItem.id == Assignment.item_id).where(CampaignItem.campaign_id == c.id)).one()
            run = s.get(Run, c.run_a_id)
            out.append({"name": c.name, "kind": c.kind, "dataset": s.get(Dataset, run.dataset_id).name,
                        "runs": (c.settings or {}).get("runs"), "items": n_items - n_gold, "gold": n_gold, "done": done, "total": total,
                        "raters_per_item": c.raters_per_item, "gold_rate": (c.settings or {}).get("gold_rate"),
                        "status": "closed" if c.closed_at is not None else "open"})
        return out
