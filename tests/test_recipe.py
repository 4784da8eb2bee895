"""Recipe validation: unknown keys and bad values are rejected with their field path."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from synth.cli import app
from synth.recipe import RecipeError, load_recipe, parse_recipe, recipe_schema

BASE = {
    "name": "r", "n_samples": 10,
    "sources": {"foregrounds": [{"name": "f", "kind": "image_mask", "images": "imgs", "masks": "masks"}], "backgrounds": [{"name": "b", "kind": "folder", "images": "bgs"}]},
}


def _with(**kw):
    doc = json.loads(json.dumps(BASE))
    doc.update(kw)
    return doc


@pytest.mark.parametrize(
    "doc, path, message",
    [
        (_with(harmonisation={"method": "reinhard"}), "harmonisation", "unknown key"),
        (_with(harmonization={"method": "reinhard", "strenght": 0.5}), "harmonization.strenght", "unknown key"),
        (_with(harmonization={"method": "magic"}), "harmonization.method", "Input should be"),
        (_with(harmonization={"strength": [0.9, 0.1]}), "harmonization.strength", "range low 0.9 is above high 0.1"),
        (_with(splits={"train": 0.5, "val": 0.1, "test": 0.1}), "splits", "sum to 1"),
        (_with(negatives=1.5), "negatives", "less than or equal to 1"),
        (_with(subjects_per_image={1: 0.5, 2: 0.4}), "subjects_per_image", "sum to 1"),
        (_with(edges={"trimap_band": {"px": 3, "fraction": 0.1}}), "edges.trimap_band", "exactly one"),
        (_with(n_samples=0), "n_samples", "greater than or equal to 1"),
    ],
)
def test_bad_recipes_name_the_field(doc, path, message):
    with pytest.raises(RecipeError) as err:
        parse_recipe(doc, "my.yaml")
    text = str(err.value)
    assert text.startswith("my.yaml: invalid recipe")
    assert any(line.strip().startswith(f"{path}:") and message in line for line in text.splitlines()), text


def test_list_items_are_indexed_in_the_path():
    doc = _with()
    doc["sources"]["foregrounds"][0]["colour"] = "x"
    with pytest.raises(RecipeError, match=r"sources\.foregrounds\[0\]\.colour: unknown key"):
        parse_recipe(doc)


def test_relative_inputs_resolve_against_recipe_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "r.yaml"
    path.write_text(yaml.safe_dump(BASE))
    r = load_recipe(path)
    assert r.sources.foregrounds[0].images == (tmp_path / "sub" / "imgs").resolve()
    assert r.harmonization.method == "illumination" and r.harmonization.strength == (0.1, 0.1) and r.edges.alpha == "refine"


def test_schema_export_and_cli(tmp_path):
    schema = recipe_schema()
    assert {"sources", "balance", "harmonization", "edges", "augment"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False
    out = tmp_path / "s.json"
    res = CliRunner().invoke(app, ["schema", "--out", str(out)])
    assert res.exit_code == 0 and json.loads(out.read_text())["title"] == "Recipe"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_with(bogus=1)))
    res = CliRunner().invoke(app, ["validate", "--recipe", str(bad)])
    assert res.exit_code == 2 and "bogus: unknown key" in res.output


def test_source_ids_file_restricts_pools(tmp_path):
    from synth.recipe import BackgroundPool, ForegroundPool
    from synth.sources import scan_backgrounds, scan_foregrounds
    from tests.conftest import ECSSD

    ids = sorted(p.stem for p in (ECSSD / "images").glob("*.jpg"))[:5]
    f = tmp_path / "ids.txt"
    f.write_text("\n".join([ids[0], ids[3], "ghost"]) + "\n")
    fg_items, fg_q, _ = scan_foregrounds(ForegroundPool(name="e", kind="image_mask", images=ECSSD / "images", masks=ECSSD / "masks", ids=f))
    assert sorted(i.fg_id for i in fg_items) == [f"e/{ids[0]}", f"e/{ids[3]}"]
    assert [(q.item_id, q.reason) for q in fg_q] == [("e/ghost", "id listed in the ids file has no file")]
    bg_items, _ = scan_backgrounds(BackgroundPool(name="b", kind="folder", images=ECSSD / "images", ids=f))
    assert sorted(i.bg_id for i in bg_items) == [f"b/{ids[0]}", f"b/{ids[3]}"]
