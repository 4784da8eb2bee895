"""Rater submit-to-next-item latency, through the service layer and through a real browser. Prints
Markdown tables.

    python benchmarks/rater_latency.py [--raters 20] [--per-rater 50] [--backend postgresql|sqlite|both]
    python benchmarks/rater_latency.py --browser [--sessions 5,20] [--per-session 6] [--backend postgresql]

Set-up (not timed): a fresh catalog (a new schema of PostgreSQL database ``test`` at 127.0.0.1:5432,
dropped afterwards; or a SQLite file), 200 real ECSSD photos scored by a prediction-folder release,
and one campaign giving each of ``--raters`` raters ``--per-rater`` items. Timed: every rater runs in
its own thread, logged in once, and loops ``submit_and_next`` (store the rating, fetch the next item:
what the rating page calls) as fast as it can, so the ``--raters`` threads hit the catalog at the
same time. One sample is the wall time of one such call. Target (issue 5): p95 <= 200 ms on
PostgreSQL with 20 concurrent raters.

``--browser``: the same catalog behind the real server (``raters serve``), and ``N`` concurrent
Chromium sessions (one browser, one context each, driven together with Playwright's async API),
each logged in as its own rater. A session answers its item with the keyboard shortcuts (not timed)
and presses Enter; one sample is the time from that key press to the next item's cut-out image
decoded in the page (``img.complete`` with its pixels), which is what a rater waits for. Run on
this machine the browsers, the server and the catalog share its cores, so the numbers include that
contention.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ANSWER = {"overall": 4, "edge": 3, "completeness": "whole", "background_leak": "none", "artifacts": [], "would_use": True,
          "comment": "benchmark"}


def run(url: str, n_raters: int, per_rater: int, tmp: Path) -> dict:
    from raters import service as S
    from raters.campaigns import create_campaign
    from tests.helpers import add_raters, scored_catalog

    total = n_raters * per_rater
    n_items = min(200, total)
    k = total // n_items
    if k > n_raters:
        raise SystemExit(f"--per-rater {per_rater} needs more than 200 photos per rater")
    w = scored_catalog(url, tmp, n=n_items)
    e = w["engine"]
    names = [f"bench{i:02d}" for i in range(n_raters)]
    pw = add_raters(e, names, admin=None)
    create_campaign(e, "bench", [w["runs"]["good"]], n_items, k, seed=0)
    lat: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(n_raters)

    def rater(name: str) -> None:
        t = S.login(e, name, pw[name])
        item = S.next_item(e, t)
        start.wait()
        mine = []
        while item is not None:
            t0 = time.perf_counter()
            item = S.submit_and_next(e, t, item["assignment_id"], ANSWER, seconds=1.0)["next"]
            mine.append(time.perf_counter() - t0)
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=rater, args=(n,)) for n in names]
    t0 = time.perf_counter()
    [th.start() for th in threads]
    [th.join() for th in threads]
    wall = time.perf_counter() - t0
    e.dispose()
    ms = np.array(lat) * 1000
    return {"n": int(ms.size), "p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
            "p99": float(np.percentile(ms, 99)), "max": float(ms.max()), "per_s": ms.size / wall}


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
NEXT_IMAGE = """(old) => {
  const img = Array.from(document.querySelectorAll('img[alt^="cut-out "]')).find(i => i.alt !== old);
  return !!img && img.complete && img.naturalWidth > 0;
}"""


def browser_run(url: str, n_sessions: int, per_session: int, tmp: Path) -> dict:
    """``n_sessions`` concurrent Chromium sessions through ``raters serve`` (see the module docstring)."""
    import asyncio

    from playwright.async_api import async_playwright

    from raters.campaigns import create_campaign
    from tests.helpers import add_raters, scored_catalog, serve_app

    n_items = min(200, n_sessions * (per_session + 1))
    w = scored_catalog(url, tmp, n=n_items)
    names = [f"web{i:02d}" for i in range(n_sessions)]
    pw = add_raters(w["engine"], names, admin=None)
    create_campaign(w["engine"], "bench", [w["runs"]["good"]], n_items, 1, raters=names, seed=0)
    lat: list[float] = []

    start: dict[str, float] = {}

    async def session(browser, app: str, name: str, ready: asyncio.Barrier, opening: asyncio.Semaphore) -> None:
        ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
        page = await ctx.new_page()
        async with opening:  # log in a few at a time (not timed): 20 page loads at once starve 2 cores
            await page.goto(app, timeout=300_000)
            await page.get_by_role("textbox", name="Name").fill(name, timeout=300_000)
            await page.get_by_role("textbox", name="Password").fill(pw[name])
            await page.get_by_role("button", name="Log in").click()
            await page.wait_for_function("() => window.__liftlabForm && window.__liftlabForm.installed", timeout=300_000)
            await page.wait_for_function(NEXT_IMAGE, arg="", timeout=300_000)
        await ready.wait()  # every session shows its first item: the timed loops start together
        start.setdefault("t", time.perf_counter())
        for _ in range(per_session):
            old = await page.locator('img[alt^="cut-out "]').first.get_attribute("alt")
            item = old.split(" ", 1)[1]
            form = page.locator(f'[data-testid="stForm"]:has(.st-key-q_overall_{item})')
            await form.wait_for(timeout=300_000)
            count = (f"() => ['overall', 'edge', 'completeness', 'leak', 'use']"
                     f".filter(q => document.querySelector(`.st-key-q_${{q}}_{item} input:checked`)).length")
            while (n := await page.evaluate(count)) < 5:  # answer by keys, one question at a time
                await page.keyboard.press("43111"[n])  # overall 4, edge 3, whole, no leak, would use
                await page.wait_for_function(f"(n) => ({count})() > n", arg=n, timeout=300_000)
            t0 = time.perf_counter()
            await page.keyboard.press("Enter")
            await page.wait_for_function(NEXT_IMAGE, arg=old, timeout=300_000)
            lat.append(time.perf_counter() - t0)
        await ctx.close()

    async def main_async(app: str) -> float:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            ready, opening = asyncio.Barrier(n_sessions), asyncio.Semaphore(2)
            await asyncio.gather(*(session(browser, app, n, ready, opening) for n in names))
            await browser.close()
        return time.perf_counter() - start["t"]

    with serve_app(url) as app:
        wall = asyncio.run(main_async(app))
    w["engine"].dispose()
    ms = np.array(lat) * 1000
    return {"n": int(ms.size), "p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
            "p99": float(np.percentile(ms, 99)), "max": float(ms.max()), "per_s": ms.size / wall}


@contextmanager
def _catalog(backend: str, tmp: Path):
    """A fresh catalog URL of ``backend`` (a PostgreSQL schema is dropped afterwards)."""
    if backend != "postgresql":
        yield f"sqlite:///{tmp / 'bench.db'}"
        return
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    dsn = "host=127.0.0.1 port=5432 dbname=test user=postgres"
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(f'DROP SCHEMA "{schema}" CASCADE')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raters", type=int, default=20)
    ap.add_argument("--per-rater", type=int, default=50)
    ap.add_argument("--backend", choices=["postgresql", "sqlite", "both"], default="both")
    ap.add_argument("--browser", action="store_true", help="N concurrent Chromium sessions through the real server")
    ap.add_argument("--sessions", default="5,20", help="browser mode: session counts, comma-separated")
    ap.add_argument("--per-session", type=int, default=6, help="browser mode: timed submits per session")
    args = ap.parse_args()
    rows = []
    backends = ["postgresql", "sqlite"] if args.backend == "both" else [args.backend]
    if args.browser:
        backends = ["postgresql"] if args.backend == "both" else backends
        print("| backend | browser sessions | samples | p50 ms | p95 ms | p99 ms | max ms | submits/s |")
        print("|---|---|---|---|---|---|---|---|")
        for backend in backends:
            for n in (int(x) for x in args.sessions.split(",")):
                with tempfile.TemporaryDirectory() as tmp, _catalog(backend, Path(tmp)) as url:
                    r = browser_run(url, n, args.per_session, Path(tmp))
                print(f"| {backend} | {n} | {r['n']} | {r['p50']:.0f} | {r['p95']:.0f} | {r['p99']:.0f} | {r['max']:.0f} | {r['per_s']:.1f} |",
                      flush=True)
        return
    for backend in backends:
        with tempfile.TemporaryDirectory() as tmp, _catalog(backend, Path(tmp)) as url:
            res = run(url, args.raters, args.per_rater, Path(tmp))
        rows.append((backend, res))
    print(f"\nsubmit + next item through raters.service, {args.raters} concurrent raters\n")
    print("| backend | samples | p50 ms | p95 ms | p99 ms | max ms | submits/s | target p95 <= 200 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for backend, r in rows:
        ok = "met" if r["p95"] <= 200 else "missed"
        print(f"| {backend} | {r['n']} | {r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} | {r['max']:.1f} | {r['per_s']:.0f} | {ok} |")


if __name__ == "__main__":
    main()
