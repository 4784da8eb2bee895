"""ONNX releases: a hand-built model whose output is known in closed form, manifest checks that name
the field, letterbox undoing, and the confidence proxy."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper
from typer.testing import CliRunner

import db
from evalhub.cli import app
from evalhub.datasets import import_dataset, read_mask
from evalhub.releases import OnnxRelease, ReleaseError, load_manifest, proxy_confidence
from evalhub.scoring import score
from synth.io import read_rgb
from tests.conftest import ECSSD

SIZE = 64


def build_model(path, with_conf=True, out_name="mask", size=SIZE):
    """mask logit = 8 * (R - G) per pixel (a 1x1 convolution); confidence = mean of the input
    (ReduceMean over C, H, W). Input (N, 3, size, size) float32."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, size, size])
    w = helper.make_tensor("w", TensorProto.FLOAT, [1, 3, 1, 1], [8.0, -8.0, 0.0])
    nodes = [helper.make_node("Conv", ["image", "w"], [out_name])]
    outs = [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["N", 1, size, size])]
    if with_conf:
        axes = helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3])
        nodes.append(helper.make_node("ReduceMean", ["image", "axes"], ["conf"], keepdims=0))
        outs.append(helper.make_tensor_value_info("conf", TensorProto.FLOAT, ["N"]))
        inits = [w, axes]
    else:
        inits = [w]
    graph = helper.make_graph(nodes, "toy", [x], outs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def manifest(path, **over):
    doc = {
        "version": "0.0.1",
        "input": {"size": [SIZE, SIZE], "resize": "stretch", "color_order": "RGB", "layout": "NCHW", "scale": 255.0},
        "outputs": {"mask": {"name": "mask", "activation": "sigmoid"}, "confidence": {"name": "conf", "activation": "none"}},
        "threshold": 0.4,
        "batch_size": 4,
    }
    for k, v in over.items():
        doc[k] = v
    path.write_text(yaml.safe_dump(doc))
    return path


def test_onnx_outputs_equal_the_closed_form(tmp_path):
    import cv2

    model = build_model(tmp_path / "m.onnx")
    rel = OnnxRelease(model, load_manifest(manifest(tmp_path / "r.yaml")))
    img = read_rgb(ECSSD / "images" / "0001.jpg")
    (prob, conf), = rel.predict([img])
    x = cv2.resize(img, (SIZE, SIZE), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    logit = 8 * (x[..., 0] - x[..., 1])
    expected = cv2.resize(1 / (1 + np.exp(-logit)), (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(prob, expected, atol=1e-5)
    assert conf == pytest.approx(float(x.mean()), abs=1e-5)


def test_letterbox_is_undone(tmp_path):
    model = build_model(tmp_path / "m.onnx")
    man = manifest(tmp_path / "r.yaml", input={"size": [SIZE, SIZE], "resize": "letterbox", "layout": "NCHW", "pad_value": 0})
    rel = OnnxRelease(model, load_manifest(man))
    img = np.zeros((40, 80, 3), np.uint8)
    img[:, :40, 0] = 255  # left half red: logit +8, right half black: logit 0
    x, window = rel.preprocess(img)
    assert window == (16, 0, 32, 64)  # 80x40 fits 64x32, centred vertically
    assert x.shape == (3, SIZE, SIZE) and x[:, :16].max() == 0
    (prob, _), = rel.predict([img])
    assert prob.shape == (40, 80)
    assert prob[:, :36].min() > 0.99 and abs(prob[:, 44:].mean() - 0.5) < 1e-3


@pytest.mark.parametrize("field,over,match", [
    ("outputs.mask.name", {"outputs": {"mask": {"name": "nope"}, "confidence": {"name": "conf", "activation": "none"}}}, r"'outputs\.mask\.name': 'nope' is not an output"),
    ("outputs.confidence.name", {"outputs": {"mask": {"name": "mask"}, "confidence": {"name": "gate"}}}, r"'outputs\.confidence\.name'"),
    ("input.size", {"input": {"size": [32, 32]}}, r"'input\.size'"),
    ("input.layout", {"input": {"size": [SIZE, SIZE], "layout": "NHWC"}}, r"'input\.(layout|size)'"),
    ("input.name", {"input": {"size": [SIZE, SIZE], "name": "pixels"}}, r"'input\.name': 'pixels' is not an input"),
])
def test_manifest_mismatch_names_the_field(tmp_path, field, over, match):
    model = build_model(tmp_path / "m.onnx")
    with pytest.raises(ReleaseError, match=match):
        OnnxRelease(model, load_manifest(manifest(tmp_path / "r.yaml", **over)))


def test_invalid_manifest_names_the_field(tmp_path):
    p = manifest(tmp_path / "r.yaml", input={"size": [SIZE, SIZE], "resize": "squash"}, threshold=1.5)
    with pytest.raises(ReleaseError) as err:
        load_manifest(p)
    assert "input.resize" in str(err.value) and "threshold" in str(err.value)


def test_proxy_confidence_by_hand():
    assert proxy_confidence(np.zeros((50, 50), np.float32)) == 0.0
    crisp = np.zeros((50, 50), np.float32)
    crisp[10:40, 10:40] = 1.0
    assert proxy_confidence(crisp) == 1.0  # certain everywhere
    soft = np.where(crisp > 0, 0.75, 0.0).astype(np.float32)
    # subject pixels |2*0.75-1| = 0.5, band pixels (r = ceil(0.008*70.7) = 1, a cross) 1.0
    band = 4 * 30  # one pixel outside each side of the square; the cross adds no corners
    assert proxy_confidence(soft) == pytest.approx((900 * 0.5 + band * 1.0) / (900 + band))


def test_onnx_release_through_the_cli_and_scoring(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    engine = db.connect(url)
    import_dataset(engine, "e8", ECSSD / "images", ECSSD / "masks", limit=8)
    runner = CliRunner()
    model = build_model(tmp_path / "m.onnx")
    r = runner.invoke(app, ["release", "add", "toy", "--onnx", str(model), "--manifest", str(manifest(tmp_path / "r.yaml")), "--database-url", url])
    assert r.exit_code == 0, r.output
    res = score(engine, "toy", "e8", tmp_path / "run", progress=False, workers=1)
    t = res.table.set_index("sample_key")
    rel = OnnxRelease(model, load_manifest(tmp_path / "r.yaml"))
    (prob, conf), = rel.predict([read_rgb(ECSSD / "images" / "0002.jpg")])
    gt = read_mask(ECSSD / "masks" / "0002.png")
    from evalhub.metrics import iou

    assert t.loc["0002", "iou"] == pytest.approx(iou(prob >= 0.5, gt), abs=1e-9)
    assert t.loc["0002", "confidence"] == pytest.approx(conf, abs=1e-6)
    assert t.loc["0002", "accepted"] == (conf >= 0.4)
    assert res.summary["confidence_proxy"] is None
    # a model without a confidence output: the proxy, marked as such
    noconf = build_model(tmp_path / "n.onnx", with_conf=False)
    man = manifest(tmp_path / "n.yaml", outputs={"mask": {"name": "mask", "activation": "sigmoid"}})
    r = runner.invoke(app, ["release", "add", "toy-proxy", "--onnx", str(noconf), "--manifest", str(man), "--database-url", url])
    assert r.exit_code == 0 and "proxy" in r.output
    res2 = score(engine, "toy-proxy", "e8", tmp_path / "run2", progress=False, workers=1)
    assert res2.summary["release"]["confidence_proxy"] and "proxy" in res2.summary["confidence_proxy"]
    assert res2.table.set_index("sample_key").loc["0002", "confidence"] == pytest.approx(proxy_confidence(prob), abs=1e-6)
    r = runner.invoke(app, ["report", str(tmp_path / "run2"), "--database-url", url])
    assert r.exit_code == 0 and "Confidence is a proxy" in (tmp_path / "run2" / "report.html").read_text()
    engine.dispose()


def test_nan_confidence_from_a_model_names_the_ids(tmp_path):
    """A model emitting NaN confidences (log of a negative number) fails scoring with the ids."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])
    w = helper.make_tensor("w", TensorProto.FLOAT, [1, 3, 1, 1], [1.0, 0.0, 0.0])
    axes = helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3])
    neg = helper.make_tensor("neg", TensorProto.FLOAT, [], [-1.0])
    nodes = [
        helper.make_node("Conv", ["image", "w"], ["mask"]),
        helper.make_node("ReduceMean", ["image", "axes"], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "neg"], ["mneg"]),
        helper.make_node("Sqrt", ["mneg"], ["conf"]),  # sqrt of a negative: NaN
    ]
    graph = helper.make_graph(nodes, "nan", [x], [helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["N", 1, SIZE, SIZE]),
                                                  helper.make_tensor_value_info("conf", TensorProto.FLOAT, ["N"])], initializer=[w, axes, neg])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(tmp_path / "nan.onnx"))
    url = f"sqlite:///{tmp_path / 'c.db'}"
    engine = db.connect(url)
    import_dataset(engine, "e3", ECSSD / "images", ECSSD / "masks", limit=3)
    r = CliRunner().invoke(app, ["release", "add", "nan", "--onnx", str(tmp_path / "nan.onnx"), "--manifest", str(manifest(tmp_path / "r.yaml")), "--database-url", url])
    assert r.exit_code == 0, r.output
    from evalhub.scoring import ScoreError

    with pytest.raises(ScoreError, match=r"3 .*NaN.*'0001', '0002', '0003'"):
        score(engine, "nan", "e3", tmp_path / "run", progress=False, workers=1)
    engine.dispose()
