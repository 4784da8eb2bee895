"""Model-free baseline releases, written as prediction folders, so a dataset can be scored (and
fairness-audited) before any learned model exists, and a learned model has a floor to beat.

- ``centre``: the centre prior of saliency research (Judd et al., "Learning to predict where humans
  look", ICCV 2009): an axis-aligned Gaussian centred on the frame, ``p = exp(-(dx^2 + dy^2) / (2
  sigma^2))`` with ``dx, dy`` the offsets from the centre in units of the frame's width and height.
  It carries no information about the image and writes no ``confidences.csv``, so scoring uses
  (and marks) the proxy of :func:`evalhub.releases.proxy_confidence`.
- ``ellipse``: a filled ellipse centred on the frame whose width and height are the mean subject
  bounding box of the ECSSD train split (:data:`ELLIPSE_AXES`): the "subject in the middle" prior as
  a binary mask, with no confidence of its own (the proxy is used).
- ``grabcut``: OpenCV's GrabCut (Rother et al., SIGGRAPH 2004) initialised with the frame minus a
  margin as "probably foreground", on the photo shrunk to ``max_side``. Confidence is the
  self-consistency of the method: the IoU between the masks found at ``max_side`` and at half
  that size (agreement across test-time resolutions).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from synth.executors import chunk, default_workers, register, run_units
from synth.io import BadInput, atomic_write_bytes, encode_png, read_rgb

METHODS = ("centre", "ellipse", "grabcut")
ELLIPSE_AXES = (0.59, 0.70)
"""Full width and height of the ``ellipse`` baseline as fractions of the frame: the mean bounding box
of the subjects of the ECSSD train split (examples/splits/ecssd-train.txt), measured once."""
MODULE = "evalhub.baselines"


def centre_prior(height: int, width: int, sigma: float = 0.25) -> np.ndarray:
    """Centre-prior probability map.

    Args:
        height, width: frame size in pixels.
        sigma: Gaussian SD as a fraction of the frame's width (x) and height (y).

    Returns:
        ``(height, width)`` float32 in (0, 1], 1 at the centre.

    Raises:
        ValueError: a non-positive size or sigma.
    """
    if height < 1 or width < 1 or sigma <= 0:
        raise ValueError(f"centre_prior needs a positive size and sigma, got {height}x{width}, sigma {sigma}")
    y = (np.arange(height, dtype=np.float32) + 0.5) / height - 0.5
    x = (np.arange(width, dtype=np.float32) + 0.5) / width - 0.5
    return np.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma**2)).astype(np.float32)


def centre_ellipse(height: int, width: int, axes: tuple[float, float] = ELLIPSE_AXES) -> np.ndarray:
    """A filled, centred ellipse ``(height, width)`` bool whose full width and height are
    ``axes`` (fractions of the frame's width and height, in (0, 1]).

    Raises:
        ValueError: a non-positive size or axes outside (0, 1].
    """
    if height < 1 or width < 1 or not all(0 < a <= 1 for a in axes):
        raise ValueError(f"centre_ellipse needs a positive size and axes in (0, 1], got {height}x{width}, {axes}")
    y = (np.arange(height, dtype=np.float64) + 0.5) / height - 0.5
    x = (np.arange(width, dtype=np.float64) + 0.5) / width - 0.5
    return (x[None, :] / (axes[0] / 2)) ** 2 + (y[:, None] / (axes[1] / 2)) ** 2 <= 1.0


def _grabcut_mask(rgb: np.ndarray, max_side: int, margin: float, iterations: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    s = min(1.0, max_side / max(h, w))
    small = cv2.resize(rgb, (max(8, round(w * s)), max(8, round(h * s))), interpolation=cv2.INTER_AREA) if s < 1 else rgb
    sh, sw = small.shape[:2]
    mx, my = max(1, round(sw * margin)), max(1, round(sh * margin))
    mask = np.zeros((sh, sw), np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut's k-means initialisation draws from OpenCV's RNG: same result in any worker
    cv2.grabCut(np.ascontiguousarray(small[..., ::-1]), mask, (mx, my, sw - 2 * mx, sh - 2 * my), bgd, fgd, iterations,
                cv2.GC_INIT_WITH_RECT)
    fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    return cv2.resize(fg, (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)


def grabcut(rgb: np.ndarray, max_side: int = 256, margin: float = 0.05, iterations: int = 5) -> tuple[np.ndarray, float]:
    """GrabCut baseline mask and its self-consistency confidence.

    Args:
        rgb: ``(H, W, 3)`` uint8 RGB photo.
        max_side: the longer side GrabCut runs at, in pixels (the photo is only ever shrunk).
        margin: the border left as background of the initial rectangle, as a fraction of each side.
        iterations: GrabCut iterations.

    Returns:
        ``(mask, confidence)``: ``(H, W)`` bool and the IoU in [0, 1] of the masks at ``max_side``
        and ``max_side // 2`` (1 when both are empty).
    """
    a = _grabcut_mask(rgb, max_side, margin, iterations)
    b = _grabcut_mask(rgb, max(16, max_side // 2), margin, iterations)
    union = np.logical_or(a, b).sum()
    return a, float(np.logical_and(a, b).sum() / union) if union else 1.0


@dataclass
class BaselineContext:
    method: str
    root: str
    out: str
    sigma: float = 0.25
    max_side: int = 256


@register("evalhub.baseline")
def predict_one(ctx: BaselineContext, sample: dict[str, Any]) -> dict[str, Any]:
    """Write one sample's prediction; an unreadable photo is reported, not fatal."""
    key = sample["sample_key"]
    try:
        rgb = read_rgb(Path(ctx.root) / sample["image_path"])
    except BadInput as exc:
        return {"id": key, "error": str(exc)}
    conf = None
    if ctx.method == "centre":
        img = np.round(centre_prior(*rgb.shape[:2], sigma=ctx.sigma) * 255).astype(np.uint8)
    elif ctx.method == "ellipse":
        img = centre_ellipse(*rgb.shape[:2]).astype(np.uint8) * 255
    else:
        mask, conf = grabcut(rgb, ctx.max_side)
        img = mask.astype(np.uint8) * 255
    atomic_write_bytes(Path(ctx.out) / "masks" / f"{key}.png", encode_png(img))
    return {"id": key, "confidence": conf}


def write_baseline(engine: Any, dataset: str, method: str, out: str | Path, workers: int | None = None,
                   sigma: float = 0.25, max_side: int = 256) -> dict[str, Any]:
    """Predict every sample of a catalog dataset with a baseline into a prediction folder
    (``masks/<id>.png`` and ``confidences.csv``).

    Returns:
        ``{"out", "n", "errors": [{"id", "error"}]}``.

    Raises:
        KeyError: no such dataset. ValueError: an unknown method.
    """
    from db.catalog import dataset_samples
    from evalhub.releases import write_confidences

    if method not in METHODS:
        raise ValueError(f"unknown baseline {method!r}; choose one of {METHODS}")
    info, samples = dataset_samples(engine, dataset)
    out = Path(out)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    workers = default_workers() if workers is None else max(1, workers)
    ctx = BaselineContext(method, info["root"], str(out), sigma, max_side)
    items = [{"sample_key": s["sample_key"], "image_path": s["image_path"]} for s in samples]
    units = [("evalhub.baseline", c) for c in chunk(items, workers, per_worker=4, max_size=16)]
    results = [r for res in run_units(ctx, units, workers=workers, modules=(MODULE,)) for r in res]
    done = [r for r in results if "error" not in r]
    if method == "grabcut":
        write_confidences(out / "confidences.csv", {r["id"]: r["confidence"] for r in done})
    return {"out": str(out), "n": len(done), "errors": [r for r in results if "error" in r]}
