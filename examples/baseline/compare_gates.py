"""Has-subject gate vs quality gate of the reference release, on real photos. Prints Markdown.

    python examples/baseline/compare_gates.py [--ccp-n 1004] [--workers 2]

Scores ``liftnet-full`` (its gate trained on ``has_subject``) and ``liftnet-full-qgate`` (the same
mask network with the quality gate of ``quality_gate.py``) with ``evalhub score`` on the ECSSD test
split (photos no composite used) and on CCP people photos, in a temporary catalog. Acceptable means
IoU >= 0.8. Per gate: ECE, Brier score, AURC and excess AURC, AUROC, the coverage left at
precision 0.95, and the risk (share of unacceptable among accepted) at 50 % and 80 % coverage from
the risk-coverage curve; plus the quality gate after isotonic calibration, 5-fold cross-fitted on
the same photos (``evalhub.gate.cross_fit``), i.e. what ``evalhub calibrate`` would report.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "datasets"

import db  # noqa: E402
from db.catalog import register_release  # noqa: E402
from evalhub import calibration as C  # noqa: E402
from evalhub.datasets import import_dataset  # noqa: E402
from evalhub.gate import cross_fit  # noqa: E402
from evalhub.releases import load_manifest  # noqa: E402
from evalhub.scoring import score  # noqa: E402


def risk_at(conf: np.ndarray, ok: np.ndarray, coverage: float) -> float:
    rc = C.risk_coverage(conf, ok)
    return float(np.interp(coverage, rc["coverage"], rc["risk"]))


def row(label: str, conf: np.ndarray, ok: np.ndarray) -> str:
    rec = C.recommend_threshold(conf, ok, 0.95)
    cov = f"{rec['coverage']:.3f}" if rec else "none"
    return (f"| {label} | {C.ece(conf, ok):.3f} | {C.brier(conf, ok):.3f} | {C.aurc(conf, ok):.3f} | {C.excess_aurc(conf, ok):.3f} | "
            f"{C.auroc(conf, ok):.3f} | {cov} | {risk_at(conf, ok, 0.5):.3f} | {risk_at(conf, ok, 0.8):.3f} | {conf.mean():.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ccp-n", type=int, default=1004)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    releases = {name: ROOT / "examples" / "releases" / name for name in ("liftnet-full", "liftnet-full-qgate")}
    with tempfile.TemporaryDirectory() as tmp:
        engine = db.connect(f"sqlite:///{tmp}/gates.db")
        ids = ROOT / "examples" / "splits" / "ecssd-test.txt"
        import_dataset(engine, "ecssd-test", DATA / "ecssd" / "images", DATA / "ecssd" / "masks", ids=ids)
        import_dataset(engine, "ccp", DATA / "ccp" / "images", DATA / "ccp" / "masks", limit=args.ccp_n)
        for name, path in releases.items():
            man = load_manifest(path / "release.yaml")
            register_release(engine, name, "onnx", str(path / "model.onnx"), threshold=man.threshold, manifest=man.model_dump())
        print("| gate | ECE | Brier | AURC | excess AURC | AUROC | coverage at precision 0.95 | risk at 50 % coverage | risk at 80 % coverage | mean confidence |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for ds in ("ecssd-test", "ccp"):
            qconf = None
            for name in releases:
                res = score(engine, name, ds, Path(tmp) / f"{name}-{ds}", workers=args.workers, progress=False)
                conf, ok = res.table["confidence"].to_numpy(), res.table["acceptable"].to_numpy(bool)
                print(row(f"{ds}: {name} ({len(conf)} photos, {ok.sum()} acceptable)", conf, ok), flush=True)
                qconf = conf
            print(row(f"{ds}: liftnet-full-qgate + isotonic, cross-fitted", cross_fit(qconf, ok, "isotonic", folds=5), ok), flush=True)
        engine.dispose()


if __name__ == "__main__":
    main()
