"""``evalhub report``: one self-contained HTML page (Jinja2, matplotlib figures embedded as PNG) and
``report.json`` beside it."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from sqlalchemy import Engine

from evalhub.registry import LABELS
from evalhub.runs import read_run
from evalhub.scoring import _jsonable
from evalhub.slicing import SLICE_METRICS

TEMPLATES = Path(__file__).parent / "templates"


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def reliability_figure(cal: dict[str, Any], title: str) -> str:
    """Reliability diagram (equal-width bins): accuracy per bin against mean confidence, with the
    diagonal of perfect calibration and the bin counts; base64 PNG."""
    plt = _plt()
    rd = cal["reliability"]
    lower, upper = np.array(rd["lower"], float), np.array(rd["upper"], float)
    acc = np.array([np.nan if v is None else v for v in rd["accuracy"]], float)
    conf = np.array([np.nan if v is None else v for v in rd["mean_confidence"]], float)
    count = np.array(rd["count"], float)
    fig, (ax, axc) = plt.subplots(2, 1, figsize=(4.6, 5.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    centers, width = (lower + upper) / 2, upper - lower
    ax.bar(centers, np.nan_to_num(acc), width=width * 0.95, color="#4477aa", label="share acceptable")
    ax.plot(centers, conf, "o", color="#ee6677", ms=4, label="mean confidence in bin")
    ax.vlines(centers, np.fmin(acc, conf), np.fmax(acc, conf), color="#ee6677", lw=1.5)
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.set_ylim(0, 1)
    ax.set_ylabel("share acceptable")
    ax.set_title(f"{title}\nECE {cal['ece']:.3f} (equal-mass {cal['ece_equal_mass']:.3f}), MCE {cal['mce']:.3f}", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    axc.bar(centers, count, width=width * 0.95, color="#888888")
    axc.set_xlabel("confidence")
    axc.set_ylabel("images")
    return _png(fig)


def risk_coverage_figure(cal: dict[str, Any], title: str) -> str:
    """Risk–coverage curve with the oracle curve, the release threshold and the recommended one."""
    plt = _plt()
    cov = np.array(cal["risk_coverage"]["coverage"])
    risk = np.array(cal["risk_coverage"]["risk"])
    n = len(cov)
    n_ok = cal["n_acceptable"]
    k = np.arange(1, n + 1)
    fig, ax = plt.subplots(figsize=(4.6, 3.6))
    ax.plot(cov, risk, color="#4477aa", label=f"gate (AURC {cal['aurc']:.3f})")
    ax.plot(cov, np.maximum(k - n_ok, 0) / k, color="#228833", ls=":", label=f"oracle (E-AURC {cal['excess_aurc']:.3f})")
    if cal.get("acceptance_rate") is not None and cal["acceptance_rate"] == cal["acceptance_rate"]:
        ax.axvline(cal["acceptance_rate"], color="#ee6677", lw=1, label=f"release threshold {cal['threshold']:.2f}")
    if cal.get("recommended"):
        ax.axvline(cal["recommended"]["coverage"], color="#aa3377", lw=1, ls="--", label=f"recommended {cal['recommended']['threshold']:.2f}")
    ax.set_xlabel("coverage (share of images shown)")
    ax.set_ylabel("risk (share unacceptable among shown)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, max(0.05, float(np.nanmax(risk)) * 1.1) if n else 1)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _png(fig)


def slice_figure(slices: list[dict[str, Any]], metric: str, overall: float | None) -> str | None:
    """Horizontal bars of a metric's mean per single-attribute slice with 95% CIs; insufficient
    slices in grey."""
    rows = [s for s in slices if "*" not in s["attribute"] and metric in s["metrics"]]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 0.28 * len(rows) + 1.0))
    y = np.arange(len(rows))[::-1]
    means = np.array([s["metrics"][metric]["mean"] for s in rows])
    lo = np.array([s["metrics"][metric]["lo"] for s in rows])
    hi = np.array([s["metrics"][metric]["hi"] for s in rows])
    colors = ["#bbbbbb" if s["insufficient"] else "#4477aa" for s in rows]
    ax.barh(y, means, color=colors)
    ax.errorbar(means, y, xerr=[np.nan_to_num(means - lo), np.nan_to_num(hi - means)], fmt="none", ecolor="k", lw=1, capsize=2)
    if overall is not None:
        ax.axvline(overall, color="#ee6677", lw=1, ls="--", label="overall")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_yticks(y, [f"{s['attribute']}={s['value']} (n={s['n_positive']}){' *' if s['insufficient'] else ''}" for s in rows], fontsize=7)
    ax.set_xlabel(f"mean {metric} with 95% bootstrap CI (* = below min n, grey)")
    ax.set_xlim(0, 1)
    return _png(fig)


def overlay(image: np.ndarray, gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Photo with misses (truth, not predicted) tinted blue, false positives tinted red, the truth's
    contour green and the prediction's contour red; ``(H, W, 3)`` uint8 RGB."""
    out = image.astype(np.float32).copy()
    fn, fp = gt & ~pred, pred & ~gt
    out[fn] = 0.5 * out[fn] + 0.5 * np.array([40, 90, 255])
    out[fp] = 0.5 * out[fp] + 0.5 * np.array([255, 40, 40])
    out = out.astype(np.uint8)
    for m, color in ((gt, (0, 200, 0)), (pred, (255, 0, 0))):
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, color, 1)
    return out


def _thumb(rgb: np.ndarray, max_side: int = 320) -> str:
    s = min(1.0, max_side / max(rgb.shape[:2]))
    small = cv2.resize(rgb, (max(1, int(rgb.shape[1] * s)), max(1, int(rgb.shape[0] * s))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    return base64.b64encode(buf.tobytes()).decode()


def worst_images(run: Path, table, summary: dict[str, Any], k: int) -> list[dict[str, Any]]:
    """The ``k`` lowest-IoU images with a subject and the ``k // 2`` most confident negatives, as
    overlays (base64 JPEG) with their numbers. Unreadable files are skipped and said so."""
    from evalhub.datasets import read_mask
    from synth.io import BadInput, read_rgb

    root = Path(summary["dataset"]["root"])
    out = []
    pos = table[table["has_subject"]].nsmallest(k, "iou")
    neg = table[~table["has_subject"]].nlargest(k // 2, "confidence")
    import pandas as pd

    for _, r in pd.concat([pos, neg]).iterrows():
        key = r["sample_key"]
        try:
            image, gt = read_rgb(root / r["image_path"]), read_mask(root / r["mask_path"], summary["dataset"].get("mask_encoding", "0-255"))
            pred = cv2.imread(str(run / "predictions" / "masks" / f"{key}.png"), cv2.IMREAD_GRAYSCALE)
            if pred is None:
                raise BadInput(run / "predictions" / "masks" / f"{key}.png", "missing prediction")
        except BadInput as exc:
            out.append({"key": key, "error": str(exc)})
            continue
        ov = overlay(image, gt, pred >= 128)
        out.append({"key": key, "image": _thumb(ov), "has_subject": bool(r["has_subject"]), "iou": r["iou"],
                    "boundary_f1": r["boundary_f1"], "confidence": r["confidence"], "accepted": bool(r["accepted"])})
    return out


def write_report(engine: Engine, run: str | Path, compare: str | Path | None = None, worst: int = 8) -> Path:
    """Write ``RUN/report.html`` and ``RUN/report.json`` from the run the catalog holds for ``run``.

    With ``compare`` (another run on the same dataset), adds the paired comparison of this run (B)
    against it (A).

    Returns:
        The HTML path.

    Raises:
        evalhub.runs.RunNotFound: the catalog holds no such run. CompareError: runs that cannot be
        compared.
    """
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    rt = read_run(engine, run)
    run, table, summary = rt.path, rt.table, rt.summary
    name = f"{summary['release']['name']} on {summary['dataset']['name']}"
    cal = summary["calibration"]
    figures = {
        "reliability": reliability_figure(cal, name),
        "risk_coverage": risk_coverage_figure(cal, name),
        "slices": {m: slice_figure(summary["slicing"]["slices"], m, (summary["metrics"].get(m) or {}).get("mean"))
                   for m in SLICE_METRICS},
    }
    comparison = None
    if compare is not None:
        from evalhub.compare import compare_runs

        comparison = compare_runs(engine, compare, run)
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    env.filters["num"] = lambda v, d=4: "n/a" if v is None or v != v else f"{v:.{d}f}"
    env.filters["signed"] = lambda v, d=4: "n/a" if v is None or v != v else f"{v:+.{d}f}"
    html = env.get_template("report.html.j2").render(
        title=name, s=summary, cal=cal, figures=figures, worst=worst_images(run, table, summary, worst),
        comparison=comparison, slice_metrics=SLICE_METRICS, labels=LABELS,
    )
    (run / "report.html").write_text(html)
    (run / "report.json").write_text(json.dumps(_jsonable({"summary": summary, "compare": comparison}), indent=2))
    return run / "report.html"
