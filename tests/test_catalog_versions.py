"""Nothing a person made disappears implicitly: every routine command run twice, or with changed
content, leaves the runs, campaigns and ratings of the first in place (SQLite and PostgreSQL);
deleting is explicit; output folders are owned; a catalog of the previous schema upgrades with its
data; evalhub slices and fairness groups agree; builds store their targets."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sqlalchemy import func, inspect, select, text
from sqlalchemy.exc import IntegrityError
from typer.testing import CliRunner

import db
from db.catalog import DeleteRefused, delete, dependents, register_release
from db.models import Assignment, Campaign, Dataset, Rating, Release, Run
from evalhub.cli import app as evalhub_app
from evalhub.datasets import import_dataset
from evalhub.runs import read_run
from evalhub.scoring import ScoreError, score
from raters import service as S
from raters.campaigns import create_campaign
from synth.build import BuildError, build
from synth.folders import LOCK, MARKER, read_marker
from synth.io import sha256_file
from synth.recipe import parse_recipe
from tests.conftest import ECSSD, ROOT, ecssd_recipe
from tests.helpers import add_raters, ecssd_ids, erode_px, write_predictions

runner = CliRunner()
FIXTURE = Path(__file__).parent / "fixtures" / "catalog-0003.sqlite"
SINGLE = {"overall": 4, "edge": 3, "completeness": "whole", "background_leak": "none", "artifacts": [], "would_use": True}


def counts(engine) -> dict[str, int]:
    with db.session_scope(engine) as s:
        return {m.__tablename__: s.scalar(select(func.count()).select_from(m)) for m in (Run, Campaign, Assignment, Rating)}


def rated_world(url: str, tmp: Path) -> dict:
    """12 ECSSD photos, release 'r' scored into run/, raters r1-r2 and a campaign they fully rated."""
    engine = db.connect(url)
    import_dataset(engine, "e12", ECSSD / "images", ECSSD / "masks", limit=12)
    ids = ecssd_ids(12)
    write_predictions(tmp / "pred", ids, lambda m, k: erode_px(m, 2))
    runner.invoke(evalhub_app, ["release", "add", "r", "--predictions", str(tmp / "pred"), "--database-url", url], catch_exceptions=False)
    score(engine, "r", "e12", tmp / "run", workers=1, n_boot=50, progress=False)
    pw = add_raters(engine, ["r1", "r2"])
    create_campaign(engine, "c", [tmp / "run"], n_items=4, raters_per_item=2, seed=0)
    for name in ("r1", "r2"):
        tok = S.login(engine, name, pw[name])
        while (item := S.next_item(engine, tok)) is not None:
            S.submit(engine, tok, item["assignment_id"], SINGLE, seconds=3.0)
    return {"engine": engine, "url": url, "ids": ids, "tmp": tmp}


def test_routine_commands_twice_or_changed_keep_every_rating(catalog_url, tmp_path):
    w = rated_world(catalog_url, tmp_path)
    engine, url = w["engine"], w["url"]
    first = counts(engine)
    assert first == {"runs": 1, "campaigns": 1, "assignments": 8, "ratings": 8}
    db_opt = ["--database-url", url]

    # re-import under the same name, same files: a no-op
    r = runner.invoke(evalhub_app, ["import-dataset", "e12", "--images", str(ECSSD / "images"), "--masks", str(ECSSD / "masks"),
                                    "--limit", "12", *db_opt])
    assert r.exit_code == 0 and "e12@1 already holds exactly this content; nothing written" in r.output, r.output
    # ... changed content: revision 2; revision 1 keeps its run and ratings
    r = runner.invoke(evalhub_app, ["import-dataset", "e12", "--images", str(ECSSD / "images"), "--masks", str(ECSSD / "masks"),
                                    "--limit", "10", *db_opt])
    assert r.exit_code == 0 and "imported e12 as revision 2" in r.output, r.output
    assert counts(engine) == first

    # release add with an existing name: identical -> no-op; changed threshold -> revision 2
    r = runner.invoke(evalhub_app, ["release", "add", "r", "--predictions", str(tmp_path / "pred"), *db_opt])
    assert r.exit_code == 0 and "release r@1 already holds exactly this content" in r.output, r.output
    r = runner.invoke(evalhub_app, ["release", "add", "r", "--predictions", str(tmp_path / "pred"), "--threshold", "0.7", *db_opt])
    assert r.exit_code == 0 and "registered as r@2 (revision 1 and earlier stay, with their runs)" in r.output, r.output
    assert counts(engine) == first

    # score into the run's folder again: the same run (r@1 on e12@1, same settings) is a no-op ...
    same = score(engine, "r@1", "e12@1", tmp_path / "run", workers=1, n_boot=50, progress=False)
    assert same.reused and same.run_id == read_run(engine, tmp_path / "run").record.id
    # ... another release (or revision) into it is refused, naming the run and what depends on it
    with pytest.raises(ScoreError, match=r"holds run \d+ \(r@1 on e12@1\) with 1 run\(s\) .* 1 campaign\(s\) \['c'\], 8 rating\(s\)"):
        score(engine, "r", "e12@1", tmp_path / "run", workers=1, n_boot=50, progress=False)
    r = runner.invoke(evalhub_app, ["score", "--release", "r", "--dataset", "e12", "--out", str(tmp_path / "run"), "--no-progress", *db_opt])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "holds run" in r.output, r.output
    assert counts(engine) == first

    # the catalog itself refuses to cascade into what people made
    with engine.connect() as c:
        with pytest.raises(IntegrityError):
            c.execute(text("DELETE FROM runs"))
        c.rollback()
        with pytest.raises(IntegrityError):
            c.execute(text("DELETE FROM datasets WHERE name = 'e12' AND revision = 1"))
        c.rollback()
    assert counts(engine) == first

    # deleting is explicit: listed first, refused while ratings depend on it, then done in order
    r = runner.invoke(evalhub_app, ["delete", "release", "r@1", *db_opt])
    assert r.exit_code == 0 and "would delete release r@1 with 1 run(s)" in r.output and "--with-ratings" in r.output, r.output
    assert counts(engine) == first
    r = runner.invoke(evalhub_app, ["delete", "release", "r@1", "--yes", *db_opt])
    assert r.exit_code == 2 and "8 rating(s); nothing deleted" in r.output, r.output
    assert counts(engine) == first
    with pytest.raises(DeleteRefused):
        delete(engine, "dataset", "e12@1")
    dep = delete(engine, "release", "r@1", with_ratings=True)
    assert (dep.runs, dep.campaigns, dep.n_ratings) == ([str((tmp_path / "run").resolve())], ["c"], 8)
    assert counts(engine) == {"runs": 0, "campaigns": 0, "assignments": 0, "ratings": 0}
    with db.session_scope(engine) as s:
        assert sorted(s.execute(select(Release.name, Release.revision)).all()) == [("r", 2)]
        assert sorted(s.execute(select(Dataset.name, Dataset.revision)).all()) == [("e12", 1), ("e12", 2)]
    assert (tmp_path / "run" / "samples.parquet").is_file()  # files are never touched
    engine.dispose()


def test_build_overwrite_refuses_while_runs_use_the_dataset(tmp_path, cache_dir):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    recipe = parse_recipe(ecssd_recipe(cache_dir, n_samples=4, negatives=0.0))
    out = tmp_path / "build"
    build(recipe, out, workers=1, progress=False, catalog_url=url)
    engine = db.connect(url)
    manifest = pd.read_parquet(out / "manifest.parquet")
    pred = tmp_path / "pred"
    (pred / "masks").mkdir(parents=True)
    for key, mask in zip(manifest["sample_id"], manifest["mask_path"]):
        shutil.copy(out / mask, pred / "masks" / f"{key}.png")
    register_release(engine, "copy", "predictions", str(pred), 0.5)
    score(engine, "copy", "ecssd-small", tmp_path / "run", workers=1, n_boot=20, progress=False)
    before = {p: sha256_file(p) for p in sorted(out.rglob("*.png"))}
    with pytest.raises(ScoreError, match="build holds a build written by `synth build`; choose another --out"):
        score(engine, "copy", "ecssd-small", out, workers=1, n_boot=20, progress=False)
    with pytest.raises(BuildError, match=r"holds dataset ecssd-small@1, which 1 run\(s\) .* depend on"):
        build(recipe, out, workers=1, progress=False, overwrite=True, catalog_url=url)
    assert {p: sha256_file(p) for p in sorted(out.rglob("*.png"))} == before
    assert counts(engine)["runs"] == 1
    # the same recipe into another folder is other content (another root): revision 2, revision 1 stays
    res = build(recipe, tmp_path / "build2", workers=1, progress=False, catalog_url=url)
    with db.session_scope(engine) as s:
        assert s.get(Dataset, res.dataset_id).revision == 2
    engine.dispose()


def test_overwrite_with_a_recipe_that_cannot_plan_deletes_nothing(tmp_path, cache_dir):
    doc = ecssd_recipe(cache_dir, n_samples=3, catalog={"enabled": False})
    out = tmp_path / "b"
    build(parse_recipe(doc), out, workers=1, progress=False)
    before = {p.name: sha256_file(p) for p in sorted((out / "images").iterdir())}
    bad = {**doc, "splits": {"train": 0.4, "val": 0.3, "test": 0.3}}
    bad["sources"] = {**doc["sources"], "backgrounds": [{**doc["sources"]["backgrounds"][0], "limit": 1}]}
    with pytest.raises(Exception, match="no background photo falls in"):
        build(parse_recipe(bad), out, workers=1, progress=False, overwrite=True)
    assert {p.name: sha256_file(p) for p in sorted((out / "images").iterdir())} == before
    assert read_marker(out).state == "complete" and (out / "manifest.parquet").is_file()


def test_overwrite_refuses_a_folder_liftlab_did_not_write(tmp_path, cache_dir):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"\xff\xd8 my photo")
    (out / "manifest.parquet").write_bytes(b"not ours")
    with pytest.raises(BuildError, match=r"holds files no liftlab command wrote \(holiday.jpg, manifest.parquet\).*--overwrite only clears"):
        build(parse_recipe(ecssd_recipe(cache_dir, n_samples=2, catalog={"enabled": False})), out, workers=1, progress=False, overwrite=True)
    assert sorted(p.name for p in out.iterdir() if p.name != LOCK) == ["holiday.jpg", "manifest.parquet"]
    assert (out / "holiday.jpg").read_bytes() == b"\xff\xd8 my photo"
    # and evalhub score refuses it too
    engine = db.connect(f"sqlite:///{tmp_path / 'c.db'}")
    import_dataset(engine, "e4", ECSSD / "images", ECSSD / "masks", limit=4)
    write_predictions(tmp_path / "pred", ecssd_ids(4))
    register_release(engine, "r", "predictions", str(tmp_path / "pred"), 0.5)
    with pytest.raises(ScoreError, match="holds files no liftlab command wrote"):
        score(engine, "r", "e4", out, workers=1, progress=False)
    assert (out / "holiday.jpg").read_bytes() == b"\xff\xd8 my photo"
    engine.dispose()


def test_two_concurrent_builds_into_one_folder(tmp_path, cache_dir):
    doc = ecssd_recipe(cache_dir, n_samples=24, catalog={"enabled": False}, output={"size": [192, 192]})
    recipe_path = tmp_path / "r.yaml"
    recipe_path.write_text(yaml.safe_dump(doc))
    out = tmp_path / "shared"
    args = ["build", "--recipe", str(recipe_path), "--out", str(out), "--workers", "1", "--no-progress"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # the second command is started first and waits, imports done, for the first to hold the folder:
    # a warm build of 24 small samples can finish within an interpreter's start-up
    waiting = ("import sys\nfrom synth.cli import cli\nprint('ready', flush=True)\nsys.stdin.readline()\n"
               f"sys.argv = ['synth'] + {args + ['--overwrite']!r}\ncli()\n")
    second = subprocess.Popen([sys.executable, "-c", waiting], env=env, cwd=tmp_path, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert second.stdout.readline().strip() == "ready"
        first = subprocess.Popen([sys.executable, "-m", "synth.cli", *args], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while time.time() < deadline and not (out / MARKER).exists():
            time.sleep(0.01)
        assert (out / MARKER).exists(), "the first build never claimed the folder"
    except BaseException:
        second.kill()  # never let it go on to build when this test has failed
        raise
    _, second_err = second.communicate("go\n", timeout=120)
    assert second.returncode == 2, second_err
    assert "is being written by another liftlab command (pid" in second_err and second_err.count("\n") == 1, second_err
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert read_marker(out).state == "complete"
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert len(manifest) == 24
    for col in ("image", "mask", "alpha", "trimap"):
        for rel, digest in zip(manifest[f"{col}_path"], manifest[f"sha256_{col}"]):
            assert sha256_file(out / rel) == digest, rel


def test_upgrading_a_catalog_of_the_previous_schema_keeps_its_data(tmp_path):
    path = tmp_path / "old.sqlite"
    shutil.copy(FIXTURE, path)
    with sqlite3.connect(path) as c:
        old = {t: c.execute(f"select count(*) from {t}").fetchone()[0]
               for t in ("datasets", "samples", "sample_attributes", "releases", "runs", "scores", "raters", "campaigns",
                         "campaign_items", "assignments", "ratings")}
        old_iou = dict(c.execute("select id, iou from scores").fetchall())
        old_sad = dict(c.execute("select id, sad from scores").fetchall())
        assert c.execute("select version_num from alembic_version").fetchone()[0] == "0003"
    engine = db.connect(f"sqlite:///{path}")
    with engine.connect() as c:
        assert c.execute(text("select version_num from alembic_version")).scalar() == "0006"
        for t, n in old.items():
            assert c.execute(text(f"select count(*) from {t}")).scalar() == n, t
        iou = dict(c.execute(text("select score_id, value from metric_values where metric = 'iou'")).all())
        sad = dict(c.execute(text("select score_id, value from metric_values where metric = 'sad'")).all())
        assert iou == old_iou and sad == old_sad and all(v is None for v in sad.values())
        assert c.execute(text("select count(*) from metric_values")).scalar() == 11 * old["scores"]
        assert set(c.execute(text("select revision from datasets union select revision from releases")).scalars()) == {1}
    fks = {(fk["referred_table"], fk["constrained_columns"][0]): fk["options"].get("ondelete") for fk in inspect(engine).get_foreign_keys("ratings")}
    assert set(fks.values()) == {"RESTRICT"}
    # the upgraded catalog works: ratings still join their campaigns, and nothing cascades
    with db.session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(Rating).join(Assignment, Assignment.id == Rating.assignment_id)) == old["ratings"]
    with pytest.raises(DeleteRefused, match=r"has 1 run\(s\)"):
        delete(engine, "release", "good")
    assert dependents(engine, "dataset", "ecssd").n_ratings == old["ratings"]
    engine.dispose()


def _copy_rows(src: Path, engine) -> None:
    """Every row of the 0003 SQLite fixture into ``engine`` (migrated to 0003), by reflection."""
    import sqlalchemy as sa

    src_engine = sa.create_engine(f"sqlite:///{src}")
    src_md, dst_md = sa.MetaData(), sa.MetaData()
    src_md.reflect(src_engine)
    dst_md.reflect(engine)
    with src_engine.connect() as s, engine.begin() as d:
        for table in dst_md.sorted_tables:
            if table.name == "alembic_version":
                continue
            rows = [dict(r._mapping) for r in s.execute(src_md.tables[table.name].select())]
            for r in rows:
                for col in table.columns:
                    if isinstance(col.type, sa.Boolean) and r.get(col.name) is not None:
                        r[col.name] = bool(r[col.name])
            if rows:
                d.execute(table.insert(), rows)
        for table in dst_md.sorted_tables:  # serial sequences past the copied ids
            if "id" in table.columns and table.name != "alembic_version":
                d.execute(text(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), COALESCE((SELECT MAX(id) FROM {table.name}), 0) + 1, false)"))
    src_engine.dispose()


def test_upgrading_a_postgres_catalog_of_the_previous_schema(pg_url):
    engine = db.engine.create_catalog_engine(pg_url)
    db.upgrade(engine, "0003")
    _copy_rows(FIXTURE, engine)
    with engine.connect() as c:
        n_ratings = c.execute(text("select count(*) from ratings")).scalar()
        old_iou = dict(c.execute(text("select id, iou from scores")).all())
    db.upgrade(engine)
    with engine.connect() as c:
        assert c.execute(text("select version_num from alembic_version")).scalar() == "0006"
        assert c.execute(text("select count(*) from ratings")).scalar() == n_ratings == 14
        assert dict(c.execute(text("select score_id, value from metric_values where metric = 'iou'")).all()) == old_iou
        with pytest.raises(IntegrityError):
            c.execute(text("DELETE FROM campaigns"))
    engine.dispose()


def test_slices_and_fairness_groups_are_one_engine(tmp_path):
    """The same group of the same run: equal numbers and equal CIs in evalhub slices, fairness
    group tables and fairlearn's MetricFrame (point values)."""
    from fairlearn.metrics import MetricFrame

    from evalhub.slicing import slice_table
    from fairness.groups import GroupSettings, group_table

    engine = db.connect(f"sqlite:///{tmp_path / 'c.db'}")
    import_dataset(engine, "e60", ECSSD / "images", ECSSD / "masks", limit=60)
    ids = ecssd_ids(60)
    # some predictions empty: a slice with IoU 0 images and some negatives of the gate
    write_predictions(tmp_path / "p", ids, lambda m, k: np.zeros_like(m) if ids.index(k) % 7 == 0 else erode_px(m, ids.index(k) % 5),
                      conf=lambda i: round(0.3 + 0.6 * ((i * 5) % 11) / 10, 3))
    register_release(engine, "r", "predictions", str(tmp_path / "p"), 0.5)
    score(engine, "r", "e60", tmp_path / "run", workers=1, n_boot=400, min_n=5, progress=False)
    table = read_run(engine, tmp_path / "run").table
    slices = {(s["attribute"], s["value"]): s for s in slice_table(table, attributes=["area_bucket"], intersections="", n_boot=400, min_n=5)["slices"]}
    fair = group_table(table, "area_bucket", GroupSettings(n_boot=400, min_n=5), n_perm=50)
    frame = MetricFrame(metrics=lambda y, p: float(np.mean(p)), y_true=table["iou"], y_pred=table["iou"],
                        sensitive_features=table["attr_area_bucket"])
    pos = table[table["has_subject"]]
    assert fair["groups"]
    for g in fair["groups"]:
        s = slices[("area_bucket", g["value"])]
        for m in ("iou", "boundary_f1"):
            assert s["metrics"][m]["mean"] == g["metrics"][m]["value"]
            assert (s["metrics"][m]["lo"], s["metrics"][m]["hi"]) == (g["metrics"][m]["lo"], g["metrics"][m]["hi"])
        assert s["acceptance_rate"] == g["metrics"]["acceptance_rate"]["value"]
        assert s["ece"] == g["metrics"]["ece"]["value"]
        assert g["metrics"]["iou"]["value"] == pytest.approx(pos.loc[pos["attr_area_bucket"] == g["value"], "iou"].mean())
        assert g["metrics"]["iou"]["value"] == pytest.approx(frame.by_group[g["value"]])
    engine.dispose()


def test_build_stores_its_targets_and_the_audit_reads_them(tmp_path, cache_dir):
    from fairness.audit import composition

    url = f"sqlite:///{tmp_path / 'c.db'}"
    doc = ecssd_recipe(cache_dir, n_samples=8, negatives=0.25, balance={"columns": ["source_area_bucket"], "mode": "uniform"})
    res = build(parse_recipe(doc), tmp_path / "b", workers=1, progress=False, catalog_url=url)
    engine = db.connect(url)
    with db.session_scope(engine) as s:
        stored = s.get(Dataset, res.dataset_id).targets
    plan_cells = {tuple(c["cell"].values()): c["target"] for c in res.report["balance"]["cells"]}
    assert stored["negatives"] == 0.25 and stored["splits"] == {"train": 0.6, "val": 0.2, "test": 0.2}
    assert {tuple(c["values"]): c["target"] for c in stored["balance"]["cells"]} == plan_cells
    audit = composition(engine, "ecssd-small")
    assert audit["targets"]["source"] == "build"
    assert audit["targets"]["negatives"]["achieved"] == pytest.approx(2 / 8)
    assert {tuple(c["cell"].values()): c["target"] for c in audit["targets"]["balance"]["cells"]} == plan_cells
    engine.dispose()
