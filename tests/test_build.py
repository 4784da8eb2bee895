"""End-to-end builds on real ECSSD photos: outputs, catalog, determinism, resume, Ray."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

import db
from db.catalog import sample_attributes
from synth.build import BuildError, build
from synth.folders import read_marker, write_marker
from synth.io import sha256_file
from synth.recipe import parse_recipe
from synth.render import RENDER_VERSION
from tests.conftest import ROOT, ecssd_recipe

pytestmark = pytest.mark.slow

VOLATILE = {"build_report.json", "build_report.md",  # hold timings, worker count and executor
            ".liftlab-folder.json", ".liftlab.lock"}  # the folder's owner marker (a timestamp) and lock


def tree(out: Path) -> dict[str, bytes]:
    """Every output file's bytes except the report (timings differ run to run)."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file() and p.name not in VOLATILE}


def report_without_timings(out: Path) -> dict:
    rep = json.loads((out / "build_report.json").read_text())
    for k in ("timings_s", "workers", "executor", "out_dir", "cache", "preparation"):
        rep.pop(k)
    return rep


def test_small_real_ecssd_build_end_to_end(tmp_path, cache_dir, sqlite_url):
    recipe = parse_recipe(ecssd_recipe(cache_dir, balance={"columns": ["source_area_bucket"], "mode": "uniform"}, output={"size": [128, 128], "coco": True, "webdataset": True, "shard_size": 5}))
    res = build(recipe, tmp_path / "out", workers=1, progress=False, catalog_url=sqlite_url)
    out = res.out_dir
    table = pq.read_table(out / "manifest.parquet").to_pylist()
    assert len(table) == 12
    assert sum(r["has_subject"] for r in table) == 9  # 25 % negatives of 12
    for r in table:
        img = cv2.imread(str(out / r["image_path"]))
        alpha = cv2.imread(str(out / r["alpha_path"]), cv2.IMREAD_GRAYSCALE)
        mask = cv2.imread(str(out / r["mask_path"]), cv2.IMREAD_GRAYSCALE)
        tri = cv2.imread(str(out / r["trimap_path"]), cv2.IMREAD_GRAYSCALE)
        assert img.shape == (128, 128, 3) and alpha.shape == mask.shape == tri.shape == (128, 128)
        assert set(np.unique(mask)) <= {0, 255} and set(np.unique(tri)) <= {0, 128, 255}
        # mask = alpha >= 0.5 (the 8-bit alpha is the rounded float alpha)
        assert ((mask > 0) == (alpha >= 128)).mean() > 0.999
        # every partially transparent pixel is in the unknown region
        assert (tri[(alpha > 0) & (alpha < 255)] == 128).all()
        for key in ("image", "mask", "alpha", "trimap"):
            assert sha256_file(out / r[f"{key}_path"]) == r[f"sha256_{key}"]
        if r["has_subject"]:
            assert mask.any() and r["n_subjects"] == len(r["fg_ids"]) >= 1 and r["area_bucket"] is not None
            assert r["param_jpeg_quality"] >= 90 and r["light_z_after"] is not None and r["source_area_bucket"] is not None
        else:
            assert not alpha.any() and (tri == 0).all() and r["n_subjects"] == 0 and r["fg_id"] is None
    # balance over the source photos' area_bucket: 9 positives over the observed buckets, exact
    rep = json.loads((out / "build_report.json").read_text())
    assert rep["balance"]["max_abs_deviation"] == 0.0
    assert all(c["achieved"] == c["target"] for c in rep["balance"]["cells"])
    h = next(iter(rep["harmonization"].values()))
    assert h["mean_after"] < h["mean_before"]
    # the pixel shares, from the written masks
    shares = [(cv2.imread(str(out / r["mask_path"]), cv2.IMREAD_GRAYSCALE) > 0).mean() for r in table if r["has_subject"]]
    px = rep["pixels"]
    assert px["negatives_share"] == 0.25 and sum(b["n"] for b in px["histogram"]) == 9
    assert px["foreground_share_mean"] == pytest.approx(np.mean(shares), abs=1e-4)
    assert px["foreground_share_pooled"] == pytest.approx(np.sum(shares) / 12, abs=1e-4)
    assert px["foreground_share_quantiles"]["p50"] == pytest.approx(np.median(shares), abs=1e-4)
    assert "## Foreground pixel share" in (out / "build_report.md").read_text()
    c, prep = rep["cache"], rep["preparation"]
    assert prep["prepared"] == c["foreground_prepared"] + c["background_prepared"]
    assert prep["from_cache"] == c["foreground_hits"] + c["background_hits"]
    if prep["prepared"]:
        assert prep["prepared_per_s"] == pytest.approx(prep["prepared"] / rep["timings_s"]["prepare"], rel=0.01)
    lock = yaml.safe_load((out / "recipe.lock.yaml").read_text())
    assert lock["recipe"]["seed"] == 11 and "ecssd/0001" in lock["inputs"]["foregrounds"] and lock["versions"]["pymatting"]
    coco = json.loads((out / "coco.json").read_text())
    assert len(coco["images"]) == 12 and len(coco["annotations"]) == 9
    from pycocotools import mask as mask_utils

    first = coco["annotations"][0]
    r0 = table[first["image_id"] - 1]
    decoded = mask_utils.decode({"size": first["segmentation"]["size"], "counts": first["segmentation"]["counts"].encode()})
    assert (decoded.astype(bool) == (cv2.imread(str(out / r0["mask_path"]), 0) > 127)).all()
    import tarfile

    shards = sorted((out / "shards").glob("*.tar"))
    assert len(shards) == 3
    with tarfile.open(shards[0]) as t:
        assert t.getnames()[:5] == [f"{table[0]['sample_id']}{s}" for s in (".jpg", ".mask.png", ".alpha.png", ".trimap.png", ".json")]
    # catalog: every sample with its split and attributes
    engine = db.connect(sqlite_url)
    attrs = sample_attributes(engine, "ecssd-small")
    assert len(attrs) == len(table)
    for r in table:
        assert attrs[r["sample_id"]]["area_bucket"] == r["area_bucket"]
        assert attrs[r["sample_id"]]["touches_border"] == r["touches_border"]
        assert (attrs[r["sample_id"]].get("source_area_bucket") is None) == (not r["has_subject"])


def test_build_registers_in_postgres(tmp_path, cache_dir, pg_url):
    recipe = parse_recipe(ecssd_recipe(cache_dir, n_samples=4, negatives=0.0))
    res = build(recipe, tmp_path / "out", workers=1, progress=False, catalog_url=pg_url)
    assert res.dataset_id is not None
    attrs = sample_attributes(db.connect(pg_url), "ecssd-small")
    assert sorted(attrs) == ["0000000", "0000001", "0000002", "0000003"]
    assert all(a["area_bucket"] in {"small", "medium", "large"} and a["source_area_bucket"] in {"small", "medium", "large"} for a in attrs.values())


def test_identical_bytes_for_any_worker_count(tmp_path, cache_dir):
    """... and whether the scan decoded the inputs or read them from its memo."""
    cache = tmp_path / "cache"
    shutil.copytree(cache_dir, cache, ignore=shutil.ignore_patterns("scan"))  # the prepared inputs, no scan memo
    doc = ecssd_recipe(cache, catalog={"enabled": False}, harmonization={"method": "poisson", "light_wrap": {"enabled": True}, "match_noise": True})
    one = build(parse_recipe(doc), tmp_path / "w1", workers=1, progress=False)
    two = build(parse_recipe(doc), tmp_path / "w2", workers=2, progress=False)
    scanned = [(r.report["cache"]["scan_decoded"], r.report["cache"]["scan_memo_hits"]) for r in (one, two)]
    assert scanned == [(16 + 24, 0), (0, 16 + 24)]  # 16 subjects and 24 plates
    assert tree(one.out_dir) == tree(two.out_dir)
    assert report_without_timings(one.out_dir) == report_without_timings(two.out_dir)
    # and a different seed really changes the pixels
    doc["seed"] = 12
    other = build(parse_recipe(doc), tmp_path / "w3", workers=1, progress=False)
    assert tree(other.out_dir)["images/0000000.jpg"] != tree(one.out_dir)["images/0000000.jpg"]


def test_ray_executor_gives_identical_bytes(tmp_path, cache_dir):
    pytest.importorskip("ray")
    doc = ecssd_recipe(cache_dir, n_samples=6, catalog={"enabled": False})
    ref = build(parse_recipe(doc), tmp_path / "local", workers=1, progress=False)
    via_ray = build(parse_recipe(doc), tmp_path / "ray", workers=2, executor="ray", progress=False)
    assert tree(ref.out_dir) == tree(via_ray.out_dir)


def test_sigkill_then_resume_is_byte_identical(tmp_path, cache_dir):
    doc = ecssd_recipe(cache_dir, n_samples=40, catalog={"enabled": False}, output={"size": [256, 256]})
    recipe_path = tmp_path / "r.yaml"
    recipe_path.write_text(yaml.safe_dump(doc))
    ref = build(parse_recipe(doc), tmp_path / "ref", workers=1, progress=False)

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "synth.cli", "build", "--recipe", str(recipe_path), "--out", str(out), "--workers", "1", "--no-progress"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, start_new_session=True)
    parts = out / ".parts"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts.glob("*.json"))) < 5:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(parts.glob("*.json")))
    assert 5 <= done < 40, f"kill came at {done} finished samples"
    assert not (out / "manifest.parquet").exists()
    with pytest.raises(BuildError, match="already holds an interrupted synth build; pass --resume"):
        build(parse_recipe(doc), out, workers=1, progress=False)
    subprocess.run(cmd + ["--resume"], env=env, cwd=tmp_path, check=True)
    assert tree(out) == tree(ref.out_dir)
    assert not any(p.name.endswith(".tmp") for p in out.rglob("*"))


def test_resume_removes_the_killed_writers_temporary_files(tmp_path, cache_dir):
    # a writer killed between creating and renaming its temporary file leaves it behind; the
    # resumed build (which holds the folder's lock) removes those of its own naming, and only those
    doc = ecssd_recipe(cache_dir, n_samples=8, catalog={"enabled": False}, output={"size": [96, 96]})
    ref = build(parse_recipe(doc), tmp_path / "ref", workers=1, progress=False)
    out = tmp_path / "cut"
    build(parse_recipe(doc), out, workers=1, progress=False)
    marker = read_marker(out)
    marker.state = "writing"
    write_marker(out, marker)
    (out / "manifest.parquet").unlink()
    (out / ".parts").mkdir()
    for stale in ("images/.0000003.jpg.k2j9x1ab.tmp", "masks/.0000003.png.q81hz0cd.tmp", ".parts/.0000003.json.9dkq2m1a.tmp"):
        (out / stale).write_bytes(b"")
    (out / "images" / "0000003.jpg").unlink()
    build(parse_recipe(doc), out, workers=1, progress=False, resume=True)
    assert tree(out) == tree(ref.out_dir)
    assert not any(p.name.endswith(".tmp") for p in out.rglob("*"))


def test_resume_refuses_a_changed_recipe_finished_or_not(tmp_path, cache_dir, monkeypatch):
    doc = ecssd_recipe(cache_dir, n_samples=4, catalog={"enabled": False})
    out = tmp_path / "o"
    first = build(parse_recipe(doc), out, workers=1, progress=False)
    before = tree(out)
    # a finished build resumed with the same recipe: nothing to do, nothing rewritten
    again = build(parse_recipe(doc), out, workers=1, progress=False, resume=True)
    assert again.already_complete and again.report["counts"] == first.report["counts"] and tree(out) == before
    # ... with a changed recipe: refused, finished or interrupted, and nothing touched
    changed = parse_recipe({**doc, "seed": 99})
    with pytest.raises(BuildError, match="changed since the finished build there"):
        build(changed, out, workers=1, progress=False, resume=True)
    marker = read_marker(out)
    marker.state = "writing"
    write_marker(out, marker)
    with pytest.raises(BuildError, match="changed since the interrupted build there"):
        build(changed, out, workers=1, progress=False, resume=True)
    assert tree(out) == before
    # ... by another renderer: an interrupted build is never finished with other bytes
    monkeypatch.setattr("synth.build.RENDER_VERSION", RENDER_VERSION + 1)
    with pytest.raises(BuildError, match="liftlab's renderer changed since the interrupted build there"):
        build(parse_recipe(doc), out, workers=1, progress=False, resume=True)
    assert tree(out) == before


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))


def test_a_simulated_multi_node_ray_cluster_builds_identical_bytes(tmp_path, cache_dir):
    """Three Ray nodes of one CPU each on this machine (ray.cluster_utils.Cluster), sharing the
    output folder and the cache as a cluster shares a network file system."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    doc = ecssd_recipe(cache_dir, n_samples=9, catalog={"enabled": False})
    ref = build(parse_recipe(doc), tmp_path / "local", workers=1, progress=False)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1)
        ray.init(address=cluster.address, log_to_driver=False)
        assert len([n for n in ray.nodes() if n["Alive"]]) == 3
        via = build(parse_recipe(doc), tmp_path / "cluster", workers=3, executor="ray", ray_address=cluster.address, progress=False)
        assert tree(ref.out_dir) == tree(via.out_dir)
    finally:
        ray.shutdown()
        cluster.shutdown()


FAULTS = """
import resource, sys
import numpy as np
if sys.argv[1] == "keep":
    from synth.executors import keep_freed_memory
    assert keep_freed_memory()
def sample():  # a 1024 render holds several 12 MiB frames at once, then frees them all
    frames = [np.ones((1024, 1024, 3), np.float32) for _ in range(4)]
    del frames
sample()  # the first sample faults its frames in either way
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    sample()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_worker_keeps_freed_frames_instead_of_faulting_them_in_again():
    def faults(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", FAULTS, mode], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                             capture_output=True, text=True, check=True)
        return int(out.stdout)

    # by default glibc returns freed frames to the system, and later samples fault their pages in
    # again (thousands a sample; 7,500 a 1024 composite); kept, they are reused without a fault
    assert faults("default") > 10 * 500
    assert faults("keep") < 100


def test_guided_units_shrink_to_single_items_and_keep_the_order():
    from synth.executors import guided_chunks

    # by hand: 80 items on 2 workers, each unit ceil(R / 4) of the R left
    units = guided_chunks(list(range(80)), 2)
    assert [len(u) for u in units] == [20, 15, 12, 9, 6, 5, 4, 3, 2, 1, 1, 1, 1]
    assert [x for u in units for x in u] == list(range(80))
    # the cap holds the first units of a long build; the tail still ends in single items
    sizes = [len(u) for u in guided_chunks(list(range(1000)), 4, max_size=64)]
    assert sizes[:8] == [64] * 8 and sizes[8] == 61 and sizes[-1] == 1 and sum(sizes) == 1000
    assert all(a >= b for a, b in zip(sizes, sizes[1:]))
    assert guided_chunks([], 3) == [] and guided_chunks(["a"], 0) == [["a"]]


def test_a_later_build_in_the_same_process_never_reads_an_earlier_ones_subjects(tmp_path, cache_dir, monkeypatch):
    import synth.render as render
    from tests.conftest import ECSSD

    # other photos under the same ids: ECSSD's first 16, mirrored
    mirrored = tmp_path / "mirrored"
    for sub in ("images", "masks"):
        (mirrored / sub).mkdir(parents=True)
    for p in sorted((ECSSD / "images").glob("*.jpg"))[:16]:
        cv2.imwrite(str(mirrored / "images" / p.name), cv2.imread(str(p))[:, ::-1])
        cv2.imwrite(str(mirrored / "masks" / f"{p.stem}.png"), cv2.imread(str(ECSSD / "masks" / f"{p.stem}.png"), cv2.IMREAD_GRAYSCALE)[:, ::-1])

    def doc(root: Path) -> dict:
        d = ecssd_recipe(cache_dir, n_samples=4, negatives=0.0, catalog={"enabled": False})
        d["sources"]["foregrounds"][0].update(images=str(root / "images"), masks=str(root / "masks"))
        return d

    alone = build(parse_recipe(doc(mirrored)), tmp_path / "alone", workers=1, progress=False)
    # every context gets the same id, as a freed context's id is given to the next one
    monkeypatch.setattr(render, "id", lambda obj: 7, raising=False)
    build(parse_recipe(doc(ECSSD)), tmp_path / "first", workers=1, progress=False)
    later = build(parse_recipe(doc(mirrored)), tmp_path / "later", workers=1, progress=False)
    assert tree(later.out_dir) == tree(alone.out_dir)
    assert tree(later.out_dir)["images/0000000.jpg"] != tree(tmp_path / "first")["images/0000000.jpg"]


def test_workers_load_pymatting_as_they_start_only_when_preparation_mats(tmp_path, monkeypatch):
    import synth.build as build_module
    from synth.executors import Workers
    from synth.prepare import uses_pymatting
    from synth.recipe import Edges
    from synth.sources import ForegroundItem

    warmed = []

    class Recording(Workers):
        def __init__(self, ctx, **kw):
            warmed.append(tuple(kw.get("warm", ())))
            super().__init__(ctx, **kw)

    monkeypatch.setattr(build_module, "Workers", Recording)
    doc = ecssd_recipe(tmp_path / "cache", n_samples=4, negatives=0.0, catalog={"enabled": False})
    cold = build(parse_recipe(doc), tmp_path / "cold", workers=1, progress=False)
    warm = build(parse_recipe(doc), tmp_path / "warm", workers=1, progress=False)
    # pymatting's first import after an install compiles its kernels for about a minute: it is
    # loaded as the workers start when a subject is to be matted, and not at all from a warm cache
    assert cold.report["preparation"]["prepared"] > 0 and warm.report["preparation"]["prepared"] == 0
    assert warmed == [("pymatting",), ()]
    # two fresh worker processes load it after their fork (a fork server that had loaded it would
    # abort its forks: numba's OpenMP layer refuses them) and build the same bytes
    shutil.rmtree(tmp_path / "cache")  # the test's own cache: prepared again
    recipe_path = tmp_path / "r.yaml"
    recipe_path.write_text(yaml.safe_dump(doc))
    cmd = [sys.executable, "-m", "synth.cli", "build", "--recipe", str(recipe_path), "--out", str(tmp_path / "two"), "--workers", "2", "--no-progress"]
    run = subprocess.run(cmd, env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    two = json.loads((tmp_path / "two" / "build_report.json").read_text())
    assert two["preparation"]["prepared"] == cold.report["preparation"]["prepared"] and tree(tmp_path / "two") == tree(cold.out_dir)
    # binary masks pasted as they are, photo colours kept: prepared afresh, without pymatting
    binary = build(parse_recipe(dict(doc, edges={"alpha": "binary", "foreground_estimation": False})), tmp_path / "binary",
                   workers=1, progress=False)
    assert binary.report["preparation"]["prepared"] > 0 and warmed[-1] == ()
    # by hand, from what prepare_foreground does with each kind
    def item(kind: str) -> ForegroundItem:
        return ForegroundItem("a", "pool", kind, None, None, "a", "0" * 64, 1, 1)

    binary_kept = Edges(alpha="binary", foreground_estimation=False)
    assert [uses_pymatting(item(k), Edges()) for k in ("image_mask", "image_alpha", "rgba")] == [True, True, False]
    assert [uses_pymatting(item(k), binary_kept) for k in ("image_mask", "image_alpha", "rgba")] == [False, False, False]
    assert uses_pymatting(item("image_alpha"), Edges(alpha="binary")) and uses_pymatting(item("image_mask"), Edges(foreground_estimation=False))
