"""No file is silently misread (issue 13, class 1): encodings are declared, not guessed; alpha is used
when present; ambiguous files fail naming the file; metadata tables are read as text by a real CSV
reader; splits follow photo content; splits that cannot be met fail before any work. And the
pandas 3 drift (class 4): a campaign over a run with negatives."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper
from PIL import Image
from typer.testing import CliRunner

import db
from evalhub.cli import app as evalhub_app
from evalhub.datasets import import_dataset, read_mask
from evalhub.releases import read_probability
from evalhub.runs import read_run
from evalhub.scoring import ScoreError, score
from synth.balance import QuotaError
from synth.build import build
from synth.cli import app as synth_app
from synth.io import BadInput
from synth.recipe import parse_recipe
from synth.sources import read_metadata, scan_foregrounds
from tests.conftest import ECSSD, ecssd_recipe
from tests.helpers import ecssd_ids

runner = CliRunner()


def _png(path, arr, mode=None):
    (Image.fromarray(arr, mode) if mode else Image.fromarray(arr)).save(path)
    return path


def test_prediction_files_are_read_as_declared(tmp_path):
    zero_one = np.zeros((8, 8), np.uint8)
    zero_one[2:6, 2:6] = 1
    f = _png(tmp_path / "p.png", zero_one)
    # probabilities unless declared: value 1 is p = 1/255, not foreground
    np.testing.assert_allclose(read_probability(f), zero_one / 255.0)
    np.testing.assert_array_equal(read_probability(f, "binary"), zero_one.astype(np.float32))
    np.testing.assert_array_equal(read_probability(_png(tmp_path / "b.png", zero_one * 255), "binary"), zero_one.astype(np.float32))
    soft = (np.arange(64, dtype=np.uint8) * 4).reshape(8, 8)
    with pytest.raises(BadInput, match=r"s.png: the release declares binary masks but the file holds values"):
        read_probability(_png(tmp_path / "s.png", soft), "binary")
    # RGBA (what background-removal tools write): the alpha channel, whatever the colours
    rgba = np.dstack([np.full((8, 8), 200, np.uint8), np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), soft])
    np.testing.assert_allclose(read_probability(_png(tmp_path / "rgba.png", rgba, "RGBA")), soft / 255.0)
    # grey saved as RGB is grey; a mask in one colour channel is ambiguous and named
    np.testing.assert_allclose(read_probability(_png(tmp_path / "grey.png", np.dstack([soft] * 3))), soft / 255.0)
    red = np.dstack([soft, np.zeros_like(soft), np.zeros_like(soft)])
    with pytest.raises(BadInput, match=r"red.png: colour prediction without an alpha channel"):
        read_probability(_png(tmp_path / "red.png", red))


def test_a_low_probability_map_is_not_scored_as_full_foreground(tmp_path):
    """A probability map with p <= 1/255 everywhere used to be taken as a binary mask (all 1 -> full
    foreground); read as declared it is an empty prediction."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    engine = db.connect(url)
    import_dataset(engine, "e4", ECSSD / "images", ECSSD / "masks", limit=4)
    ids = ecssd_ids(4)
    for folder, enc in (("prob", None), ("bin", "binary")):
        (tmp_path / folder / "masks").mkdir(parents=True)
        for k in ids:
            gt = read_mask(ECSSD / "masks" / f"{k}.png")
            _png(tmp_path / folder / "masks" / f"{k}.png", np.ones(gt.shape, np.uint8) if folder == "prob" else gt.astype(np.uint8))
        args = ["release", "add", folder, "--predictions", str(tmp_path / folder), "--database-url", url]
        r = runner.invoke(evalhub_app, args + (["--encoding", enc] if enc else []))
        assert r.exit_code == 0, r.output
    prob = score(engine, "prob", "e4", tmp_path / "run-prob", workers=1, progress=False).table
    assert (prob["iou"] == 0).all() and (prob["pred_area_fraction"] == 0).all()
    binary = score(engine, "bin", "e4", tmp_path / "run-bin", workers=1, progress=False).table
    assert (binary["iou"] == 1).all()
    r = runner.invoke(evalhub_app, ["release", "add", "x", "--predictions", str(tmp_path / "bin"), "--encoding", "mask", "--database-url", url])
    assert r.exit_code == 2 and "--encoding must be one of probability, binary" in r.output
    engine.dispose()


def test_an_onnx_model_emitting_nan_maps_is_quarantined_not_scored_empty(tmp_path):
    size = 32
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, size, size])
    w = helper.make_tensor("w", TensorProto.FLOAT, [1, 3, 1, 1], [1.0, 0.0, 0.0])
    nan = helper.make_tensor("nan", TensorProto.FLOAT, [], [float("nan")])
    nodes = [helper.make_node("Conv", ["image", "w"], ["m"]), helper.make_node("Mul", ["m", "nan"], ["mask"])]
    graph = helper.make_graph(nodes, "nanmask", [x], [helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["N", 1, size, size])],
                              initializer=[w, nan])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(tmp_path / "m.onnx"))
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({
        "version": "0", "input": {"size": [size, size]}, "outputs": {"mask": {"name": "mask", "activation": "sigmoid"}},
        "threshold": 0.5, "batch_size": 2}))
    url = f"sqlite:///{tmp_path / 'c.db'}"
    engine = db.connect(url)
    import_dataset(engine, "e3", ECSSD / "images", ECSSD / "masks", limit=3)
    r = runner.invoke(evalhub_app, ["release", "add", "nan", "--onnx", str(tmp_path / "m.onnx"), "--manifest", str(tmp_path / "r.yaml"),
                                    "--database-url", url])
    assert r.exit_code == 0, r.output
    with pytest.raises(ScoreError, match=r"every sample was quarantined.*non-finite value\(s\) \(NaN or infinite\)"):
        score(engine, "nan", "e3", tmp_path / "run", workers=1, progress=False)
    engine.dispose()


def test_ground_truth_masks_saved_as_0_1_are_declared_not_read_as_negatives(tmp_path):
    ids = ecssd_ids(5)
    (tmp_path / "masks01").mkdir()
    for k in ids:
        m = cv2.imread(str(ECSSD / "masks" / f"{k}.png"), cv2.IMREAD_GRAYSCALE)
        cv2.imwrite(str(tmp_path / "masks01" / f"{k}.png"), (m > 127).astype(np.uint8))
    url = f"sqlite:///{tmp_path / 'c.db'}"
    db_opt = ["--database-url", url]
    base = ["import-dataset", "e01", "--images", str(ECSSD / "images"), "--masks", str(tmp_path / "masks01"), "--limit", "5", *db_opt]
    r = runner.invoke(evalhub_app, base)
    assert r.exit_code == 2 and "no usable image/mask pair" in r.output, r.output
    assert "5 quarantined; first: " in r.output and "values are 0 and 1" in r.output and "encoding 0-1" in r.output
    assert r.output.count("\n") == 1
    r = runner.invoke(evalhub_app, base + ["--mask-encoding", "0-1"])
    assert r.exit_code == 0 and "5 samples (0 without a subject)" in r.output, r.output
    # scoring reads them the same way: the true masks as predictions give IoU 1
    engine = db.connect(url)
    (tmp_path / "pred" / "masks").mkdir(parents=True)
    for k in ids:
        shutil.copy(ECSSD / "masks" / f"{k}.png", tmp_path / "pred" / "masks" / f"{k}.png")
    r = runner.invoke(evalhub_app, ["release", "add", "gt", "--predictions", str(tmp_path / "pred"), *db_opt])
    assert r.exit_code == 0
    t = score(engine, "gt", "e01", tmp_path / "run", workers=1, progress=False).table
    assert (t["iou"] == 1).all() and t["has_subject"].all()
    engine.dispose()
    # synth names the problem instead of calling the masks empty
    doc = ecssd_recipe(tmp_path, n_samples=2)
    doc["sources"]["foregrounds"][0]["masks"] = str(tmp_path / "masks01")
    doc["sources"]["foregrounds"][0]["limit"] = 5
    items, quarantine, _ = scan_foregrounds(parse_recipe(doc).sources.foregrounds[0])
    assert not items and len(quarantine) == 5
    assert all("values are 0 and 1" in q.reason and q.path.endswith(".png") for q in quarantine)


def test_metadata_tables_are_text_utf8_with_or_without_a_bom(tmp_path):
    rows = "sample_id,skin_tone,age\n0007,dark,31\n0012,light,\n"
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + rows.encode())
    plain = tmp_path / "plain.csv"
    plain.write_text(rows)
    for path in (bom, plain):
        meta, dups = read_metadata(path, "sample_id")
        assert meta == {"0007": {"skin_tone": "dark", "age": "31"}, "0012": {"skin_tone": "light", "age": None}} and not dups
    latin = tmp_path / "latin.csv"
    latin.write_bytes("sample_id,city\n0001,Malmö\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin.csv: not UTF-8 .*save it as UTF-8"):
        read_metadata(latin, "sample_id")
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("sample_id,a\n1,x\n2,y,z\n")
    with pytest.raises(ValueError, match=r"ragged.csv: rows \[3\] have another number of cells"):
        read_metadata(ragged, "sample_id")


def test_byte_identical_photos_share_a_split(tmp_path, cache_dir):
    ids = ecssd_ids(12)
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    for k in ids:
        shutil.copy(ECSSD / "images" / f"{k}.jpg", tmp_path / "images" / f"{k}.jpg")
        shutil.copy(ECSSD / "masks" / f"{k}.png", tmp_path / "masks" / f"{k}.png")
        shutil.copy(ECSSD / "images" / f"{k}.jpg", tmp_path / "images" / f"copy-{k}.jpg")
        shutil.copy(ECSSD / "masks" / f"{k}.png", tmp_path / "masks" / f"copy-{k}.png")
    doc = ecssd_recipe(cache_dir, n_samples=1, catalog={"enabled": False}, splits={"train": 0.5, "val": 0.25, "test": 0.25})
    doc["sources"]["foregrounds"][0].update(images=str(tmp_path / "images"), masks=str(tmp_path / "masks"), limit=None)
    recipe = parse_recipe(doc)
    items, _, _ = scan_foregrounds(recipe.sources.foregrounds[0])
    by_name = {i.fg_id.split("/", 1)[1]: i.photo_key for i in items}
    from synth.plan import assign_splits

    split_of = assign_splits(sorted(set(by_name.values())), recipe.splits.as_dict(), recipe.seed)
    for k in ids:
        assert by_name[k] == by_name[f"copy-{k}"]  # the same bytes are the same photo
        assert split_of[by_name[k]] == split_of[by_name[f"copy-{k}"]]
    assert len(set(split_of.values())) == 3


def test_splits_that_cannot_be_met_fail_before_any_work(tmp_path, cache_dir):
    doc = ecssd_recipe(cache_dir, n_samples=6, catalog={"enabled": False}, splits={"train": 0.4, "val": 0.3, "test": 0.3})
    doc["sources"]["backgrounds"][0]["limit"] = 1
    out = tmp_path / "out"
    with pytest.raises(QuotaError, match=r"no background photo falls in \['val', 'test'\] \(1 distinct background photo"):
        build(parse_recipe(doc), out, workers=1, progress=False)
    assert not (out / "images").exists() and not (out / "manifest.parquet").exists()
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(doc))
    r = runner.invoke(synth_app, ["build", "--recipe", str(path), "--out", str(tmp_path / "out2"), "--no-progress"])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "no background photo falls in" in r.output


def test_campaign_over_a_run_with_negatives_under_pandas_3(tmp_path):
    """Regression (issue 13, class 4): negatives have no area_bucket; astype(str) kept NaN under
    pandas 3 and the stratum join crashed."""
    from raters.campaigns import create_campaign
    from tests.helpers import add_raters, write_predictions

    ids = ecssd_ids(30)
    (tmp_path / "masks").mkdir()
    for i, k in enumerate(ids):
        m = cv2.imread(str(ECSSD / "masks" / f"{k}.png"), cv2.IMREAD_GRAYSCALE)
        cv2.imwrite(str(tmp_path / "masks" / f"{k}.png"), np.zeros_like(m) if i % 5 == 0 else m)
    engine = db.connect(f"sqlite:///{tmp_path / 'c.db'}")
    res = import_dataset(engine, "neg", ECSSD / "images", tmp_path / "masks", limit=30)
    assert res.n_negatives == 6
    write_predictions(tmp_path / "pred", ids, root=ECSSD)
    from db.catalog import register_release

    register_release(engine, "r", "predictions", str(tmp_path / "pred"), 0.5)
    score(engine, "r", "neg", tmp_path / "run", workers=1, n_boot=20, progress=False)
    assert read_run(engine, tmp_path / "run").table["attr_area_bucket"].isna().sum() == 6
    add_raters(engine, ["a1", "a2"])
    camp = create_campaign(engine, "negs", [tmp_path / "run"], n_items=12, raters_per_item=1, stratify=["area_bucket"], seed=0)
    assert camp["items"] == 12
    from db.models import CampaignItem

    with db.session_scope(engine) as s:
        strata = {it.stratum for it in s.query(CampaignItem).all()}
    assert "(missing)" in strata and "nan" not in strata
    engine.dispose()
