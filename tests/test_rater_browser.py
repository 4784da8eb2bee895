"""A real browser: Playwright drives Debian's chromium against ``raters serve`` to log in as a rater
and submit two ratings, which then appear in SQL."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import select

from db.engine import session_scope
from db.models import Rating
from raters.campaigns import create_campaign
from tests.helpers import add_raters, scored_catalog

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
QUESTIONS = {
    "Overall quality (1 = unusable, 5 = perfect)": ["4", "2"],
    "Edge quality (1-5)": ["3", "1"],
    "Is the whole subject there?": ["whole", "partly"],
    "Background leaking into the cut-out": ["none", "major"],
    "Would you use this cut-out?": ["yes", "no"],
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    if not Path(CHROMIUM).exists():
        if os.environ.get("LIFTLAB_REQUIRE_BROWSER"):
            pytest.fail(f"chromium is required but missing at {CHROMIUM} (apt-get install chromium)")
        pytest.skip(f"chromium not installed at {CHROMIUM} (apt-get install chromium)")
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    w = scored_catalog(url, tmp_path, n=12)
    pw = add_raters(w["engine"], ["web"], admin=None)
    create_campaign(w["engine"], "web", [w["runs"]["good"]], 3, 1, raters=["web"], seed=0)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "raters.cli", "serve", "--port", str(port)], cwd=ROOT,
                            env={**os.environ, "DATABASE_URL": url}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1)
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"raters serve exited: {proc.stdout.read().decode()[-2000:]}") from None
                time.sleep(0.25)
        else:
            raise RuntimeError("raters serve did not answer within 50 s")
        yield {"url": f"http://127.0.0.1:{port}/", "engine": w["engine"], "password": pw["web"], "tmp": tmp_path}
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.browser
@pytest.mark.slow
def test_rater_logs_in_and_submits_two_ratings_in_chromium(server):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(server["url"])
            page.get_by_role("textbox", name="Name").fill("web")
            page.get_by_role("textbox", name="Password").fill(server["password"])
            page.get_by_role("button", name="Log in").click()
            page.get_by_text("Logged in as").wait_for(timeout=60_000)
            for n in range(2):
                page.get_by_text(f"item {n + 1} of 3").wait_for(timeout=60_000)
                for question, answers in QUESTIONS.items():
                    group = page.get_by_role("radiogroup", name=question)
                    # the previous item's form may still be on screen while the new one renders:
                    # wait for the fresh, unanswered one, then check that the click took
                    expect(group.locator("input:checked")).to_have_count(0, timeout=60_000)
                    group.get_by_text(answers[n], exact=True).click()
                    expect(group.locator("input:checked")).to_have_count(1, timeout=30_000)
                page.get_by_role("textbox", name="Comment (optional)").fill(f"browser rating {n + 1}")
                page.get_by_role("button", name="Submit rating").click()
            page.get_by_text("item 3 of 3").wait_for(timeout=60_000)
        except Exception:
            page.screenshot(path=str(server["tmp"] / "failure.png"), full_page=True)
            print("page text at failure:", page.inner_text("body")[:3000])
            raise
        finally:
            browser.close()
    with session_scope(server["engine"]) as s:
        rows = s.scalars(select(Rating).order_by(Rating.id)).all()
        got = [(r.overall, r.edge, r.completeness, r.background_leak, r.would_use, r.comment) for r in rows]
    assert got == [(4, 3, "whole", "none", True, "browser rating 1"), (2, 1, "partly", "major", False, "browser rating 2")]
