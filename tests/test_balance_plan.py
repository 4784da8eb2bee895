"""Quotas hit exact per-cell counts; impossible quotas fail before any work; splits never leak."""

from collections import Counter

import pytest

from synth.balance import QuotaError, balance_report, largest_remainder
from synth.plan import assign_splits, make_plan
from synth.recipe import parse_recipe
from synth.sources import BackgroundItem, ForegroundItem


def test_largest_remainder_by_hand():
    assert largest_remainder([1, 1, 1], 10) == [4, 3, 3]
    assert largest_remainder([0.5, 0.3, 0.2], 7) == [4, 2, 1]  # 3.5, 2.1, 1.4 -> floors 3,2,1 + one to .5
    assert largest_remainder([0, 0], 5) == [0, 0]
    assert sum(largest_remainder([0.123, 0.456, 0.421], 999)) == 999


def test_balance_report_tvd_by_hand():
    rep = balance_report({("a",): 5, ("b",): 5}, {("a",): 7, ("b",): 3}, ["x"])
    assert rep["max_abs_deviation"] == pytest.approx(0.2)
    assert rep["total_variation_distance"] == pytest.approx(0.2)  # 0.5 * (0.2 + 0.2)


def _fg(i, tone, cat):
    return ForegroundItem(
        fg_id=f"p/{i:03d}", pool="p", kind="image_mask", image=f"/x/{i}.jpg", matte=None, photo_key=f"/x/{i}.jpg",
        sha256=str(i), height=10, width=10, attributes={"skin_tone": tone, "category": cat},
    )


def _bgs(n):
    return [
        BackgroundItem(bg_id=f"b/{i}", pool="b", kind="folder", image=f"/bg/{i}.jpg", mask=None, photo_key=f"/bg/{i}.jpg", sha256=str(i), dilate_px=0, inpaint="telea")
        for i in range(n)
    ]


def _recipe(**kw):
    doc = {
        "name": "t", "seed": 5, "n_samples": 100,
        "sources": {"foregrounds": [{"name": "p", "kind": "image_mask", "images": "/x", "masks": "/y"}], "backgrounds": [{"name": "b", "kind": "folder", "images": "/bg"}]},
        "balance": {"columns": ["skin_tone", "category"], "mode": "uniform"},
    }
    doc.update(kw)
    return parse_recipe(doc)


def _population():
    # skewed pool: 40 light/person, 5 dark/person, 20 light/animal, 3 dark/animal
    fgs, i = [], 0
    for tone, cat, n in [("light", "person", 40), ("dark", "person", 5), ("light", "animal", 20), ("dark", "animal", 3)]:
        for _ in range(n):
            fgs.append(_fg(i, tone, cat))
            i += 1
    return fgs


def test_uniform_quota_hits_exact_counts_with_negatives():
    recipe = _recipe(negatives=0.1)
    plan = make_plan(recipe, _population(), _bgs(30))
    pos = [s for s in plan.specs if s.has_subject]
    assert len(plan.specs) == 100 and len(pos) == 90
    counts = Counter(s.cell for s in pos)
    # 90 over 4 cells: 23, 23, 22, 22 (largest remainder, ties to the earlier sorted cell)
    assert sorted(counts.values()) == [22, 22, 23, 23]
    assert counts == Counter(plan.cell_targets)


def test_explicit_quota_proportions():
    cells = [
        {"values": {"skin_tone": "dark", "category": "person"}, "share": 0.5},
        {"values": {"skin_tone": "light", "category": "person"}, "share": 0.3},
        {"values": {"skin_tone": "dark", "category": "animal"}, "share": 0.2},
    ]
    recipe = _recipe(balance={"columns": ["skin_tone", "category"], "mode": "explicit", "cells": cells})
    plan = make_plan(recipe, _population(), _bgs(30))
    counts = Counter(s.cell for s in plan.specs)
    assert counts == {("dark", "person"): 50, ("light", "person"): 30, ("dark", "animal"): 20}


def test_impossible_quota_fails_early_naming_cells():
    fgs = [f for f in _population() if not (f.attributes["skin_tone"] == "dark" and f.attributes["category"] == "animal")]
    with pytest.raises(QuotaError, match="skin_tone=dark, category=animal"):
        make_plan(_recipe(), fgs, _bgs(30))


def test_splits_by_photo_never_leak():
    fgs = _population()
    # backgrounds from the same photos as the foregrounds
    bgs = [BackgroundItem(bg_id=f"b/{f.fg_id}", pool="b", kind="masked", image=f.image, mask=None, photo_key=f.photo_key, sha256="x", dilate_px=0, inpaint="telea") for f in fgs]
    plan = make_plan(_recipe(subjects_per_image={1: 0.5, 2: 0.5}, n_samples=200), fgs, bgs)
    split_of = plan.split_of_photo
    bg_photo = {b.bg_id: b.photo_key for b in bgs}
    fg_photo = {f.fg_id: f.photo_key for f in fgs}
    for s in plan.specs:
        photos = [fg_photo[f] for f in s.fg_ids] + [bg_photo[s.bg_id]]
        assert {split_of[p] for p in photos} == {s.split}
        # a subject is never pasted over its own inpainted photo
        assert bg_photo[s.bg_id] not in {fg_photo[f] for f in s.fg_ids}
    assert Counter(split_of.values()) == {"train": 54, "val": 7, "test": 7}  # 68 photos: 54.4, 6.8, 6.8


def test_assign_splits_exact_sizes_and_order_free():
    keys = [f"k{i}" for i in range(10)]
    a = assign_splits(keys, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=1)
    b = assign_splits(list(reversed(keys)), {"train": 0.8, "val": 0.1, "test": 0.1}, seed=1)
    assert a == b and Counter(a.values()) == {"train": 8, "val": 1, "test": 1}


def test_sample_parameters_depend_only_on_seed_and_index():
    recipe = _recipe()
    a = make_plan(recipe, _population(), _bgs(30)).specs
    b = make_plan(recipe, _population(), _bgs(30)).specs
    assert [s.params for s in a] == [s.params for s in b]
    c = make_plan(_recipe(seed=6), _population(), _bgs(30)).specs
    assert [s.params for s in a] != [s.params for s in c]
