"""Harmonization measured on real photos (the iHarmony4 protocol, ``synth.realism``), on all of
ECSSD and CCP: which method beats doing nothing, and the strength the default recipe uses.

    .venv/bin/python benchmarks/harmonization_realism.py [--workers 2] [--fit] [--out runs/realism]

1. ``--fit``: refit the illumination prior on the ECSSD train split and print it next to the shipped
   :data:`synth.harmonize.DEFAULT_PRIOR`.
2. Strength sweep of illumination harmonization on the ECSSD train split (693 photos): the strength
   with the lowest mean fMSE is the recipe default.
3. Every method on held-out photos: the ECSSD val + test splits (307 photos the prior and the
   sweep never saw) and all 1,004 CCP photos (people: a domain shift), with 95 % bootstrap CIs and
   the paired fMSE difference against "none".
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "datasets"

from synth.harmonize import DEFAULT_PRIOR  # noqa: E402
from synth.realism import MethodSpec, evaluate, fit_illumination_prior, iter_photos, markdown_table  # noqa: E402
from synth.sources import read_ids  # noqa: E402

SWEEP = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5)
METHODS = ("none", "illumination@0.1", "illumination@0.5", "reinhard@0.5", "reinhard@1", "histogram@0.5", "histogram@1", "poisson@1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--fit", action="store_true", help="refit the illumination prior on the ECSSD train split")
    ap.add_argument("--limit", type=int, default=None, help="first N photos of each set (a quick look)")
    ap.add_argument("--out", type=Path, default=None, help="also write the tables to OUT/realism.md")
    args = ap.parse_args()
    ecssd = DATA / "ecssd"
    split = {s: read_ids(ROOT / "examples" / "splits" / f"ecssd-{s}.txt") for s in ("train", "val", "test")}
    train = list(iter_photos(ecssd / "images", ecssd / "masks", split["train"], args.limit))
    md = []
    if args.fit:
        t = time.perf_counter()
        prior = fit_illumination_prior(train, DEFAULT_PRIOR.band_fraction, "ECSSD train split")
        print(f"fitted on {prior.n} photos in {time.perf_counter() - t:.1f} s")
        for name in ("intercept", "slope", "residual_sd"):
            print(f"  {name:12s} fitted {tuple(round(v, 6) for v in getattr(prior, name))}  shipped {getattr(DEFAULT_PRIOR, name)}")

    t = time.perf_counter()
    sweep = evaluate(train, [MethodSpec("illumination", s) for s in SWEEP], seed=0, workers=args.workers)
    best = min((s for s in sweep.summaries if s.method != "none"), key=lambda s: s.fmse[0])
    md.append(markdown_table(sweep, f"### Strength sweep, ECSSD train split ({sweep.n_photos} photos, {time.perf_counter() - t:.0f} s)"))
    md.append(f"Lowest mean fMSE: **{best.method}** (the recipe default).\n")
    print(md[-2] + md[-1])

    held_out = {
        "ECSSD val + test": list(iter_photos(ecssd / "images", ecssd / "masks", split["val"] + split["test"], args.limit)),
        "CCP": list(iter_photos(DATA / "ccp" / "images", DATA / "ccp" / "masks", None, args.limit)),
    }
    for name, photos in held_out.items():
        t = time.perf_counter()
        res = evaluate(photos, [MethodSpec.parse(m) for m in METHODS], seed=1, workers=args.workers)
        md.append(markdown_table(res, f"### {name} ({res.n_photos} photos, {time.perf_counter() - t:.0f} s)"))
        print(md[-1])
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "realism.md").write_text("\n".join(md))


if __name__ == "__main__":
    main()
