"""Split ECSSD by photo id into train / val / test (70 / 10 / 20), seeded, into examples/splits/.

    python examples/baseline/make_split.py [--seed 2026]

A photo's split is decided by the SHA-256 of ``seed:id`` alone, so the split of one photo never
depends on which other photos exist. The test photos are never composited: the reference recipes
take foregrounds and backgrounds from ``ecssd-train.txt`` only.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ECSSD = ROOT.parent / "shared" / "datasets" / "ecssd"
SHARES = (("train", 0.7), ("val", 0.1), ("test", 0.2))


def split_of(photo_id: str, seed: int) -> str:
    """``train``, ``val`` or ``test`` from a uniform number in [0, 1) hashed from ``seed:id``."""
    u = int(hashlib.sha256(f"{seed}:{photo_id}".encode()).hexdigest()[:12], 16) / 16**12
    edge = 0.0
    for name, share in SHARES:
        edge += share
        if u < edge:
            return name
    return SHARES[-1][0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args()
    ids = sorted(p.stem for p in (ECSSD / "images").glob("*.jpg"))
    out = ROOT / "examples" / "splits"
    out.mkdir(parents=True, exist_ok=True)
    for name, _ in SHARES:
        chosen = [i for i in ids if split_of(i, args.seed) == name]
        (out / f"ecssd-{name}.txt").write_text("\n".join(chosen) + "\n")
        print(f"{name}: {len(chosen)} photos -> {out / f'ecssd-{name}.txt'}")


if __name__ == "__main__":
    main()
