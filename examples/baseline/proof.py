"""Does the full liftlab recipe beat the naive one? Score both reference releases and the centre
ellipse on real photos and print the README's table.

    .venv/bin/python examples/baseline/proof.py [--out runs/proof] [--workers 2]

Runs, with a catalog of its own (``OUT/liftlab.db``):

- ``evalhub import-dataset``: the ECSSD test split (examples/splits/ecssd-test.txt, 208 photos never
  composited into either training set) and all of CCP (1,004 photos of people: a domain shift);
- ``evalhub release add --onnx``: examples/releases/liftnet-naive, liftnet-edges (the full recipe
  without harmonization: the ablation) and liftnet-full;
  ``evalhub release baseline --method ellipse``: the centre-ellipse prior, a predictions folder;
- ``evalhub score`` of all four on both sets, and ``evalhub compare`` naive -> edges, naive -> full
  and edges -> full on each.

The table gives means with seeded 95 % bootstrap CIs (2,000 resamples of images): IoU, boundary F1
and Boundary IoU over images with a subject; ECE (15 equal-width bins) and AURC of the gate over
all images, with the acceptable label IoU >= 0.8.
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

RELEASE_NAMES = ("liftnet-naive", "liftnet-edges", "liftnet-full")
"""naive recipe; full recipe without harmonization (the ablation); full recipe."""
from evalhub.stats import bootstrap_statistic  # noqa: E402


def table_rows(out: Path, runs: dict[str, tuple[str, str]]) -> list[dict]:
    rows = []
    for run, (release, dataset) in runs.items():
        df = pd.read_parquet(out / "runs" / run / "samples.parquet")
        s = json.loads((out / "runs" / run / "summary.json").read_text())
        row = {"dataset": dataset, "release": release, "n": len(df), "proxy": bool(s["release"].get("confidence_proxy"))}
        for m in ("iou", "boundary_f1", "boundary_iou"):
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
    for name in RELEASE_NAMES:
        sh(BIN / "evalhub", "release", "add", name, "--onnx", RELEASES / name / "model.onnx", "--manifest", RELEASES / name / "release.yaml", *DB)
    runs: dict[str, tuple[str, str]] = {}
    for dataset in ("ecssd-test", "ccp"):
        sh(BIN / "evalhub", "release", "baseline", f"ellipse-{dataset}", "--dataset", dataset, "--method", "ellipse",
           "--out", out / "preds" / f"ellipse-{dataset}", *W, *DB)
        for release in (f"ellipse-{dataset}", *RELEASE_NAMES):
            run = f"{release.split('-')[0] if release.startswith('ellipse') else release}-{dataset}"
            sh(BIN / "evalhub", "score", "--release", release, "--dataset", dataset, "--out", out / "runs" / run, "--no-progress", *W, *DB)
            runs[run] = (release.split("-")[0] if release.startswith("ellipse") else release, dataset)
        for a, b in (("naive", "edges"), ("naive", "full"), ("edges", "full")):
            text = sh(BIN / "evalhub", "compare", out / "runs" / f"liftnet-{a}-{dataset}", out / "runs" / f"liftnet-{b}-{dataset}")
            (out / f"compare-{a}-{b}-{dataset}.txt").write_text(text)
            print(text)
    md = markdown(table_rows(out, runs))
    (out / "table.md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
