"""evalhub metric throughput and ONNX scoring overhead. Prints Markdown tables.

    python benchmarks/metrics_throughput.py [--n512 300] [--n1024 100] [--rounds 3] [--onnx-images 64]

1. The per-image mask metric set (IoU, Dice, precision, recall, DAVIS boundary F1, Boundary IoU,
   MAE) on real ECSSD masks resized to 512x512 and 1024x1024 (nearest), against perturbed soft
   predictions (random erosion or dilation, a random shift, Gaussian blur, speckle noise). Both
   run on one core (OpenCV and BLAS single-threaded) in the same process:
   - liftlab: ``evalhub.metrics.image_metrics``;
   - the public reference code as its users run it: the DAVIS 2017 boundary F and IoU through the
     ``vos-benchmark`` package from PyPI (``Evaluator.feed_frame``: ``_seg2bmap``, ``cv2.dilate``
     with skimage's ``disk``), Boundary IoU through the Boundary IoU API's own OpenCV calls
     (``cv2.erode`` with a 3x3 kernel ``d`` times, dilation ratio 0.02), and NumPy for Dice,
     precision, recall and MAE. ``vos-benchmark`` is a benchmark-only install,
     ``pip install --no-deps vos-benchmark`` (its declared ``opencv-python`` would shadow the
     project's ``opencv-python-headless``); nothing of it is copied into liftlab.
   Each metric group is timed against its reference (liftlab's group timings each pay for their own
   mask packing, which the whole set shares), then the whole set from the soft map. Each side runs
   ``--rounds`` alternating passes and the best counts (shared, noisy machines). The largest
   absolute difference between the two over every image and metric is printed.
   Target (issue 15): >= 10x the reference at 1024 with equal values.
2. ONNX scoring overhead: ``OnnxRelease.predict`` (preprocessing, batching, activation, undoing the
   resize) against bare ``InferenceSession.run`` on the same preprocessed batches, on a small
   convolutional encoder-decoder (random weights, 320x320 input, two widths) built here with
   ``onnx.helper``. Target: <= 10 % overhead. The overhead is a fixed cost per image, so its share
   shrinks as the model grows.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ECSSD = ROOT.parent / "shared" / "datasets" / "ecssd"

from evalhub import metrics  # noqa: E402
from evalhub.metrics import image_metrics  # noqa: E402

KEYS = ("iou", "dice", "precision", "recall", "boundary_f1", "boundary_iou", "mae")


# ---------------------------------------------------------------------------- the plain reference

def ref_davis(pred, gt):
    """IoU and boundary F as ``vos-benchmark`` computes them (``Evaluator.feed_frame``)."""
    from vos_benchmark.evaluator import Evaluator

    ev = Evaluator(boundary=0.008)
    ev.feed_frame(pred.astype(np.uint8), gt.astype(np.uint8))
    return {"iou": ev.object_iou[1][-1], "boundary_f1": ev.boundary_f[1][-1]}


def ref_boundary_iou(pred, gt, dilation_ratio=0.02):
    """Boundary IoU through the Boundary IoU API's own OpenCV calls (``mask_to_boundary``)."""
    def mask_to_boundary(mask):
        h, w = mask.shape
        d = max(1, int(round(dilation_ratio * np.sqrt(h ** 2 + w ** 2))))
        new_mask = cv2.copyMakeBorder(mask, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
        eroded = cv2.erode(new_mask, np.ones((3, 3), dtype=np.uint8), iterations=d)[1 : h + 1, 1 : w + 1]
        return mask - eroded

    bp, bg = mask_to_boundary(pred.astype(np.uint8)), mask_to_boundary(gt.astype(np.uint8))
    union = ((bg + bp) > 0).sum()
    return {"boundary_iou": ((bg * bp) > 0).sum() / union if union else 1.0}


def ref_numpy(prob, pred, gt):
    """Dice, precision, recall and MAE in plain NumPy."""
    tp = np.sum(pred & gt)
    fp = np.sum(pred & ~gt)
    fn = np.sum(~pred & gt)
    return {"dice": 2 * tp / (2 * tp + fp + fn), "precision": tp / (tp + fp) if tp + fp else 1.0,
            "recall": tp / (tp + fn) if tp + fn else 1.0, "mae": np.mean(np.abs(prob - gt))}


def ref_metrics(prob, gt):
    """The public reference code (see the module docstring) on one image."""
    pred = prob >= 0.5
    return {**ref_davis(pred, gt), **ref_boundary_iou(pred, gt), **ref_numpy(prob, pred, gt)}


# ---------------------------------------------------------------------------- data

def load_pairs(n, size, seed=0):
    rng = np.random.default_rng(seed)
    paths = sorted((ECSSD / "masks").glob("*.png"))[:n]
    pairs = []
    for p in paths:
        m = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        gt = cv2.resize(m, (size, size), interpolation=cv2.INTER_NEAREST) > 127
        k = int(rng.integers(1, max(2, size // 40)))
        pm = (cv2.dilate if rng.random() < 0.5 else cv2.erode)(gt.astype(np.uint8) * 255, np.ones((k, k), np.uint8))
        dx, dy = rng.integers(-size // 100, size // 100 + 1, 2)
        pm = cv2.warpAffine(pm, np.float32([[1, 0, dx], [0, 1, dy]]), (size, size))
        prob = cv2.GaussianBlur(pm.astype(np.float32) / 255, (0, 0), 1 + size / 512)
        prob = np.clip(prob + (rng.random(prob.shape, dtype=np.float32) < 0.001) * 0.6, 0, 1)
        if gt.any():
            pairs.append((prob.astype(np.float32), gt))
    return pairs


def _best_rates(mine, theirs, items, rounds):
    """Images per second of ``mine`` and ``theirs`` over ``items``: the best of ``rounds``
    alternating passes each."""
    best = [math.inf, math.inf]
    for _ in range(rounds):
        for side, fn in enumerate((mine, theirs)):
            t = time.perf_counter()
            for item in items:
                fn(*item)
            best[side] = min(best[side], time.perf_counter() - t)
    return len(items) / best[0], len(items) / best[1]


GROUPS = (
    # (label, liftlab call, reference call); both get (prob, pred, gt)
    ("IoU + boundary F1 (vos-benchmark feed_frame)",
     lambda prob, pred, gt: (metrics.region_metrics(pred, gt), metrics.boundary_f1(pred, gt)),
     lambda prob, pred, gt: ref_davis(pred, gt)),
    ("Boundary IoU (Boundary IoU API calls)",
     lambda prob, pred, gt: metrics.boundary_iou(pred, gt),
     lambda prob, pred, gt: ref_boundary_iou(pred, gt)),
    ("Dice, precision, recall, MAE (NumPy)",
     lambda prob, pred, gt: (metrics.region_metrics(pred, gt), metrics.mae(prob, gt)),
     lambda prob, pred, gt: ref_numpy(prob, pred, gt)),
)


def bench_metrics(n, size, rounds):
    """Rows ``(label, images, liftlab img/s, reference img/s)`` for each metric group and the
    whole set, timed in alternating best-of-``rounds`` passes, and the largest value difference."""
    pairs = load_pairs(n, size)
    ours = [image_metrics(p, g) for p, g in pairs]
    refs = [ref_metrics(p, g) for p, g in pairs]
    diff = max(abs(float(o[k]) - float(r[k])) for o, r in zip(ours, refs) for k in KEYS)
    triples = [(p, p >= 0.5, g) for p, g in pairs]
    rows = []
    for label, mine, theirs in GROUPS:
        rows.append((label, len(pairs), *_best_rates(mine, theirs, triples, rounds)))
    rows.append(("**whole set** (from the soft map)", len(pairs), *_best_rates(image_metrics, ref_metrics, pairs, rounds)))
    return rows, diff


# ---------------------------------------------------------------------------- ONNX

def build_model(path, size=320, width=1):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits, nodes = [], []

    def conv(name, x, cin, cout, stride=1, act=True):
        w = (rng.standard_normal((cout, cin, 3, 3)) * math.sqrt(2 / (9 * cin))).astype(np.float32)
        inits.append(numpy_helper.from_array(w, name + "_w"))
        inits.append(numpy_helper.from_array(np.zeros(cout, np.float32), name + "_b"))
        nodes.append(helper.make_node("Conv", [x, name + "_w", name + "_b"], [name], pads=[1, 1, 1, 1], strides=[stride, stride]))
        if act:
            nodes.append(helper.make_node("Relu", [name], [name + "_r"]))
            return name + "_r"
        return name

    c1, c2, c3 = 16 * width, 32 * width, 64 * width
    h = conv("c1", "image", 3, c1, 2)
    h = conv("c2", h, c1, c2, 2)
    h = conv("c3", h, c2, c3, 2)
    h = conv("c4", h, c3, 64)
    nodes.append(helper.make_node("GlobalAveragePool", [h], ["gap"]))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"]))
    inits.append(numpy_helper.from_array((rng.standard_normal((64, 1)) * 0.1).astype(np.float32), "fc_w"))
    nodes.append(helper.make_node("MatMul", ["flat", "fc_w"], ["conf"]))
    inits.append(numpy_helper.from_array(np.array([1, 1, 8, 8], np.float32), "scales"))
    nodes.append(helper.make_node("Resize", [h, "", "scales"], ["up"], mode="linear"))
    m = conv("c5", "up", 64, 1, act=False)
    graph = helper.make_graph(nodes, "bench", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, size, size])],
                              [helper.make_tensor_value_info(m, TensorProto.FLOAT, ["N", 1, size, size]),
                               helper.make_tensor_value_info("conf", TensorProto.FLOAT, ["N", 1])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return m


def bench_onnx(n_images, width=1, repeats=3):
    from evalhub.releases import OnnxRelease, ReleaseManifest
    from synth.io import read_rgb

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.onnx"
        mask_name = build_model(path, width=width)
        man = ReleaseManifest.model_validate({
            "version": "bench", "input": {"size": [320, 320], "resize": "letterbox", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
            "outputs": {"mask": {"name": mask_name, "activation": "sigmoid"}, "confidence": {"name": "conf", "activation": "sigmoid"}},
            "batch_size": 8,
        })
        rel = OnnxRelease(path, man)
        images = [read_rgb(p) for p in sorted((ECSSD / "images").glob("*.jpg"))[:n_images]]
        batches = [np.stack([rel.preprocess(im)[0] for im in images[i : i + 8]]) for i in range(0, len(images), 8)]
        rel.run_batch(batches[0])  # warm-up
        rel.predict(images[:8])  # warm-up
        bare, full = [], []
        for _ in range(repeats):
            t = time.perf_counter()
            for b in batches:
                rel.run_batch(b)
            bare.append(time.perf_counter() - t)
            t = time.perf_counter()
            rel.predict(images)
            full.append(time.perf_counter() - t)
        return len(images), min(bare), min(full)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n512", type=int, default=300)
    ap.add_argument("--n1024", type=int, default=100)
    ap.add_argument("--onnx-images", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3, help="timed passes per side; the best counts")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    try:
        import vos_benchmark  # noqa: F401
    except ImportError:
        sys.exit("the reference needs vos-benchmark: .venv/bin/pip install --no-deps vos-benchmark")
    print("| size | metrics | images | liftlab img/s/core | reference img/s/core | speed-up |")
    print("|---|---|---|---|---|---|")
    diffs = []
    for size, n in ((512, args.n512), (1024, args.n1024)):
        rows, diff = bench_metrics(n, size, args.rounds)
        diffs.append(f"{size}: {diff:.1e}")
        for label, m, ours, ref in rows:
            print(f"| {size} | {label} | {m} | {ours:.1f} | {ref:.2f} | {ours / ref:.1f}x |", flush=True)
    print(f"\nLargest |liftlab - reference| over every image and metric: {', '.join(diffs)}.")
    print()
    print("| ONNX model | images | bare session.run s | evalhub predict s | ms/image model | overhead |")
    print("|---|---|---|---|---|---|")
    for width, label in ((1, "toy 4-conv, 16-64 ch"), (4, "4-conv, 64-256 ch")):
        n, bare, full = bench_onnx(args.onnx_images, width)
        print(f"| {label} | {n} | {bare:.3f} | {full:.3f} | {1000 * bare / n:.1f} | {100 * (full - bare) / bare:.1f} % |", flush=True)


if __name__ == "__main__":
    main()
