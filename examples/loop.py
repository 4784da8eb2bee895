"""The whole liftlab loop on real photos, in one command (after ``pip install -e .``):

    .venv/bin/python examples/loop.py [--out runs/loop] [--reduced]

1. ``synth build`` of the demo recipe (examples/recipes/ecssd-demo.yaml);
2. import the real ECSSD test photos (examples/splits/ecssd-test.txt, never composited into any
   training set) and CCP people with their metadata;
3. register the reference releases (examples/releases/liftnet-full and liftnet-naive, ONNX) and
   score the full-recipe release on both sets, and the naive one on ECSSD for a paired comparison;
4. HTML evaluation reports (``evalhub report``, with the comparison) and fairness model cards
   (``fairness report``: CCP's annotated attributes, ECSSD's mask-derived ones);
5. a demo admin and a demo rater, and a rating campaign on the ECSSD run;
6. print where every result is and how to open the rater app.

Every step runs the command-line tool a user would (printed as it runs) against a catalog of its
own, ``OUT/liftlab.db``. ``--reduced`` shrinks every size (CI's end-to-end check).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT.parent / "shared" / "datasets").resolve()
BIN = Path(sys.executable).parent
RELEASES = ROOT / "examples" / "releases"
DEMO_PASSWORDS = {"demo-admin": "demo-admin-password", "demo-rater": "demo-rater-password"}


def sh(*args: object, stdin: str | None = None) -> str:
    """Run one liftlab command, echo it, fail loudly with its output."""
    cmd = [str(a) for a in args]
    shown = " ".join(shlex.quote(c) for c in [Path(cmd[0]).name, *cmd[1:]])
    print(f"$ {shown}", flush=True)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, input=stdin, text=True, capture_output=True, cwd=ROOT)
    if res.returncode != 0:
        sys.stderr.write(res.stdout[-4000:] + res.stderr[-4000:])
        raise SystemExit(f"step failed ({res.returncode}): {shown}")
    print(f"  ({time.perf_counter() - t0:.1f} s)", flush=True)
    return res.stdout


def reduced_recipe(out: Path) -> Path:
    """The demo recipe at 16 samples of 128x128 (absolute source paths), for --reduced."""
    src = ROOT / "examples" / "recipes" / "ecssd-demo.yaml"
    doc = yaml.safe_load(src.read_text())
    for pool in doc["sources"]["foregrounds"] + doc["sources"]["backgrounds"]:
        for k in ("images", "masks"):
            pool[k] = str((src.parent / pool[k]).resolve())
        pool["limit"] = 40
    doc.update(name="ecssd-demo-reduced", n_samples=16)
    doc["output"]["size"] = [128, 128]
    path = out / "ecssd-demo-reduced.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "loop")
    ap.add_argument("--reduced", action="store_true", help="tiny sizes everywhere (the CI check)")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--releases", type=Path, default=RELEASES, help="folder with liftnet-full/ and liftnet-naive/")
    args = ap.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    db_url = f"sqlite:///{out / 'liftlab.db'}"
    DB = ["--database-url", db_url]
    W = ["--workers", str(args.workers)] if args.workers else []
    limit = ["--limit", "24"] if args.reduced else []
    t0 = time.perf_counter()

    recipe = reduced_recipe(out) if args.reduced else ROOT / "examples" / "recipes" / "ecssd-demo.yaml"
    build = out / "synth" / "ecssd-demo"
    sh(BIN / "synth", "build", "--recipe", recipe, "--out", build, "--overwrite", "--no-progress", *W, *DB)

    sh(BIN / "evalhub", "import-dataset", "ecssd-test", "--images", DATA / "ecssd" / "images", "--masks", DATA / "ecssd" / "masks",
       "--ids", ROOT / "examples" / "splits" / "ecssd-test.txt", *limit, *DB)
    sh(BIN / "evalhub", "import-dataset", "ccp", "--images", DATA / "ccp" / "images", "--masks", DATA / "ccp" / "masks",
       "--metadata", DATA / "ccp" / "metadata.csv", *limit, *DB)
    for name in ("liftnet-full", "liftnet-naive"):
        rel = args.releases / name
        sh(BIN / "evalhub", "release", "add", name, "--onnx", rel / "model.onnx", "--manifest", rel / "release.yaml", *DB)
    runs = {
        "full-ecssd": ("liftnet-full", "ecssd-test"),
        "naive-ecssd": ("liftnet-naive", "ecssd-test"),
        "full-ccp": ("liftnet-full", "ccp"),
    }
    for run, (release, dataset) in runs.items():
        sh(BIN / "evalhub", "score", "--release", release, "--dataset", dataset, "--out", out / "runs" / run, "--no-progress", *W, *DB)
    compare = sh(BIN / "evalhub", "compare", out / "runs" / "naive-ecssd", out / "runs" / "full-ecssd", *DB)
    (out / "compare-naive-vs-full.txt").write_text(compare)
    sh(BIN / "evalhub", "report", out / "runs" / "full-ecssd", "--compare", out / "runs" / "naive-ecssd", *DB)
    sh(BIN / "evalhub", "report", out / "runs" / "full-ccp", *DB)
    min_n = ["--min-n", "5"] if args.reduced else []
    sh(BIN / "fairness", "report", "--run", out / "runs" / "full-ccp", "--out", out / "fairness" / "ccp",
       "--attributes", "bottom_garment,carries_bag,headwear", "--intersections", "bottom_garment*carries_bag", *min_n, *DB)
    sh(BIN / "fairness", "report", "--run", out / "runs" / "full-ecssd", "--out", out / "fairness" / "ecssd", *min_n, *DB)
    sh(BIN / "fairness", "audit", "--dataset", "ecssd-demo-reduced" if args.reduced else "ecssd-demo", *DB)

    for user, role in (("demo-admin", "admin"), ("demo-rater", "rater")):
        listing = sh(BIN / "raters", "user", "list", *DB)
        if not any(line.split()[:1] == [user] for line in listing.splitlines()):
            sh(BIN / "raters", "user", "add", user, "--role", role, "--password-stdin", *DB, stdin=DEMO_PASSWORDS[user] + "\n")
    campaigns = sh(BIN / "raters", "campaign", "list", *DB)
    if not any(line.split()[:1] == ["demo"] for line in campaigns.splitlines()):
        sh(BIN / "raters", "campaign", "create", "demo", "--run", out / "runs" / "full-ecssd", "--items", "8" if args.reduced else "30",
           "--raters-per-item", "1", "--raters", "demo-rater", *DB)

    minutes = (time.perf_counter() - t0) / 60
    print(f"""
The loop finished in {minutes:.1f} minutes. Results under {out}:
  synthetic training set      {build}/ (build_report.md, manifest.parquet)
  evaluation, ECSSD test      {out / 'runs' / 'full-ecssd' / 'report.html'}  (with the naive release compared)
  evaluation, CCP people      {out / 'runs' / 'full-ccp' / 'report.html'}
  naive vs full (paired)      {out / 'compare-naive-vs-full.txt'}
  fairness model cards        {out / 'fairness' / 'ccp' / 'model_card.html'}, {out / 'fairness' / 'ecssd' / 'model_card.html'}
  catalog                     {out / 'liftlab.db'}
Open the rater app:
  {BIN / 'raters'} serve --database-url {db_url}
  then http://127.0.0.1:8501, log in as demo-rater / {DEMO_PASSWORDS['demo-rater']} (rate)
  or demo-admin / {DEMO_PASSWORDS['demo-admin']} (progress and results). Demo passwords: change them for real use.""")


if __name__ == "__main__":
    main()
