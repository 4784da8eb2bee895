"""Does the full liftlab recipe beat naive pasting on real photos? Score the reference releases, the
seed repeats, one ablation per realism component and a centre ellipse, and print the README's tables.

    .venv/bin/python examples/baseline/proof.py [--out runs/proof] [--workers 2]

Runs, with a catalog of its own (``OUT/liftlab.db``):

- ``evalhub import-dataset``: the ECSSD test split (examples/splits/ecssd-test.txt, 208 photos never
  composited into any training set) and all of CCP (1,004 photos of people: a domain shift);
- ``evalhub release add --onnx`` for every release in :data:`RELEASES_USED`: the shipped
  ``liftnet-naive`` and ``liftnet-full`` (seed 0), and under ``examples/releases/proof/`` their
  seed-1 repeats, ``liftnet-all`` (every realism component on, two seeds) and its four ablations
  (one component turned back each, ``examples/baseline/ablations.py``);
  ``evalhub release baseline --method ellipse``;
- ``evalhub score`` of all on both sets, and the ``evalhub compare`` pairs of :data:`COMPARISONS`.

Tables: means with seeded 95 % bootstrap CIs (2,000 resamples of images) of IoU, boundary F1 and
Boundary IoU over images with a subject, ECE (15 equal-width bins) and AURC of the gate over all
images (acceptable: IoU >= 0.8); the paired deltas B - A with their CIs; and the seed-averaged
paired delta full - naive (each image's metric averaged over the two seeds of each recipe, then
paired and bootstrapped over images).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))
from loop import BIN, DATA, RELEASES, sh  # noqa: E402

from evalhub.calibration import aurc, ece  # noqa: E402
from evalhub.stats import bootstrap_mean, bootstrap_statistic  # noqa: E402

PROOF = RELEASES / "proof"
RELEASES_USED = {
    "liftnet-naive": RELEASES / "liftnet-naive",
    "liftnet-naive-s1": PROOF / "liftnet-naive-s1",
    "liftnet-full": RELEASES / "liftnet-full",
    "liftnet-full-s1": PROOF / "liftnet-full-s1",
    "liftnet-full-r2": PROOF / "liftnet-full-r2",
    "liftnet-full-r3": PROOF / "liftnet-full-r3",
    "liftnet-all": PROOF / "liftnet-all",
    "liftnet-all-s1": PROOF / "liftnet-all-s1",
    "liftnet-all-no-harmonization": PROOF / "liftnet-all-no-harmonization",
    "liftnet-all-no-camera": PROOF / "liftnet-all-no-camera",
    "liftnet-all-plate-occluders": PROOF / "liftnet-all-plate-occluders",
    "liftnet-all-no-clean-plates": PROOF / "liftnet-all-no-clean-plates",
    "liftnet-all-no-clean-plates-s1": PROOF / "liftnet-all-no-clean-plates-s1",
}
"""Release name -> folder (model.onnx + release.yaml). ``all``: every realism component on
(ecssd-train-all.yaml); ``all-no-X``: one component off (examples/baseline/ablations.py);
``full``: the default recipe (ecssd-train-full.yaml), i.e. ``all`` without clean plates and without
the soft-alpha edge work; ``full-r2`` and ``full-r3``: ``full``'s recipe and seed on rebuilds by the
renderers of issue 17 (``synth.render.RENDER_VERSION`` 2 and 3)."""
COMPARISONS = (
    ("liftnet-naive", "liftnet-full", "the default recipe, seed 0"),
    ("liftnet-naive-s1", "liftnet-full-s1", "the default recipe, seed 1"),
    ("liftnet-naive", "liftnet-naive-s1", "seed spread, naive"),
    ("liftnet-full", "liftnet-full-s1", "seed spread, full"),
    ("liftnet-full", "liftnet-full-r2", "the same recipe and seed rebuilt by renderer 2 (issue 17)"),
    ("liftnet-full", "liftnet-full-r3", "the same recipe and seed rebuilt by renderer 3 (issue 17: 8-bit noise)"),
    ("liftnet-naive", "liftnet-all", "every component on, seed 0"),
    ("liftnet-all", "liftnet-all-s1", "seed spread, all on"),
    ("liftnet-all-no-harmonization", "liftnet-all", "adding illumination harmonization"),
    ("liftnet-all-no-camera", "liftnet-all", "adding depth of field + sensor noise"),
    ("liftnet-all-plate-occluders", "liftnet-all", "cut-out instead of plate occluders"),
    ("liftnet-all-no-clean-plates", "liftnet-all", "adding clean plates"),
    ("liftnet-all-no-clean-plates", "liftnet-full", "dropping the soft-alpha edge work, seed 0"),
    ("liftnet-all-no-clean-plates-s1", "liftnet-full-s1", "dropping the soft-alpha edge work, seed 1"),
)
"""(A, B, what B - A measures)."""
METRICS = ("iou", "boundary_f1", "boundary_iou")


def table_rows(out: Path, runs: dict[str, tuple[str, str]]) -> list[dict]:
    rows = []
    for run, (release, dataset) in runs.items():
        df = pd.read_parquet(out / "runs" / run / "samples.parquet")
        s = json.loads((out / "runs" / run / "summary.json").read_text())
        row = {"dataset": dataset, "release": release, "n": len(df), "proxy": bool(s["release"].get("confidence_proxy"))}
        for m in METRICS:
            row[m] = s["metrics"][m]
        c, y = df["confidence"].to_numpy(), df["acceptable"].to_numpy()
        row["ece"] = bootstrap_statistic(ece, c, y, n_boot=2000, seed=0)
        row["aurc"] = bootstrap_statistic(aurc, c, y, n_boot=2000, seed=0)
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    fmt = lambda r, k, v="mean": f"{r[k][v]:.3f} [{r[k]['lo']:.3f}, {r[k]['hi']:.3f}]"  # noqa: E731
    lines = ["| test set | release | images | IoU | boundary F1 | Boundary IoU | ECE | AURC |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        star = " (proxy gate)" if r["proxy"] else ""
        lines.append(f"| {r['dataset']} | {r['release']}{star} | {r['n']} | {fmt(r, 'iou')} | {fmt(r, 'boundary_f1')} | "
                     f"{fmt(r, 'boundary_iou')} | {fmt(r, 'ece', 'value')} | {fmt(r, 'aurc', 'value')} |")
    return "\n".join(lines)


def compare_markdown(docs: list[tuple[str, str, str, dict]]) -> str:
    lines = ["| test set | B - A | what it measures | IoU | boundary F1 | Boundary IoU |", "|---|---|---|---|---|---|"]
    for dataset, a, b, what, doc in docs:
        cells = []
        for m in METRICS:
            r = doc["overall"]["metrics"][m]
            mark = " *" if r["lo"] > 0 or r["hi"] < 0 else ""
            cells.append(f"{r['mean']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}]{mark}")
        lines.append(f"| {dataset} | {b} - {a} | {what} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n`*`: the paired 95 % CI excludes zero."


def seed_averaged(out: Path, dataset: str) -> dict[str, dict[str, float]]:
    """Per image, each metric averaged over the two seeds of full minus the same for naive; mean and
    bootstrap CI over images with a subject."""
    def per_image(names: tuple[str, str]) -> pd.DataFrame:
        frames = [pd.read_parquet(out / "runs" / f"{n}-{dataset}" / "samples.parquet").set_index("sample_key") for n in names]
        pos = frames[0]["has_subject"].astype(bool)
        return sum(f.loc[pos[pos].index, list(METRICS)] for f in frames) / len(frames)

    full = per_image(("liftnet-full", "liftnet-full-s1"))
    naive = per_image(("liftnet-naive", "liftnet-naive-s1"))
    d = (full - naive.loc[full.index]).dropna()
    return {m: bootstrap_mean(d[m].to_numpy(), n_boot=2000, seed=0) for m in METRICS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "proof")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    DB = ["--database-url", f"sqlite:///{out / 'liftlab.db'}"]
    W = ["--workers", str(args.workers)]
    sh(BIN / "evalhub", "import-dataset", "ecssd-test", "--images", DATA / "ecssd" / "images", "--masks", DATA / "ecssd" / "masks",
       "--ids", ROOT / "examples" / "splits" / "ecssd-test.txt", *DB)
    sh(BIN / "evalhub", "import-dataset", "ccp", "--images", DATA / "ccp" / "images", "--masks", DATA / "ccp" / "masks",
       "--metadata", DATA / "ccp" / "metadata.csv", *DB)
    for name, folder in RELEASES_USED.items():
        sh(BIN / "evalhub", "release", "add", name, "--onnx", folder / "model.onnx", "--manifest", folder / "release.yaml", *DB)
    runs: dict[str, tuple[str, str]] = {}
    compares = []
    for dataset in ("ecssd-test", "ccp"):
        sh(BIN / "evalhub", "release", "baseline", f"ellipse-{dataset}", "--dataset", dataset, "--method", "ellipse",
           "--out", out / "preds" / f"ellipse-{dataset}", *W, *DB)
        for release in (f"ellipse-{dataset}", *RELEASES_USED):
            short = "ellipse" if release.startswith("ellipse") else release
            run = f"{short}-{dataset}"
            if not (out / "runs" / run / "summary.json").is_file():
                sh(BIN / "evalhub", "score", "--release", release, "--dataset", dataset, "--out", out / "runs" / run, "--no-progress", *W, *DB)
            runs[run] = (short, dataset)
        for a, b, what in COMPARISONS:
            target = out / f"compare-{a}-{b}-{dataset}.json"
            text = sh(BIN / "evalhub", "compare", out / "runs" / f"{a}-{dataset}", out / "runs" / f"{b}-{dataset}", "--out", target, *DB)
            print(text)
            compares.append((dataset, a, b, what, json.loads(target.read_text())))
    md = [markdown(table_rows(out, runs)), "", compare_markdown(compares), ""]
    md += ["| test set | seed-averaged full - naive | IoU | boundary F1 | Boundary IoU |", "|---|---|---|---|---|"]
    for dataset in ("ecssd-test", "ccp"):
        s = seed_averaged(out, dataset)
        md.append(f"| {dataset} | 2 seeds each, {s['iou']['n']} images | "
                  + " | ".join(f"{s[m]['mean']:+.3f} [{s[m]['lo']:+.3f}, {s[m]['hi']:+.3f}]" for m in METRICS) + " |")
    text = "\n".join(md)
    (out / "tables.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
