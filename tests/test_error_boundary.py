"""One error boundary per command line (issue 13, classes 2 and 3): faults of the environment and
nonsense values end as one line naming the file, field, option or URL, exit code 2, the traceback
only with --debug; the console scripts run their apps through :func:`synth.errors.run`."""

from __future__ import annotations

import sqlite3

import pytest
import yaml

import db
from evalhub.cli import app as evalhub_app
from fairness.cli import app as fairness_app
from raters.cli import app as raters_app
from synth.cli import app as synth_app
from synth.errors import describe, run
from tests.conftest import ECSSD, ecssd_recipe


def call(app, argv, capsys) -> tuple[int, str, str]:
    """Run ``argv`` through the boundary; (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as ex:
        run(app, argv)
        raise SystemExit(0)
    out = capsys.readouterr()
    return ex.value.code, out.out, out.err


def one_line_error(code, err, *needles):
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    for n in needles:
        assert n in err, (n, err)


IMPORT = ["import-dataset", "e2", "--images", str(ECSSD / "images"), "--masks", str(ECSSD / "masks"), "--limit", "2"]


def test_catalog_faults_are_one_line_naming_the_url(tmp_path, capsys, monkeypatch):
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not sqlite" * 100)
    code, _, err = call(evalhub_app, ["datasets", "--database-url", f"sqlite:///{corrupt}"], capsys)
    one_line_error(code, err, f"catalog sqlite:///{corrupt}", "not a database", "restore it from a backup")

    newer = tmp_path / "newer.db"
    db.connect(f"sqlite:///{newer}").dispose()
    with sqlite3.connect(newer) as c:
        c.execute("update alembic_version set version_num = '9999'")
    code, _, err = call(evalhub_app, ["datasets", "--database-url", f"sqlite:///{newer}"], capsys)
    one_line_error(code, err, "migrated by a newer liftlab", "9999", "upgrade liftlab")

    code, _, err = call(evalhub_app, ["datasets", "--database-url", "postgresql://liftlab:secret@127.0.0.1:1/test"], capsys)
    one_line_error(code, err, "127.0.0.1:1/test", "cannot be reached")
    assert "secret" not in err  # the password is hidden

    monkeypatch.setenv("DATABASE_URL", "not a url at all")
    code, _, err = call(evalhub_app, ["datasets"], capsys)
    one_line_error(code, err, "'not a url at all' is not a database URL")
    monkeypatch.delenv("DATABASE_URL")

    ok = tmp_path / "ok.db"
    db.connect(f"sqlite:///{ok}").dispose()
    readonly = f"sqlite:///file:{ok}?mode=ro&uri=true"
    code, _, err = call(evalhub_app, [*IMPORT, "--database-url", readonly], capsys)
    one_line_error(code, err, "readonly", "use a writable catalog")

    monkeypatch.setenv("LIFTLAB_SQLITE_BUSY_MS", "200")
    holder = sqlite3.connect(ok, timeout=0.1)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        code, _, err = call(evalhub_app, [*IMPORT, "--database-url", f"sqlite:///{ok}"], capsys)
        one_line_error(code, err, f"catalog sqlite:///{ok}", "locked", "busy timeout")
    finally:
        holder.rollback()
        holder.close()


def test_files_and_folders_faults_are_one_line(tmp_path, capsys, cache_dir):
    url = ["--database-url", f"sqlite:///{tmp_path / 'c.db'}"]
    code, _, err = call(evalhub_app, [*IMPORT, "--ids", str(tmp_path / "missing.txt"), *url], capsys)
    one_line_error(code, err, "missing.txt", "cannot read ids file")
    # --out that is a file
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(ecssd_recipe(cache_dir, n_samples=2, catalog={"enabled": False})))
    code, _, err = call(synth_app, ["build", "--recipe", str(recipe), "--out", str(a_file), "--no-progress"], capsys)
    one_line_error(code, err, f"--out {a_file} is a file, not a folder")
    code, _, err = call(evalhub_app, ["score", "--release", "r", "--dataset", "e2", "--out", str(a_file), *url], capsys)
    assert code == 2 and err.count("\n") == 1  # the unknown release is named first
    # a full disk names the file and how to finish the build
    assert describe(OSError(28, "No space left on device", "/data/out/images/0001.jpg")) == (
        "/data/out/images/0001.jpg: No space left on device; free space, then finish an interrupted build with `synth build --resume`")
    assert describe(PermissionError(13, "Permission denied", "/ro/manifest.parquet")) == "/ro/manifest.parquet: Permission denied"


def test_a_build_that_fails_before_its_first_sample_leaves_no_folder(tmp_path, capsys, cache_dir):
    """Nothing half-written: inputs that fail the scan or the plan, and --resume of a folder that is
    not there, end in one line before the new --out (or its parents) is made; an existing empty
    --out that failed the same way holds only liftlab's lock file. A finished build into the same
    --out is refused, naming what to do (--resume there only reports it again)."""
    doc = ecssd_recipe(cache_dir, n_samples=2, catalog={"enabled": False})
    doc["sources"]["foregrounds"][0]["images"] = str(tmp_path / "no-such-pool")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    new = tmp_path / "runs" / "new"
    code, _, err = call(synth_app, ["build", "--recipe", str(bad), "--out", str(new), "--no-progress"], capsys)
    one_line_error(code, err, "no-such-pool")
    assert not (tmp_path / "runs").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    code, _, err = call(synth_app, ["build", "--recipe", str(bad), "--out", str(existing), "--no-progress"], capsys)
    one_line_error(code, err, "no-such-pool")
    assert existing.is_dir() and [p.name for p in existing.iterdir()] == [".liftlab.lock"]
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(ecssd_recipe(cache_dir, n_samples=2, catalog={"enabled": False})))
    code, _, err = call(synth_app, ["build", "--recipe", str(good), "--out", str(new), "--resume", "--no-progress"], capsys)
    one_line_error(code, err, f"{new}: --resume given but there is no such folder")
    assert not (tmp_path / "runs").exists()
    code, _, err = call(synth_app, ["build", "--recipe", str(good), "--out", str(new), "--workers", "1", "--no-progress"], capsys)
    assert code == 0, err
    code, _, err = call(synth_app, ["build", "--recipe", str(good), "--out", str(new), "--workers", "1", "--no-progress"], capsys)
    one_line_error(code, err, "already holds a finished synth build; build into another --out, or pass --overwrite")


def test_debug_shows_the_traceback(tmp_path, capsys):
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"x" * 4096)
    with pytest.raises(db.engine.CatalogError, match="not a database"):
        run(evalhub_app, ["datasets", "--database-url", f"sqlite:///{corrupt}", "--debug"])


def test_nonsense_values_are_refused_naming_the_field(tmp_path, capsys, cache_dir):
    base = ecssd_recipe(cache_dir, n_samples=2, catalog={"enabled": False})
    for bad, needle in (({"n_samples": True}, "n_samples: Value error, a boolean (true)"),
                        ({"n_samples": 10_000_000}, "n_samples: Input should be less than or equal to 1000000"),
                        ({"seed": False}, "seed: Value error, a boolean (false)")):
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump({**base, **bad}))
        code, _, err = call(synth_app, ["validate", "--recipe", str(path)], capsys)
        assert code == 2 and needle in err, err
    dup = tmp_path / "dup.yaml"
    dup.write_text("name: a\nseed: 1\nseed: 2\nn_samples: 3\n")
    code, _, err = call(synth_app, ["validate", "--recipe", str(dup)], capsys)
    assert code == 2 and err.count("\n") == 1 and "duplicate key 'seed' (first at line 2)" in err, err
    code, _, err = call(raters_app, ["campaign", "create", "c", "--run", str(tmp_path), "--items", "0"], capsys)
    one_line_error(code, err, "'--items'", "greater than or equal to 1")
    code, _, err = call(evalhub_app, ["score", "--release", "r", "--dataset", "d", "--out", str(tmp_path / "o"), "--accept-iou", "5"], capsys)
    one_line_error(code, err, "'--accept-iou'", "less than or equal to 1")
    code, _, err = call(fairness_app, ["report", "--run", str(tmp_path), "--out", str(tmp_path / "x"), "--n-boot", "0"], capsys)
    one_line_error(code, err, "'--n-boot'", "greater than or equal to 100")
    code, _, err = call(raters_app, ["serve", "--port", "70000"], capsys)
    one_line_error(code, err, "'--port'", "less than or equal to 65535")
    code, out, _ = call(evalhub_app, [], capsys)
    assert "Usage" in out  # no arguments: the help


def test_a_file_name_that_is_not_utf8_is_quarantined_and_the_rest_imported(tmp_path, capsys):
    import os
    import shutil

    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    shutil.copy(ECSSD / "images" / "0001.jpg", tmp_path / "images" / "0001.jpg")
    shutil.copy(ECSSD / "masks" / "0001.png", tmp_path / "masks" / "0001.png")
    shutil.copy(ECSSD / "images" / "0002.jpg", os.fsencode(tmp_path / "images") + b"/caf\xe9.jpg")
    shutil.copy(ECSSD / "masks" / "0002.png", os.fsencode(tmp_path / "masks") + b"/caf\xe9.png")
    code, out, err = call(evalhub_app, ["import-dataset", "n", "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"),
                                        "--database-url", f"sqlite:///{tmp_path / 'c.db'}"], capsys)
    assert code == 0, err
    assert "1 samples" in out and "1 quarantined" in out
    assert "caf\\xe9.jpg: file name is not valid UTF-8; rename it" in err
