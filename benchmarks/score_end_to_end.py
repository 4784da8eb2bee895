"""End-to-end ``evalhub score`` of real ECSSD predictions. Prints a Markdown table.

    python benchmarks/score_end_to_end.py [--n 1000] [--workers 2] [--repeats 3] [--bin .venv/bin]

Set-up (not timed): a fresh SQLite catalog in a temporary folder, the first ``--n`` ECSSD photos
imported, and a predictions release made from their ground-truth masks (Gaussian-blurred, sigma 2 px,
so every metric has work to do). Timed: the ``evalhub score`` command line, start to exit (process
start, reading, all metrics, calibration, slices with bootstrap CIs, the catalog writes and the
folder exports), ``--repeats`` times into fresh run folders; the median is reported. Because it
drives the command line only, the same script measures an older checkout (``--bin`` of its
virtual environment) on the same data in the same session. Target (issue 12): at most the time
before the catalog redesign (about 14 s for 1,000 photos on 2 cores).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
ECSSD = ROOT.parent / "shared" / "datasets" / "ecssd"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bin", type=Path, default=ROOT / ".venv" / "bin", help="folder with the evalhub executable to measure")
    args = ap.parse_args()
    evalhub = str(args.bin / "evalhub")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        url = ["--database-url", f"sqlite:///{tmp / 'c.db'}"]
        ids = sorted(p.stem for p in (ECSSD / "images").glob("*.jpg"))[: args.n]
        (tmp / "pred" / "masks").mkdir(parents=True)
        for k in ids:
            m = cv2.imread(str(ECSSD / "masks" / f"{k}.png"), cv2.IMREAD_GRAYSCALE)
            cv2.imwrite(str(tmp / "pred" / "masks" / f"{k}.png"), cv2.GaussianBlur(m, (0, 0), 2.0))
        subprocess.run([evalhub, "import-dataset", "ecssd", "--images", str(ECSSD / "images"), "--masks", str(ECSSD / "masks"),
                        "--limit", str(args.n), *url], check=True, capture_output=True)
        subprocess.run([evalhub, "release", "add", "blur", "--predictions", str(tmp / "pred"), *url], check=True, capture_output=True)
        times = []
        for i in range(args.repeats):
            t = time.perf_counter()
            subprocess.run([evalhub, "score", "--release", "blur", "--dataset", "ecssd", "--out", str(tmp / f"run{i}"),
                            "--workers", str(args.workers), "--no-progress", *url], check=True, capture_output=True)
            times.append(time.perf_counter() - t)
    print("| evalhub | photos | workers | median s | runs (s) | photos/s |")
    print("|---|---|---|---|---|---|")
    med = statistics.median(times)
    print(f"| {args.bin} | {args.n} | {args.workers} | {med:.2f} | {', '.join(f'{t:.2f}' for t in times)} | {args.n / med:.1f} |")


if __name__ == "__main__":
    main()
