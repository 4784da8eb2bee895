"""One ablation per realism component: each is ``examples/recipes/ecssd-train-all.yaml`` (every
component on) with that one component turned back to what the naive recipe does, everything else
(sources, seed, size, placement, edges, augmentation) unchanged. The components whose removal
helped on real photos are off in the default ``ecssd-train-full.yaml`` (README, "The reference
release").

    python examples/baseline/ablations.py --list
    python examples/baseline/ablations.py no-camera --out runs/ablations/no-camera.yaml

The written recipe has the all-on recipe's source paths made absolute, so it can live anywhere.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
ALL = ROOT / "examples" / "recipes" / "ecssd-train-all.yaml"

ABLATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "no-harmonization": ("illumination harmonization off (method none)", {"harmonization": {"method": "none"}}),
    "no-clean-plates": (
        "plates cropped as the naive recipe does (any inpainted share, no zoom)",
        {"sources.backgrounds.0": {"max_inpainted_fraction": 1.0, "crop_zoom": [1.0, 1.0]}},
    ),
    "no-camera": (
        "no depth of field and no sensor noise",
        {"camera": {"defocus": {"probability": 0.0}, "sensor_noise": {"probability": 0.0}}},
    ),
    "plate-occluders": ("occluders are plate patches (half-planes) instead of real cut-outs", {"occlusion": {"source": "plate"}}),
}
"""name -> (what it turns off, the overrides merged into the all-on recipe; dotted keys reach into lists)."""


def _merge(doc: dict, key: str, value: Any) -> None:
    node: Any = doc
    parts = key.split(".")
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node[p]
    last = parts[-1]
    target = node[int(last)] if isinstance(node, list) else node.setdefault(last, {})
    if isinstance(value, dict) and isinstance(target, dict):
        for k, v in value.items():
            if isinstance(v, dict) and isinstance(target.get(k), dict):
                _merge(target, k, v)
            else:
                target[k] = v
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def ablation_recipe(name: str) -> dict[str, Any]:
    """The all-on recipe document with ablation ``name`` applied and its name set to
    ``ecssd-train-all-<name>``; source paths made absolute.

    Raises:
        KeyError: unknown ablation (the message lists the known ones).
    """
    if name not in ABLATIONS:
        raise KeyError(f"unknown ablation {name!r}; known: {sorted(ABLATIONS)}")
    doc = copy.deepcopy(yaml.safe_load(ALL.read_text()))
    for key, value in ABLATIONS[name][1].items():
        _merge(doc, key, value)
    doc["name"] = f"ecssd-train-all-{name}"
    base = ALL.parent
    for pools in doc["sources"].values():
        for pool in pools:
            for k in ("images", "masks", "ids", "metadata", "alphas", "cutouts"):
                if k in pool:
                    pool[k] = str((base / pool[k]).resolve())
    return doc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", nargs="?")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    if args.list or not args.name:
        for k, (what, _) in ABLATIONS.items():
            print(f"{k:18s} {what}")
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(yaml.safe_dump(ablation_recipe(args.name), sort_keys=False))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
