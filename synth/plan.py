"""The build plan: which subjects, background and parameters every sample gets.

The plan is a pure function of the recipe and the scanned sources. Splits, quotas and subject
assignment use generators seeded by ``(seed, purpose)``; everything sampled for one sample uses
``numpy.random.default_rng([seed, index])`` only, so a sample is the same whatever the worker count,
executor or resume point.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from synth.balance import QuotaError, cell_of, check_feasible, largest_remainder, target_shares
from synth.recipe import Recipe
from synth.sources import BackgroundItem, ForegroundItem

SPLITS = ("train", "val", "test")
_PURPOSE_CELL_ORDER, _PURPOSE_SHUFFLE = 1, 2
_PURPOSE_REALISM = 1  # third seed word of a sample's second generator


@dataclass
class SampleSpec:
    """Everything needed to render one sample (JSON-able ``params``)."""

    index: int
    sample_id: str
    split: str
    fg_ids: list[str]
    bg_id: str
    cell: tuple[str, ...] | None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def has_subject(self) -> bool:
        return bool(self.fg_ids)


@dataclass
class Plan:
    specs: list[SampleSpec]
    split_of_photo: dict[str, str]
    cell_targets: dict[tuple[str, ...], int]
    columns: list[str]


def assign_splits(photo_keys: list[str], fractions: dict[str, float], seed: int) -> dict[str, str]:
    """Assign each source photo to a split.

    A photo's key is the SHA-256 of its file's bytes (:attr:`synth.sources.ForegroundItem.photo_key`),
    so a foreground and a background from the same photo, and byte-identical photos under two names,
    share a split (no leak between train and val). Photos are ordered by SHA-256 of
    ``"{seed}:{key}"`` and cut into consecutive runs of largest-remainder sizes, so the split sizes
    are exact and a photo's split does not depend on the order of the folders.
    """
    keys = sorted(set(photo_keys), key=lambda k: hashlib.sha256(f"{seed}:{k}".encode()).hexdigest())
    counts = largest_remainder([fractions[s] for s in SPLITS], len(keys))
    out: dict[str, str] = {}
    pos = 0
    for split, n in zip(SPLITS, counts):
        for k in keys[pos : pos + n]:
            out[k] = split
        pos += n
    return out


def _uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    lo, hi = lo_hi
    return float(lo if lo == hi else rng.uniform(lo, hi))


def make_plan(recipe: Recipe, fgs: list[ForegroundItem], bgs: list[BackgroundItem]) -> Plan:
    """Plan every sample of a build.

    Positives: per-cell counts by largest remainder of the target shares (exact, not in
    expectation); each cell's count is spread over the splits that hold its subjects, in
    proportion to the split fractions; within (cell, split) subjects are used round-robin in a
    seeded order, so reuse is even. Negatives (background only) are spread over splits the same way.
    The sample order is a seeded shuffle of all slots.

    Raises:
        QuotaError: a cell with a target and no usable subject, a split with samples but no
            background, or no usable subject at all while positives are asked for.
    """
    seed = recipe.seed
    columns = list(recipe.balance.columns)
    fractions = recipe.splits.as_dict()
    # photos that give a background are split on their own, then the subject-only ones, so every
    # split with a share gets its share of backgrounds whenever there are enough of them
    bg_keys = {b.photo_key for b in bgs}
    split_of = assign_splits(sorted(bg_keys), fractions, seed)
    split_of.update(assign_splits(sorted({f.photo_key for f in fgs} - bg_keys), fractions, seed))
    fg_by_id = {f.fg_id: f for f in fgs}
    bgs_by_split: dict[str, list[BackgroundItem]] = defaultdict(list)
    for b in bgs:
        bgs_by_split[split_of[b.photo_key]].append(b)
    if recipe.n_samples:
        empty = [s for s in SPLITS if fractions[s] > 0 and not bgs_by_split.get(s)]
        if empty:
            n_photos = len({b.photo_key for b in bgs})
            raise QuotaError(
                f"splits {fractions}: no background photo falls in {empty} ({n_photos} distinct background photo(s) for "
                f"{len(set(split_of))} photos in all), so those splits would get nothing; use more backgrounds or set their "
                "fractions to 0")

    n_neg = int(round(recipe.n_samples * recipe.negatives))
    n_pos = recipe.n_samples - n_neg
    if n_pos > 0 and not fgs:
        raise QuotaError("no usable foreground is left after quarantine")

    # cells -> split -> fg ids
    pool: dict[tuple[str, ...], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for f in fgs:
        c = cell_of(f.attributes, columns)
        if c is not None and bgs_by_split.get(split_of[f.photo_key]):
            pool[c][split_of[f.photo_key]].append(f.fg_id)
    observed = [cell_of(f.attributes, columns) for f in fgs]
    shares = target_shares(
        columns, recipe.balance.mode, [(c.values, c.share) for c in recipe.balance.cells], [c for c in observed if c]
    )
    cells = sorted(shares)
    counts = largest_remainder([shares[c] for c in cells], n_pos) if cells else []
    targets = dict(zip(cells, counts))
    if n_pos > 0:
        if not targets:
            raise QuotaError(f"balance columns {columns}: no foreground has values for all of them")
        check_feasible(targets, {c: sum(len(v) for v in pool[c].values()) for c in pool}, columns)

    slots: list[tuple[str, tuple[str, ...] | None, str | None]] = []
    for ci, cell in enumerate(cells):
        by_split = pool[cell]
        live = [s for s in SPLITS if by_split.get(s)]
        per_split = largest_remainder([fractions[s] if fractions[s] > 0 else 0.0 for s in live], targets[cell])
        if sum(per_split) < targets[cell]:  # only splits with zero fraction hold this cell
            per_split = largest_remainder([1.0] * len(live), targets[cell])
        for s, n in zip(live, per_split):
            ids = sorted(by_split[s])
            order = np.random.default_rng([seed, _PURPOSE_CELL_ORDER, ci, SPLITS.index(s)]).permutation(len(ids))
            slots.extend((s, cell, ids[order[i % len(ids)]]) for i in range(n))
    if n_neg:
        live = [s for s in SPLITS if bgs_by_split.get(s)]
        if not live:
            raise QuotaError("negatives are asked for but no background is usable")
        per_split = largest_remainder([fractions[s] for s in live], n_neg)
        if sum(per_split) < n_neg:
            per_split = largest_remainder([1.0] * len(live), n_neg)
        for s, n in zip(live, per_split):
            slots.extend((s, None, None) for _ in range(n))
    order = np.random.default_rng([seed, _PURPOSE_SHUFFLE]).permutation(len(slots))
    fgs_by_split: dict[str, list[str]] = defaultdict(list)
    for f in sorted(fgs, key=lambda f: f.fg_id):
        fgs_by_split[split_of[f.photo_key]].append(f.fg_id)

    specs = []
    for index, slot_i in enumerate(order):
        split, cell, primary = slots[slot_i]
        rng = np.random.default_rng([seed, index])
        specs.append(
            _sample_spec(recipe, index, split, cell, primary, rng, fg_by_id, fgs_by_split[split], bgs_by_split[split])
        )
    return Plan(specs=specs, split_of_photo=split_of, cell_targets=targets, columns=columns)


def anchor_sides(touch: tuple[str, ...]) -> list[str]:
    """Output borders a subject is pinned to, so the straight cut where its photo ended lies on the
    frame instead of showing mid-image: ``bottom`` (else ``top``) when it touches one of them, and
    ``left`` or ``right`` when it touches exactly one of those."""
    out = []
    if "bottom" in touch:
        out.append("bottom")
    elif "top" in touch:
        out.append("top")
    horiz = [s for s in ("left", "right") if s in touch]
    if len(horiz) == 1:
        out.append(horiz[0])
    return out


def _sample_spec(
    recipe: Recipe, index: int, split: str, cell, primary: str | None, rng: np.random.Generator,
    fg_by_id: dict[str, ForegroundItem], split_fgs: list[str], split_bgs: list[BackgroundItem],
) -> SampleSpec:
    """Draw every random choice of one sample from its own generator, in a fixed order."""
    p: dict[str, Any] = {}
    fg_ids: list[str] = []
    if primary is not None:
        ks = list(recipe.subjects_per_image)
        k = int(ks[rng.choice(len(ks), p=np.asarray(list(recipe.subjects_per_image.values())))])
        fg_ids = [primary]
        others = [f for f in split_fgs if fg_by_id[f].photo_key != fg_by_id[primary].photo_key]
        for _ in range(k - 1):
            if not others:
                break
            fg_ids.append(others[int(rng.integers(len(others)))])
    used = {fg_by_id[f].photo_key for f in fg_ids}
    cand = [b for b in split_bgs if b.photo_key not in used] or list(split_bgs)
    if not cand:
        raise QuotaError(f"split {split!r} has samples but no usable background")
    bg = cand[int(rng.integers(len(cand)))]
    p["bg_offset_x"], p["bg_offset_y"] = float(rng.uniform()), float(rng.uniform())

    n = len(fg_ids)
    pl = recipe.placement
    depth = rng.permutation(n).tolist() if n else []
    slots = rng.permutation(n).tolist() if n else []
    p["subject_depth"] = depth  # back-to-front rank of each subject in fg_ids
    p["subject_scale"], p["subject_rotation_deg"], p["subject_center_x"], p["subject_center_y"] = [], [], [], []
    p["subject_anchor"] = [anchor_sides(fg_by_id[f].touch_sides) for f in fg_ids]
    for j in range(n):
        shrink = 1.0 / np.sqrt(n)
        p["subject_scale"].append(_uniform(rng, pl.scale) * shrink)
        rot = _uniform(rng, pl.rotation_deg)
        p["subject_rotation_deg"].append(0.0 if p["subject_anchor"][j] else rot)
        lo, hi = pl.center_x
        if n > 1:  # spread several subjects over equal slots of a widened range
            lo, hi = min(lo, 0.2), max(hi, 0.8)
            width = (hi - lo) / n
            lo, hi = lo + slots[j] * width, lo + (slots[j] + 1) * width
        p["subject_center_x"].append(_uniform(rng, (lo, hi)))
        p["subject_center_y"].append(_uniform(rng, pl.center_y))

    occ = recipe.occlusion
    p["occluded"] = bool(n > 0 and occ.probability > 0 and rng.uniform() < occ.probability)
    if p["occluded"]:
        p["occlusion_coverage"] = _uniform(rng, occ.coverage)
        p["occlusion_angle_deg"] = float(rng.uniform(0, 360))
        p["occlusion_side"] = float(rng.uniform())
        plate = [b for b in split_bgs if b.bg_id != bg.bg_id and b.photo_key not in used] or [bg]
        occluder_bg_id = plate[int(rng.integers(len(plate)))].bg_id
        occluder_offsets = float(rng.uniform()), float(rng.uniform())
        if occ.source == "plate":
            p["occluder_bg_id"] = occluder_bg_id
            p["occluder_offset_x"], p["occluder_offset_y"] = occluder_offsets

    h = recipe.harmonization
    p["harmonization_method"] = h.method
    p["harmonization_strength"] = _uniform(rng, h.strength)

    aug = recipe.augment
    cj = aug.color_jitter
    p["brightness"] = _uniform(rng, (1 - cj.brightness, 1 + cj.brightness))
    p["contrast"] = _uniform(rng, (1 - cj.contrast, 1 + cj.contrast))
    p["saturation"] = _uniform(rng, (1 - cj.saturation, 1 + cj.saturation))
    p["hue_deg"] = _uniform(rng, (-cj.hue_deg, cj.hue_deg))
    p["blur_sigma"] = _uniform(rng, aug.blur.sigma) if rng.uniform() < aug.blur.probability else 0.0
    p["noise_sigma"] = _uniform(rng, aug.noise.sigma) if rng.uniform() < aug.noise.probability else 0.0
    lo, hi = aug.jpeg_quality
    p["jpeg_quality"] = int(rng.integers(lo, hi + 1))
    p["noise_seed"] = int(rng.integers(0, 2**62))
    _realism_params(recipe, index, p, n, bg, fg_ids, fg_by_id, split_fgs)
    return SampleSpec(index=index, sample_id=f"{index:07d}", split=split, fg_ids=fg_ids, bg_id=bg.bg_id, cell=cell, params=p)


def split_counts(specs: list[SampleSpec]) -> dict[str, int]:
    """Number of samples per split."""
    c = Counter(s.split for s in specs)
    return {s: c.get(s, 0) for s in SPLITS}


def _realism_params(
    recipe: Recipe, index: int, p: dict[str, Any], n: int, bg: BackgroundItem, fg_ids: list[str],
    fg_by_id: dict[str, ForegroundItem], split_fgs: list[str],
) -> None:
    """Parameters of the plate crop, cut-out occluders and camera effects, drawn from their own
    generator ``default_rng([seed, index, 1])`` so the draws above (and every older recipe's
    samples) stay as they were. Only what a recipe turns on is drawn and recorded."""
    rng = np.random.default_rng([recipe.seed, index, _PURPOSE_REALISM])
    if bg.clean_crops:
        p["bg_zoom"] = _uniform(rng, bg.crop_zoom)
    occ = recipe.occlusion
    if p.get("occluded") and occ.source == "cutout":
        used = {fg_by_id[f].photo_key for f in fg_ids}
        others = [f for f in split_fgs if fg_by_id[f].photo_key not in used]
        if others:
            p["occluder_fg_id"] = others[int(rng.integers(len(others)))]
            p["occluder_scale"] = _uniform(rng, occ.cutout_scale)
            p["occluder_rotation_deg"] = _uniform(rng, recipe.placement.rotation_deg)
        else:  # a pool of one photo: nothing else to occlude with
            p["occluded"] = False
    cam = recipe.camera
    h, w = recipe.output.size
    diag = float(np.hypot(h, w))
    if cam.defocus.probability > 0:
        on = rng.uniform() < cam.defocus.probability
        p["defocus_radius_px"] = _uniform(rng, cam.defocus.radius) * diag if on else 0.0
    if cam.sensor_noise.probability > 0:
        on = rng.uniform() < cam.sensor_noise.probability
        p["sensor_shot"] = _uniform(rng, cam.sensor_noise.shot) if on else 0.0
        p["sensor_read"] = _uniform(rng, cam.sensor_noise.read) if on else 0.0
    if cam.shadow.probability > 0 and n > 0:
        on = rng.uniform() < cam.shadow.probability
        p["shadow_opacity"] = _uniform(rng, cam.shadow.opacity) if on else 0.0
        p["shadow_blur"] = _uniform(rng, cam.shadow.blur)
        p["shadow_offset"] = _uniform(rng, cam.shadow.offset)
