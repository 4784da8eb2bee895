"""A gate that means "this cut-out is reliable": post-hoc calibration of a release's gate score.

A release's gate may say "a subject is present" (confidence near 1 on every real photo) while
release owners need the probability that the extraction is *acceptable* (IoU >= tau). This module
maps a gate score ``c`` in [0, 1] to that probability, fitted on a calibration run's
``(confidence, acceptable)`` pairs:

- ``platt``: ``sigma(a logit(c) + b)``, the maximum-likelihood logistic fit on the logit (Platt,
  "Probabilistic Outputs for Support Vector Machines", 1999; fitted here by Newton's method to
  convergence, checked against scikit-learn's unpenalised ``LogisticRegression`` in the tests);
- ``temperature``: ``sigma(logit(c) / T)``, one parameter, NLL-optimal ``T`` (Guo et al., "On
  Calibration of Modern Neural Networks", ICML 2017);
- ``isotonic``: the monotone step fit of scikit-learn's ``IsotonicRegression`` (Zadrozny and
  Elkan, KDD 2002), applied by linear interpolation between its thresholds as scikit-learn's
  ``predict`` does, clipped outside them. Tied scores are pooled into one point before the fit
  (scikit-learn's convention), so row order does not matter.

Logits are taken of ``c`` clipped to ``[1e-6, 1 - 1e-6]``. Out-of-sample numbers come from
:func:`cross_fit`: K folds, each scored by a calibrator fitted on the other folds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

METHODS = ("platt", "temperature", "isotonic")
_CLIP = 1e-6


def _logit(c: np.ndarray) -> np.ndarray:
    c = np.clip(np.asarray(c, np.float64), _CLIP, 1 - _CLIP)
    return np.log(c) - np.log1p(-c)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


@dataclass(frozen=True)
class GateCalibrator:
    """A fitted map from gate score to the probability of an acceptable extraction.

    Attributes:
        method: ``platt``, ``temperature`` or ``isotonic``.
        params: ``{"a", "b"}`` (Platt), ``{"temperature"}``, or ``{"x", "y"}`` (isotonic
            thresholds, increasing ``x``).
    """

    method: Literal["platt", "temperature", "isotonic"]
    params: dict[str, Any] = field(default_factory=dict)

    def apply(self, conf: Any) -> np.ndarray:
        """Calibrated probabilities: ``(n,)`` float64 in [0, 1] for ``(n,)`` scores in [0, 1]."""
        c = np.asarray(conf, np.float64)
        if self.method == "platt":
            return _sigmoid(self.params["a"] * _logit(c) + self.params["b"])
        if self.method == "temperature":
            return _sigmoid(_logit(c) / self.params["temperature"])
        return np.interp(c, self.params["x"], self.params["y"])

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON for a release manifest."""
        return {"method": self.method, "params": {k: (list(map(float, v)) if isinstance(v, (list, np.ndarray)) else float(v))
                                                  for k, v in self.params.items()}}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "GateCalibrator":
        """The inverse of :meth:`to_dict`.

        Raises:
            ValueError: unknown method or missing parameters (named).
        """
        method = doc.get("method")
        need = {"platt": ("a", "b"), "temperature": ("temperature",), "isotonic": ("x", "y")}
        if method not in need:
            raise ValueError(f"calibration.method must be one of {METHODS}, got {method!r}")
        params = doc.get("params") or {}
        missing = [k for k in need[method] if k not in params]
        if missing:
            raise ValueError(f"calibration.params misses {missing} for {method}")
        return cls(method, dict(params))


def _fit_platt(z: np.ndarray, y: np.ndarray, tol: float = 1e-12, max_iter: int = 100) -> tuple[float, float]:
    """Maximum-likelihood ``(a, b)`` of ``P(y) = sigma(a z + b)`` by Newton's method.

    Raises:
        ArithmeticError: no convergence (separable data has no finite MLE: the caller is told).
    """
    w = np.zeros(2)
    X = np.stack([z, np.ones_like(z)], axis=1)
    for _ in range(max_iter):
        p = _sigmoid(X @ w)
        grad = X.T @ (p - y)
        hess = (X * (p * (1 - p))[:, None]).T @ X + 1e-12 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if not np.isfinite(w).all():
            break
        if np.abs(step).max() < tol * (1 + np.abs(w).max()):
            return float(w[0]), float(w[1])
    raise ArithmeticError("Platt scaling did not converge (acceptable and unacceptable images are separated by the score)")


def _fit_temperature(z: np.ndarray, y: np.ndarray) -> float:
    from scipy.optimize import minimize_scalar

    def nll(log_t: float) -> float:
        p = np.clip(_sigmoid(z / math.exp(log_t)), 1e-15, 1 - 1e-15)
        return float(-(y * np.log(p) + (1 - y) * np.log1p(-p)).sum())

    res = minimize_scalar(nll, bounds=(-6.0, 6.0), method="bounded", options={"xatol": 1e-10})
    return float(math.exp(res.x))


def fit_calibrator(conf: Any, acceptable: Any, method: str) -> GateCalibrator:
    """Fit a calibrator on ``(n,)`` gate scores in [0, 1] and ``(n,)`` bool acceptability.

    Raises:
        ValueError: unknown method, fewer than 2 images, or only one class.
        ArithmeticError: Platt scaling on separable data.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    c = np.asarray(conf, np.float64)
    y = np.asarray(acceptable, bool).astype(np.float64)
    if c.size < 2 or y.min() == y.max():
        raise ValueError(f"calibration needs both acceptable and unacceptable images, got {int(y.sum())} of {c.size} acceptable")
    if method == "platt":
        a, b = _fit_platt(_logit(c), y)
        return GateCalibrator("platt", {"a": a, "b": b})
    if method == "temperature":
        return GateCalibrator("temperature", {"temperature": _fit_temperature(_logit(c), y)})
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(c, y)
    return GateCalibrator("isotonic", {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()})


def cross_fit(conf: Any, acceptable: Any, method: str, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Out-of-fold calibrated scores: ``(n,)`` float64, each from a calibrator fitted without its
    fold (folds stratified by acceptability, shuffled with ``seed``).

    Raises:
        ValueError: fewer images of a class than folds.
    """
    c = np.asarray(conf, np.float64)
    y = np.asarray(acceptable, bool)
    if min(y.sum(), (~y).sum()) < folds:
        raise ValueError(f"{folds}-fold cross-fitting needs at least {folds} acceptable and {folds} unacceptable images, "
                         f"got {int(y.sum())} and {int((~y).sum())}")
    rng = np.random.default_rng(seed)
    fold = np.empty(c.size, int)
    for cls in (True, False):
        idx = np.flatnonzero(y == cls)
        fold[rng.permutation(idx)] = np.arange(idx.size) % folds
    out = np.empty(c.size)
    for k in range(folds):
        test = fold == k
        out[test] = fit_calibrator(c[~test], y[~test], method).apply(c[test])
    return out


# --------------------------------------------------------------------------------------------
# Calibrating a release from one of its runs


@dataclass
class ReleaseCalibration:
    """What ``evalhub calibrate`` fitted and stored.

    Attributes:
        release: the new revision, ``name@N``.
        base: the revision whose run it was fitted on.
        calibrator: the fit on every image of the run.
        n, n_acceptable: images used.
        before, after: gate numbers (``ece``, ``brier``, ``aurc``) of the raw scores and of the
            cross-fitted calibrated scores, both on the run's images (``after`` is out-of-sample).
        created: False when the same fit was already stored as that revision (nothing new).
        threshold: the smallest calibrated score whose accepted images reach ``target_precision``
            (on the cross-fitted scores; None when no threshold does), with its bootstrap 95 % CI
            ``threshold_ci`` over images.
    """

    release: str
    base: str
    calibrator: GateCalibrator
    n: int
    n_acceptable: int
    before: dict[str, float]
    after: dict[str, float]
    target_precision: float
    threshold: float | None
    threshold_ci: tuple[float, float] | None
    folds: int
    created: bool = True


def _gate_numbers(conf: np.ndarray, y: np.ndarray) -> dict[str, float]:
    from evalhub.calibration import aurc, brier, ece

    return {"ece": ece(conf, y), "brier": brier(conf, y), "aurc": aurc(conf, y)}


def calibrate_release(engine: Any, run: Any, method: str, folds: int = 5, target_precision: float = 0.95,
                      n_boot: int = 1000, seed: int = 0) -> ReleaseCalibration:
    """Fit a gate calibrator on a run and register it as a new revision of the run's release.

    The run's acceptability (IoU >= the run's ``accept_iou``; negatives never) is the target. The
    new revision's manifest carries ``calibration`` (the fit, where it came from, the
    before/after numbers) and its threshold is the calibrated one for ``target_precision`` (the
    old threshold is kept when none reaches it). Scoring and ``evalhub lift`` apply it to the raw
    gate scores. Nothing is replaced: earlier revisions and their runs stay.

    Raises:
        RunNotFound: no such run.
        ValueError: the run's release is itself calibrated (fit on its base revision's run), too few
            images of a class for the folds, unknown method.
        ArithmeticError: Platt scaling on separable scores.
    """
    from db.catalog import get_release, register_release
    from evalhub.calibration import recommend_threshold
    from evalhub.runs import read_run

    rt = read_run(engine, run)
    rel = get_release(engine, rt.record.release)
    manifest = dict(rel["manifest"] or {})
    if manifest.get("calibration"):
        base = manifest["calibration"].get("base", "its base revision")
        raise ValueError(f"run {rt.record.path} scored {rt.record.release}, which is already calibrated; "
                         f"fit on a run of the uncalibrated release ({base})")
    conf = rt.table["confidence"].to_numpy(np.float64)
    y = rt.table["acceptable"].to_numpy(bool)
    oof = cross_fit(conf, y, method, folds, seed)
    cal = fit_calibrator(conf, y, method)
    rec = recommend_threshold(oof, y, target_precision)
    threshold, ci = (rec["threshold"], None) if rec else (None, None)
    if rec:
        rng = np.random.default_rng(seed)
        picks = []
        for _ in range(n_boot):
            idx = rng.integers(0, conf.size, conf.size)
            r = recommend_threshold(oof[idx], y[idx], target_precision)
            if r:
                picks.append(r["threshold"])
        if picks:
            ci = (float(np.quantile(picks, 0.025)), float(np.quantile(picks, 0.975)))
    before, after = _gate_numbers(conf, y), _gate_numbers(oof, y)
    manifest["calibration"] = {
        **cal.to_dict(), "base": rt.record.release, "fitted_on": {"run": rt.record.path, "dataset": rt.record.dataset},
        "folds": folds, "n": int(conf.size), "n_acceptable": int(y.sum()), "before": before, "after_cross_fitted": after,
        "target_precision": target_precision, "threshold_ci": list(ci) if ci else None,
    }
    reg = register_release(engine, rel["name"], rel["kind"], rel["path"], threshold if threshold is not None else rel["threshold"],
                           manifest=manifest, version=rel["version"], confidence_proxy=rel["confidence_proxy"], content=rel["content_hash"])
    return ReleaseCalibration(f"{reg.name}@{reg.revision}", rt.record.release, cal, int(conf.size), int(y.sum()), before, after,
                              target_precision, threshold, ci, folds, reg.created)


def release_calibrator(manifest: dict[str, Any] | None) -> GateCalibrator | None:
    """The calibrator a release manifest carries, or None.

    Raises:
        ValueError: a malformed ``calibration`` entry (named).
    """
    doc = (manifest or {}).get("calibration")
    return GateCalibrator.from_dict(doc) if doc else None
