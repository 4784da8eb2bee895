"""Upsamplers for one release on the same photos, with paired CIs. Prints Markdown tables.

    python benchmarks/upsamplers.py [--release examples/releases/liftnet-full] [--matting-n 60]

The release runs once per photo (ONNX, its own 256 x 256 input); its probability map, cut to the
photo's window, is brought to the photo's size by each upsampler of :mod:`evalhub.upsample`:
``bilinear`` (the baseline), ``guided`` at two settings, and ``matting`` (closed-form matting by
pymatting on a trimap from the bilinear map; slow, so on the first ``--matting-n`` photos).

- ECSSD test split (``examples/splits/ecssd-test.txt``, the photos the release never trained on)
  and the first ``--ccp-n`` CCP people photos: IoU, boundary F1 (DAVIS) and Boundary IoU against
  the ground-truth masks; per method the mean and the paired difference to bilinear with its 95 %
  bootstrap CI (``evalhub.stats.paired_bootstrap``, 10,000 resamples, seed 0).
- The lemur photo with its true alpha: SAD, MSE and gradient error over its trimap's unknown region.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "datasets"

from evalhub import metrics as M  # noqa: E402
from evalhub.releases import OnnxRelease, load_manifest  # noqa: E402
from evalhub.stats import paired_bootstrap  # noqa: E402
from evalhub.upsample import UpsampleSpec, upsample  # noqa: E402
from synth.io import read_binary_mask, read_rgb  # noqa: E402

SPECS = (
    UpsampleSpec(),
    UpsampleSpec(method="guided", radius=1, eps=1e-4),
    UpsampleSpec(method="guided", radius=2, eps=1e-3),
    UpsampleSpec(method="matting"),
)


def low_res_maps(rel: OnnxRelease, photos: list[np.ndarray]) -> list[np.ndarray]:
    """The release's probability maps at its output resolution, cut to each photo's window."""
    return [np.ascontiguousarray(m) for m, _ in rel.predict_maps(photos)]


def mask_table(name: str, rel: OnnxRelease, ids: list[str], images: Path, masks: Path, matting_n: int) -> None:
    photos = [read_rgb(images / f"{k}.jpg") for k in ids]
    gts = [read_binary_mask(masks / f"{k}.png") for k in ids]
    lows = low_res_maps(rel, photos)
    scores: dict[str, dict[str, np.ndarray]] = {}
    seconds: dict[str, float] = {}
    for spec in SPECS:
        n = len(ids) if spec.method != "matting" else min(matting_n, len(ids))
        rows = []
        t = time.perf_counter()
        for low, photo, gt in zip(lows[:n], photos[:n], gts[:n]):
            pred = upsample(low, photo, spec) >= 0.5
            rows.append((M.iou(pred, gt), M.boundary_f1(pred, gt)["boundary_f1"], M.boundary_iou(pred, gt)))
        seconds[spec.label()] = (time.perf_counter() - t) / n
        scores[spec.label()] = np.array(rows)
    base = scores[SPECS[0].label()]
    print(f"\n**{name}** ({len(ids)} photos; matting on the first {min(matting_n, len(ids))})\n")
    print("| upsampler | n | IoU | boundary F1 | Boundary IoU | d IoU vs bilinear [95% CI] | d boundary F1 [95% CI] | d Boundary IoU [95% CI] | ms/photo |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, s in scores.items():
        deltas = [paired_bootstrap(s[:, j] - base[: len(s), j], n_boot=10_000) for j in range(3)]
        cells = " | ".join(f"{d['mean']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}]" for d in deltas)
        print(f"| {label} | {len(s)} | {s[:, 0].mean():.4f} | {s[:, 1].mean():.4f} | {s[:, 2].mean():.4f} | {cells} | {1000 * seconds[label]:.0f} |", flush=True)


def lemur_table(rel: OnnxRelease) -> None:
    photo = read_rgb(DATA / "lemur" / "lemur.png")
    alpha = cv2.imread(str(DATA / "lemur" / "lemur_alpha.png"), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
    trimap = cv2.imread(str(DATA / "lemur" / "lemur_trimap.png"), cv2.IMREAD_GRAYSCALE)
    low = low_res_maps(rel, [photo])[0]
    print("\n**lemur** (true alpha; errors over the trimap's unknown region)\n")
    print("| upsampler | SAD (/1000) | MSE | gradient error (/1000) | boundary F1 |")
    print("|---|---|---|---|---|")
    for spec in SPECS:
        up = upsample(low, photo, spec)
        print(f"| {spec.label()} | {M.sad(up, alpha, trimap):.2f} | {M.mse(up, alpha, trimap):.4f} | "
              f"{M.gradient_error(up, alpha, trimap):.2f} | {M.boundary_f1(up >= 0.5, alpha >= 0.5)['boundary_f1']:.4f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--release", type=Path, default=ROOT / "examples" / "releases" / "liftnet-full")
    ap.add_argument("--matting-n", type=int, default=60)
    ap.add_argument("--ccp-n", type=int, default=200)
    args = ap.parse_args()
    rel = OnnxRelease(args.release / "model.onnx", load_manifest(args.release / "release.yaml"))
    print(f"Release {args.release.name}, upsampled by each method from its {rel.manifest.input.size[0]} px maps.")
    ids = (ROOT / "examples" / "splits" / "ecssd-test.txt").read_text().split()
    mask_table("ECSSD test split", rel, ids, DATA / "ecssd" / "images", DATA / "ecssd" / "masks", args.matting_n)
    ccp = sorted(p.stem for p in (DATA / "ccp" / "images").glob("*.jpg"))[: args.ccp_n]
    if ccp:
        mask_table("CCP people", rel, ccp, DATA / "ccp" / "images", DATA / "ccp" / "masks", args.matting_n)
    lemur_table(rel)


if __name__ == "__main__":
    main()
