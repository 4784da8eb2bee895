"""Rater submit-to-next-item latency through the service layer. Prints a Markdown table.

    python benchmarks/rater_latency.py [--raters 20] [--per-rater 50] [--backend postgresql|sqlite|both]

Set-up (not timed): a fresh catalog (a new schema of PostgreSQL database ``test`` at 127.0.0.1:5432,
dropped afterwards; or a SQLite file), 200 real ECSSD photos scored by a prediction-folder release,
and one campaign giving each of ``--raters`` raters ``--per-rater`` items. Timed: every rater runs in
its own thread, logged in once, and loops ``submit_and_next`` (store the rating, fetch the next item:
what the rating page calls) as fast as it can, so the ``--raters`` threads hit the catalog at the
same time. One sample is the wall time of one such call. Target (issue 5): p95 <= 200 ms on
PostgreSQL with 20 concurrent raters.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import uuid
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raters", type=int, default=20)
    ap.add_argument("--per-rater", type=int, default=50)
    ap.add_argument("--backend", choices=["postgresql", "sqlite", "both"], default="both")
    args = ap.parse_args()
    rows = []
    backends = ["postgresql", "sqlite"] if args.backend == "both" else [args.backend]
    for backend in backends:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            if backend == "postgresql":
                import psycopg

                schema = f"bench_{uuid.uuid4().hex[:10]}"
                dsn = "host=127.0.0.1 port=5432 dbname=test user=postgres"
                with psycopg.connect(dsn, autocommit=True) as c:
                    c.execute(f'CREATE SCHEMA "{schema}"')
                try:
                    res = run(f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}", args.raters, args.per_rater, tmp)
                finally:
                    with psycopg.connect(dsn, autocommit=True) as c:
                        c.execute(f'DROP SCHEMA "{schema}" CASCADE')
            else:
                res = run(f"sqlite:///{tmp / 'bench.db'}", args.raters, args.per_rater, tmp)
        rows.append((backend, res))
    print(f"\nsubmit + next item through raters.service, {args.raters} concurrent raters\n")
    print("| backend | samples | p50 ms | p95 ms | p99 ms | max ms | submits/s | target p95 <= 200 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for backend, r in rows:
        ok = "met" if r["p95"] <= 200 else "missed"
        print(f"| {backend} | {r['n']} | {r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} | {r['max']:.1f} | {r['per_s']:.0f} | {ok} |")


if __name__ == "__main__":
    main()
