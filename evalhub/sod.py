"""The salient-object benchmark set, per image and per dataset, from PySODMetrics.

Every SOD paper on ECSSD / PASCAL-S reports S-measure, E-measure (mean, adaptive, max), weighted
F-measure and F-measure (mean, adaptive, max). PySODMetrics (``py_sod_metrics``, MIT) is the field's
reference implementation and is well kept, so liftlab calls it rather than re-implementing it: per
image, its evaluators' own ``step`` is run on the 8-bit prediction and the ground truth, and their
per-image results are read back. Conventions are PySODMetrics' (its ``prepare_data``): the
prediction is min-max normalised per image, the ground truth is foreground where > 128; F-measure
uses beta^2 = 0.3, weighted F-measure beta^2 = 1, S-measure alpha = 0.5; curves have one value per
threshold 0..255.

Per image (stored, averaged over images with a subject): ``s_measure``, ``weighted_f``,
``e_measure_adaptive``, ``e_measure_mean`` (the image's E-measure curve averaged over thresholds),
``f_measure_adaptive``, ``f_measure_mean``. Averaging the per-image means over images equals the
mean of the dataset's mean curve, the papers' "mean E/F". The papers' "max E/F" is the maximum over
thresholds of the dataset's mean curve, which no per-image number gives: :class:`SODCurves`
accumulates the curves and :meth:`SODCurves.summary` reports it.

Sources: Fan et al., "Structure-measure", ICCV 2017; Fan et al., "Enhanced-alignment Measure",
IJCAI 2018; Margolin et al., "How to Evaluate Foreground Maps?", CVPR 2014; Achanta et al.,
"Frequency-tuned salient region detection", CVPR 2009; PySODMetrics (github.com/lartpang/PySODMetrics).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SOD_METRICS = ("s_measure", "weighted_f", "e_measure_adaptive", "e_measure_mean", "f_measure_adaptive", "f_measure_mean")


class SODScorer:
    """PySODMetrics' evaluators, reused image after image (their result lists are emptied after
    each image, so memory stays flat)."""

    def __init__(self) -> None:
        import py_sod_metrics as P

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.sm, self.em, self.wfm = P.Smeasure(), P.Emeasure(), P.WeightedFmeasure()
            self.fm = P.FmeasureV2(metric_handlers={"fm": P.FmeasureHandler(with_dynamic=True, with_adaptive=True, beta=0.3)})

    def image(self, pred_u8: np.ndarray, gt: np.ndarray) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
        """The per-image SOD metrics and the image's E- and F-measure curves.

        Args:
            pred_u8: ``(H, W)`` uint8 prediction (the 8-bit probability map).
            gt: ``(H, W)`` bool ground truth.

        Returns:
            ``({metric: value}, e_curve (256,), f_curve (256,))``, float64.
        """
        g = gt.astype(np.uint8) * 255
        for ev in (self.sm, self.em, self.wfm, self.fm):
            ev.step(pred_u8, g)
        h = self.fm._metric_handlers["fm"]
        e_curve = np.asarray(self.em.changeable_ems.pop(), dtype=np.float64)
        f_curve = np.asarray(h.dynamic_results.pop(), dtype=np.float64)
        out = {
            "s_measure": float(self.sm.sms.pop()),
            "weighted_f": float(self.wfm.weighted_fms.pop()),
            "e_measure_adaptive": float(self.em.adaptive_ems.pop()),
            "e_measure_mean": float(e_curve.mean()),
            "f_measure_adaptive": float(h.adaptive_results.pop()),
            "f_measure_mean": float(f_curve.mean()),
        }
        return out, e_curve, f_curve


@dataclass
class SODCurves:
    """Running sums of the images' E- and F-measure curves, for the dataset's mean and max."""

    n: int = 0
    e_sum: np.ndarray = field(default_factory=lambda: np.zeros(256))
    f_sum: np.ndarray = field(default_factory=lambda: np.zeros(256))

    def add(self, e_curve: np.ndarray, f_curve: np.ndarray) -> None:
        self.n += 1
        self.e_sum = self.e_sum + e_curve
        self.f_sum = self.f_sum + f_curve

    def merge(self, other: SODCurves) -> None:
        self.n += other.n
        self.e_sum = self.e_sum + other.e_sum
        self.f_sum = self.f_sum + other.f_sum

    def summary(self) -> dict[str, Any]:
        """``{"n", "e_measure_max", "e_measure_mean", "f_measure_max", "f_measure_mean", "e_curve",
        "f_curve"}`` over the images added (the papers' dataset numbers; curves index thresholds
        255 down to 0 as PySODMetrics orders them)."""
        if not self.n:
            return {"n": 0}
        e, f = self.e_sum / self.n, self.f_sum / self.n
        return {"n": self.n, "e_measure_max": float(e.max()), "e_measure_mean": float(e.mean()),
                "f_measure_max": float(f.max()), "f_measure_mean": float(f.mean()),
                "e_curve": e.round(6).tolist(), "f_curve": f.round(6).tolist()}
