"""The shipped reference releases (examples/releases): each ONNX model loads through ``evalhub
release add --onnx`` with its manifest, and what evalhub scores on real ECSSD test photos matches the
PyTorch model's own outputs to 1e-4; and the one-command loop runs end to end at a reduced size."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import db
from evalhub.cli import app as evalhub_app
from evalhub.releases import OnnxRelease, load_manifest
from tests.conftest import ECSSD

ROOT = Path(__file__).resolve().parents[1]
RELEASES = ROOT / "examples" / "releases"
NAMES = ("liftnet-full", "liftnet-naive")
PROOF = sorted(p.name for p in (RELEASES / "proof").iterdir()) if (RELEASES / "proof").is_dir() else []
TEST_IDS = (ROOT / "examples" / "splits" / "ecssd-test.txt").read_text().split()[:4]
runner = CliRunner()


def torch_outputs(name: str, photos: list[np.ndarray]) -> list[tuple[np.ndarray, float]]:
    """The PyTorch model's probability maps (bilinear back to each photo's size) and confidences,
    with the preprocessing written out here from the manifest (area resize when shrinking, bilinear
    when enlarging; (pixel / scale - mean) / std)."""
    torch = pytest.importorskip("torch")
    sys.path.insert(0, str(ROOT / "examples" / "baseline"))
    from model import LiftNet

    man = yaml.safe_load((RELEASES / name / "release.yaml").read_text())
    h, w = man["input"]["size"]
    model = LiftNet()
    model.load_state_dict(torch.load(RELEASES / name / "weights.pt", weights_only=True))
    model.eval()
    out = []
    for rgb in photos:
        shrink = h < rgb.shape[0] or w < rgb.shape[1]
        x = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR).astype(np.float32)
        x = (x / man["input"]["scale"] - np.array(man["input"]["mean"], np.float32)) / np.array(man["input"]["std"], np.float32)
        with torch.no_grad():
            mask, conf = model(torch.from_numpy(x.transpose(2, 0, 1)[None].copy()))
        prob = torch.sigmoid(mask)[0, 0].numpy()
        out.append((cv2.resize(prob, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR), float(torch.sigmoid(conf)[0, 0])))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_release_files_and_size(name):
    folder = RELEASES / name
    for f in ("model.onnx", "release.yaml", "weights.pt", "train_log.json"):
        assert (folder / f).is_file(), f"{folder / f} is missing"
    assert (folder / "model.onnx").stat().st_size <= 10 * 2**20
    log = yaml.safe_load((folder / "train_log.json").read_text())
    assert log["parameters"] <= 3_000_000 and log["epochs"]


@pytest.mark.parametrize("name", NAMES)
def test_onnx_matches_pytorch_on_ecssd_test_photos(name, tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    folder = RELEASES / name
    r = runner.invoke(evalhub_app, ["release", "add", name, "--onnx", str(folder / "model.onnx"), "--manifest", str(folder / "release.yaml"),
                                    "--database-url", url])
    assert r.exit_code == 0, r.output
    photos = [cv2.cvtColor(cv2.imread(str(ECSSD / "images" / f"{k}.jpg")), cv2.COLOR_BGR2RGB) for k in TEST_IDS]
    ref = torch_outputs(name, photos)
    got = OnnxRelease(folder / "model.onnx", load_manifest(folder / "release.yaml"), threads=1).predict(photos)
    for (p_ref, c_ref), (p, c) in zip(ref, got):
        assert p.shape == p_ref.shape
        assert np.abs(p - p_ref).max() <= 1e-4
        assert abs(c - c_ref) <= 1e-4
    # and through evalhub score: the stored confidences are PyTorch's
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(TEST_IDS) + "\n")
    r = runner.invoke(evalhub_app, ["import-dataset", "t4", "--images", str(ECSSD / "images"), "--masks", str(ECSSD / "masks"),
                                    "--ids", str(ids), "--database-url", url])
    assert r.exit_code == 0, r.output
    r = runner.invoke(evalhub_app, ["score", "--release", name, "--dataset", "t4", "--out", str(tmp_path / "run"), "--workers", "1",
                                    "--no-progress", "--database-url", url])
    assert r.exit_code == 0, r.output
    table = pd.read_parquet(tmp_path / "run" / "samples.parquet").set_index("sample_key")
    assert table.loc[TEST_IDS, "confidence"].to_numpy() == pytest.approx([c for _, c in ref], abs=1e-4)
    from evalhub.datasets import read_mask
    from evalhub.metrics import region_metrics

    for k, (p_ref, _) in zip(TEST_IDS, ref):
        want = region_metrics(p_ref >= 0.5, read_mask(ECSSD / "masks" / f"{k}.png"))["iou"]
        assert table.loc[k, "iou"] == pytest.approx(want, abs=2e-3)  # a pixel or two may sit at 0.5 +- 1e-4
    db.connect(url).dispose()


def test_test_split_is_disjoint_from_training():
    splits = {s: set((ROOT / "examples" / "splits" / f"ecssd-{s}.txt").read_text().split()) for s in ("train", "val", "test")}
    assert not (splits["train"] & splits["test"]) and not (splits["train"] & splits["val"]) and not (splits["val"] & splits["test"])
    assert sum(len(v) for v in splits.values()) == len(list((ECSSD / "images").glob("*.jpg")))
    for name in ("ecssd-train-full", "ecssd-train-all", "ecssd-train-naive"):
        doc = yaml.safe_load((ROOT / "examples" / "recipes" / f"{name}.yaml").read_text())
        for pool in doc["sources"]["foregrounds"] + doc["sources"]["backgrounds"]:
            assert pool["ids"] == "../splits/ecssd-train.txt"
    sys.path.insert(0, str(ROOT / "examples" / "baseline"))
    from ablations import ABLATIONS, ablation_recipe

    train = str((ROOT / "examples" / "splits" / "ecssd-train.txt").resolve())
    for name in ABLATIONS:
        doc = ablation_recipe(name)
        for pool in doc["sources"]["foregrounds"] + doc["sources"]["backgrounds"]:
            assert pool["ids"] == train


def test_each_ablation_changes_exactly_its_component():
    sys.path.insert(0, str(ROOT / "examples" / "baseline"))
    from ablations import ablation_recipe

    from synth.recipe import parse_recipe

    full = parse_recipe(yaml.safe_load((ROOT / "examples" / "recipes" / "ecssd-train-all.yaml").read_text()),
                        base=ROOT / "examples" / "recipes").model_dump(mode="json")
    changed = {
        "no-harmonization": {"harmonization"},
        "no-clean-plates": {"sources"},
        "no-camera": {"camera"},
        "plate-occluders": {"occlusion"},
    }
    for name, keys in changed.items():
        abl = parse_recipe(ablation_recipe(name)).model_dump(mode="json")
        diff = {k for k in full if full[k] != abl[k]} - {"name"}
        assert diff == keys, name
    assert parse_recipe(ablation_recipe("no-harmonization")).harmonization.method == "none"
    assert parse_recipe(ablation_recipe("no-clean-plates")).sources.backgrounds[0].clean_crops is False
    cam = parse_recipe(ablation_recipe("no-camera")).camera
    assert cam.defocus.probability == 0 and cam.sensor_noise.probability == 0
    assert parse_recipe(ablation_recipe("plate-occluders")).occlusion.source == "plate"


@pytest.mark.parametrize("name", PROOF)
def test_proof_releases_load_and_name_their_data(name, tmp_path):
    folder = RELEASES / "proof" / name
    man = load_manifest(folder / "release.yaml")
    log = yaml.safe_load((folder / "train_log.json").read_text())
    assert log["budget"] == "25 epochs" and log["steps"] == 2250 and man.version == name
    photos = [cv2.cvtColor(cv2.imread(str(ECSSD / "images" / f"{k}.jpg")), cv2.COLOR_BGR2RGB) for k in TEST_IDS[:2]]
    got = OnnxRelease(folder / "model.onnx", man, threads=1).predict(photos)
    assert all(p.shape == ph.shape[:2] and 0.0 <= c <= 1.0 for (p, c), ph in zip(got, photos))


@pytest.mark.slow
def test_loop_runs_end_to_end_reduced(tmp_path):
    out = tmp_path / "loop"
    res = subprocess.run([sys.executable, str(ROOT / "examples" / "loop.py"), "--out", str(out), "--reduced", "--workers", "1"],
                         capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for f in ("runs/full-ecssd/report.html", "runs/full-ccp/report.html", "fairness/ccp/model_card.html", "fairness/ecssd/model_card.md",
              "compare-naive-vs-full.txt", "synth/ecssd-demo/manifest.parquet"):
        assert (out / f).is_file(), f
    assert len(pd.read_parquet(out / "runs" / "full-ecssd" / "samples.parquet")) == 24
    assert "demo-rater" in res.stdout and "raters serve --database-url" in res.stdout
    from raters.campaigns import campaign_overview

    camp = campaign_overview(db.connect(f"sqlite:///{out / 'liftlab.db'}"))
    assert [(c["name"], c["items"], c["total"]) for c in camp] == [("demo", 8, 8)]


def test_quality_gate_release_equals_its_pytorch_model_and_keeps_the_mask():
    """liftnet-full-qgate: the ONNX model equals the frozen LiftNet with the quality head written
    out here (two-layer MLP on the gate features and the four map statistics), and its masks are
    liftnet-full's."""
    torch = pytest.importorskip("torch")
    sys.path.insert(0, str(ROOT / "examples" / "baseline"))
    from model import LiftNet

    folder = RELEASES / "liftnet-full-qgate"
    for f in ("model.onnx", "release.yaml", "gate_head.pt", "train_log.json"):
        assert (folder / f).is_file(), f"{folder / f} is missing"
    log = yaml.safe_load((folder / "train_log.json").read_text())
    assert log["validation"]["quality_gate"]["ece"] < log["validation"]["has_subject_gate"]["ece"]
    base = LiftNet()
    base.load_state_dict(torch.load(RELEASES / "liftnet-full" / "weights.pt", weights_only=True))
    base.eval()
    head = torch.load(folder / "gate_head.pt", weights_only=True)
    photos = [cv2.cvtColor(cv2.imread(str(ECSSD / "images" / f"{k}.jpg")), cv2.COLOR_BGR2RGB) for k in TEST_IDS]
    got = OnnxRelease(folder / "model.onnx", load_manifest(folder / "release.yaml"), threads=1).predict(photos)
    plain = torch_outputs("liftnet-full", photos)
    man = yaml.safe_load((folder / "release.yaml").read_text())
    for rgb, (p, c), (p_ref, _) in zip(photos, got, plain):
        assert np.abs(p - p_ref).max() <= 1e-4  # the mask network is untouched
        x = cv2.resize(rgb, (256, 256), interpolation=cv2.INTER_AREA).astype(np.float32)
        x = (x / 255 - np.array(man["input"]["mean"], np.float32)) / np.array(man["input"]["std"], np.float32)
        with torch.no_grad():
            mask, _, feats = base.features(torch.from_numpy(x.transpose(2, 0, 1)[None].copy()))
            q = torch.sigmoid(mask).flatten(1)
            stats = torch.stack([(q >= 0.5).float().mean(1), (2 * q - 1).abs().mean(1), ((q > 0.1) & (q < 0.9)).float().mean(1), q.mean(1)], 1)
            h = torch.relu(torch.cat([feats, stats], 1) @ head["0.weight"].T + head["0.bias"])
            want = torch.sigmoid(h @ head["2.weight"].T + head["2.bias"]).item()
        assert c == pytest.approx(want, abs=1e-4)
