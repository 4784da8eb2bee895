"""synth throughput: composites/s per core at 512 and 1024 next to the codec floor, the 2-worker
speed-up, preparation throughput, the scan's time with and without its memo, and peak RSS at two
dataset sizes. Prints Markdown tables.

    python benchmarks/synth_throughput.py [--n512 80] [--n1024 40] [--rss-sizes 50 200]
                                          [--profile N] [--src CHECKOUT]

The recipe is the demo (examples/recipes/ecssd-demo.yaml) as shipped: the default realism settings
(illumination harmonization, depth of field, sensor noise, cut-out occluders). It is also timed
with the previous full recipe's settings (:data:`PREVIOUS_FULL`), per sample, at both sizes,
alternating, three runs each, medians (target: the new default no slower). Composite rates use the
build's own ``composite`` phase timing (subject preparation is a separate, cached phase), with the
single-worker builds and the floor pinned to one CPU, so "per core" means one core: no helper
thread can borrow the second. The codec floor does only what no compositor can avoid for the same
samples: decode a subject photo, its mask and a background photo, resize to the output size,
encode one JPEG and three PNGs (liftlab's own encoders, as the build uses them).
The 2-worker speed-up is the median of three alternating 1-worker / 2-worker pairs at 512.

``--profile N`` adds the top functions of a cProfile of N single-worker 1024 composites (one
core). ``--src CHECKOUT`` imports ``synth`` from another checkout instead (an earlier liftlab, for
a before/after in the same session on the same data).

Targets (issue 17): >= 0.5x the floor at 1024; >= 1.8x on 2 workers; RSS flat in dataset size.
"""

from __future__ import annotations

import os

# per-core rates: one BLAS thread, as in the build's workers (set before numpy is imported)
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import contextlib
import cProfile
import io
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT
if "--src" in sys.argv:  # the synth to measure, before anything imports it
    _at = sys.argv.index("--src") + 1
    SRC = Path(sys.argv[_at]).resolve() if _at < len(sys.argv) else None
    if SRC is None or not (SRC / "synth" / "__init__.py").is_file():  # else the installed synth would be measured, silently
        print(f"error: --src {SRC}: no liftlab checkout there (no synth/__init__.py)" if SRC else "error: --src needs a checkout folder", file=sys.stderr)
        sys.exit(2)
sys.path.insert(0, str(SRC))
# worker processes (fork server, Ray, the RSS builds) resolve imports on their own: the same checkout first
os.environ["PYTHONPATH"] = os.pathsep.join([str(SRC)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])

import cv2  # noqa: E402
import yaml  # noqa: E402

from synth.build import build  # noqa: E402
from synth.compositing import cover_crop  # noqa: E402
from synth.io import encode_jpeg, encode_png, read_gray, read_rgb  # noqa: E402
from synth.recipe import load_recipe  # noqa: E402

DEMO = ROOT / "examples" / "recipes" / "ecssd-demo.yaml"
REPEATS = 3


@contextlib.contextmanager
def one_core():
    """Pin this process (and the inline single-worker build) to its first allowed CPU."""
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)


PREVIOUS_FULL = {
    "harmonization": {"method": "reinhard", "strength": (0.3, 0.7), "match_noise": True, "match_blur": True,
                      "light_wrap": {"enabled": True, "radius_px": 6.0, "strength": 0.3}},
    "occlusion": {"source": "plate"},
    "camera": {"defocus": {"probability": 0.0}, "sensor_noise": {"probability": 0.0}},
    "plates": {"max_inpainted_fraction": 1.0, "crop_zoom": (1.0, 1.0)},
}
"""The full recipe before the realism work (Reinhard colour transfer, light wrap, noise and blur
matching on the subject, rectangular plate occluders, plain cover crops, no camera effects)."""


def bench_recipe(n: int, size: int, cache: Path, variant: str = "default"):
    """The demo recipe at ``size`` with ``n`` samples: ``default`` as shipped (the new default
    realism settings), or ``previous`` (:data:`PREVIOUS_FULL`)."""
    r = load_recipe(DEMO)
    update = {
        "n_samples": n, "output": r.output.model_copy(update={"size": (size, size), "coco": False}),
        "cache_dir": cache, "catalog": r.catalog.model_copy(update={"enabled": False}),
    }
    if variant == "previous":
        doc = r.model_dump()
        for key in ("harmonization", "occlusion", "camera"):
            for k, v in PREVIOUS_FULL[key].items():
                doc[key][k] = {**doc[key][k], **v} if isinstance(v, dict) else v
        for pool in doc["sources"]["backgrounds"]:
            pool.update(PREVIOUS_FULL["plates"])
        r = type(r).model_validate(doc)
    return r.model_copy(update=update)


def composite_rate(n: int, size: int, workers: int, cache: Path, tmp: Path, variant: str = "default") -> float:
    out = tmp / f"b{size}-{workers}-{variant}"
    res = build(bench_recipe(n, size, cache, variant), out, workers=workers, progress=False, overwrite=out.exists())
    return n / res.report["timings_s"]["composite"]


def codec_floor(n: int, size: int) -> float:
    ecssd = load_recipe(DEMO).sources.foregrounds[0]
    stems = sorted(p.stem for p in ecssd.images.glob("*.jpg"))[: n + 1]
    cv2.setNumThreads(1)
    t = time.perf_counter()
    for i in range(n):
        fg = read_rgb(ecssd.images / f"{stems[i]}.jpg")
        m = read_gray(ecssd.masks / f"{stems[i]}.png")
        bg = read_rgb(ecssd.images / f"{stems[i + 1]}.jpg")
        read_gray(ecssd.masks / f"{stems[i + 1]}.png")
        out = cover_crop(bg, (size, size), (0.5, 0.5))
        cv2.resize(fg, (size, size), interpolation=cv2.INTER_LINEAR)
        small = cv2.resize(m, (size, size), interpolation=cv2.INTER_LINEAR)
        encode_jpeg(out, 90)
        for _ in range(3):
            encode_png(small)
    return n / (time.perf_counter() - t)


def peak_rss_mb(n: int, cache: Path, tmp: Path) -> float:
    recipe = bench_recipe(n, 512, cache).model_dump(mode="json")
    path = tmp / f"rss{n}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    cmd = [sys.executable, "-m", "synth.cli", "build", "--recipe", str(path), "--out", str(tmp / f"rss{n}"), "--workers", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, env=dict(os.environ, PYTHONPATH=str(SRC)), stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise RuntimeError(f"build of {n} samples failed")
    return usage.ru_maxrss / 1024.0


def scan_seconds(cache: Path) -> tuple[float, float, int]:
    """The demo's scan (its two pools over ECSSD's 1,000 photos and masks) into an empty scan memo,
    then again from the memo: seconds each, and the items the second read from the memo (0 for a
    liftlab without one)."""
    from synth import build as build_module

    recipe = bench_recipe(1, 512, cache)
    cold = build_module._inputs(recipe)
    warm = build_module._inputs(recipe)
    hits = getattr(warm, "scanned", {}).get("memo_hits", 0)
    return cold.timings["scan"], warm.timings["scan"], hits


def profile(n: int, cache: Path, tmp: Path, top: int = 15) -> str:
    """The top ``top`` functions by own time in the composite phase of an ``n``-sample 1024 build,
    one worker (a cProfile, whose overhead inflates small Python-level calls)."""
    prof = cProfile.Profile()
    recipe = bench_recipe(n, 1024, cache)
    out = tmp / "profile"
    build(recipe, out, workers=1, progress=False, overwrite=out.exists())  # warm the worker's caches
    import synth.render as render

    inner = render.render_sample

    def profiled(ctx, spec):
        prof.enable()
        try:
            return inner(ctx, spec)
        finally:
            prof.disable()

    render.render_sample = profiled
    import synth.build as build_module

    build_module.render_sample = profiled
    try:
        build(recipe, out, workers=1, progress=False, overwrite=True)
    finally:
        render.render_sample = build_module.render_sample = inner
    text = io.StringIO()
    stats = pstats.Stats(prof, stream=text)
    stats.sort_stats("tottime").print_stats(top)
    total = sum(v[2] for v in stats.stats.values())
    return f"cProfile of {n} composites at 1024, {1000 * total / n:.1f} ms each in the profiler\n" + text.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n512", type=int, default=80)
    ap.add_argument("--n1024", type=int, default=40)
    ap.add_argument("--rss-sizes", type=int, nargs=2, default=[50, 200])
    ap.add_argument("--profile", type=int, default=0, help="also profile this many 1024 composites")
    ap.add_argument("--src", type=Path, default=ROOT, help="the checkout whose synth is measured")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        # worker processes start with the working directory first on sys.path: never a checkout's
        os.chdir(tmp)
        cache = tmp / "cache"
        # a cold cache: preparation's own throughput on 2 workers, then every timed run measures compositing only
        cold = build(bench_recipe(max(args.n512, args.n1024, *args.rss_sizes), 512, cache), tmp / "warm", workers=2, progress=False)
        prep = cold.report.get("preparation") or {}
        build(bench_recipe(max(args.n512, args.n1024), 512, cache, "previous"), tmp / "warm-prev", workers=2, progress=False)
        rows, previous = [], []
        with one_core():
            for size, n in ((512, args.n512), (1024, args.n1024)):
                # the two recipes alternate, REPEATS times each, with the floor between; medians
                runs = {"default": [], "previous": []}
                floors = []
                for _ in range(REPEATS):
                    for variant in runs:
                        runs[variant].append(composite_rate(n, size, 1, cache, tmp, variant))
                    floors.append(codec_floor(n, size))
                rate, prev, floor = statistics.median(runs["default"]), statistics.median(runs["previous"]), statistics.median(floors)
                rows.append((size, n, rate, floor))
                previous.append((size, n, rate, prev))
        # the 1- and 2-worker builds alternate, REPEATS pairs; the speed-up is the median of the pairs'
        # (one pair swings by 0.3 on a shared 2-core machine)
        pairs = []
        for _ in range(REPEATS):
            with one_core():
                one = composite_rate(args.n512, 512, 1, cache, tmp)
            pairs.append((one, composite_rate(args.n512, 512, 2, cache, tmp)))
        r1, r2 = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
        speedup = statistics.median(b / a for a, b in pairs)
        rss = [(n, peak_rss_mb(n, cache, tmp)) for n in args.rss_sizes]
        scan = scan_seconds(tmp / "scan-cache")
        prof = None
        if args.profile:
            with one_core():
                prof = profile(args.profile, cache, tmp)
    print(f"synth from {SRC}; machine: {os.cpu_count()} cores, python {sys.version.split()[0]}, opencv {cv2.__version__}\n")
    print("| output | samples | composites/s per core | codec floor /s | ratio to floor | target |")
    print("|---|---:|---:|---:|---:|---|")
    for size, n, rate, floor in rows:
        target = ">= 0.5" if size == 1024 else "-"
        print(f"| {size}x{size} | {n} | {rate:.2f} | {floor:.2f} | {rate / floor:.2f} | {target} |")
    print()
    print("| output | ms per sample, new default recipe | ms per sample, previous full recipe | new / previous | target |")
    print("|---|---:|---:|---:|---|")
    for size, n, rate, prev in previous:
        print(f"| {size}x{size} | {1000 / rate:.1f} | {1000 / prev:.1f} | {prev / rate:.2f} | <= 1.00 |")
    print()
    print("| workers | composites/s at 512 | speed-up | target |")
    print("|---:|---:|---:|---|")
    print(f"| 1 | {r1:.2f} | 1.00 | |")
    print(f"| 2 | {r2:.2f} | {speedup:.2f} (median of {REPEATS} alternating pairs) | >= 1.8 |")
    print()
    if prep.get("prepared"):
        print(f"preparation (cold cache, 2 workers): {prep['prepared']} inputs in {prep['seconds']:.1f} s, "
              f"{prep['prepared_per_s']:.2f} inputs/s (closed-form matting and foreground estimation per subject, inpainting per plate)\n")
    print(f"scan of the demo's pools (1,000 ECSSD photos with masks, as subjects and as plates): {scan[0]:.2f} s decoding, "
          f"then {scan[1]:.2f} s with {scan[2]} items read from the scan memo\n")
    print("| dataset size (samples, 512) | peak RSS (MiB) |")
    print("|---:|---:|")
    for n, mb in rss:
        print(f"| {n} | {mb:.0f} |")
    print(f"\nRSS growth from {rss[0][0]} to {rss[1][0]} samples: {rss[1][1] / rss[0][1]:.2f}x (target: flat, about 1.0x)")
    if prof:
        print("\n" + prof)


if __name__ == "__main__":
    main()
