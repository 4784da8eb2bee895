"""Flag rules over group tables: each rule is configurable and named in the report.

Rules (each flag names its rule and the numbers that tripped it):

- ``iou_sd``: a group whose mean IoU is more than ``k_sd`` standard deviations from the mean over
  groups (the unweighted mean of the group means; the SD is the sample SD, ddof = 1, of the group
  means). With G groups no group can lie more than ``(G - 1) / sqrt(G)`` SDs from their mean
  (Samuelson's inequality), so with k = 3 the rule needs at least 11 groups; the report says when
  it cannot fire.
- ``iou_points``: a group whose mean IoU is more than ``d_points`` IoU points (percent) from the
  mean over groups; 2.52 is the MediaPipe Selfie Segmentation model card's fairness criterion.
- ``four_fifths``: a group whose acceptance rate divided by the overall acceptance rate falls
  outside ``[ratio_low, ratio_high]`` (0.8-1.25: the four-fifths rule of the US EEOC Uniform
  Guidelines, 29 CFR 1607.4(D), and its reciprocal).
- ``significant``: a group-vs-rest difference whose p-value (permutation or bootstrap test),
  adjusted by Holm or Benjamini-Hochberg across *every* comparison of the report, is at most
  ``alpha``.

Insufficient groups (n < ``min_n``) are never flagged; the report lists them.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from evalhub.stats import benjamini_hochberg, holm


class FlagRules(BaseModel):
    """Thresholds of the flag rules (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    k_sd: float = Field(3.0, gt=0, description="iou_sd: standard deviations from the mean over groups")
    d_points: float = Field(2.52, gt=0, description="iou_points: IoU points (percent) from the mean over groups")
    ratio_low: float = Field(0.8, gt=0, le=1, description="four_fifths: lowest acceptance-rate ratio to overall")
    ratio_high: float = Field(1.25, ge=1, description="four_fifths: highest acceptance-rate ratio to overall")
    test: Literal["permutation", "bootstrap"] = "permutation"
    correction: Literal["holm", "bh"] = "holm"
    alpha: float = Field(0.05, gt=0, lt=1)
    min_n: int = Field(30, ge=1, description="groups below this n are insufficient data")

    def describe(self, n_comparisons: int | None = None) -> list[dict[str, str]]:
        """The rules in words, for the report (``n_comparisons``: how many tests were corrected)."""
        many = "all" if n_comparisons is None else f"all {n_comparisons}"
        corr = "Holm" if self.correction == "holm" else "Benjamini-Hochberg"
        return [
            {"rule": "iou_sd", "text": f"mean IoU more than {self.k_sd:g} SD (of the group means) from the mean over groups"},
            {"rule": "iou_points", "text": f"mean IoU more than {self.d_points:g} IoU points from the mean over groups (MediaPipe model card criterion)"},
            {"rule": "four_fifths", "text": f"acceptance rate / overall acceptance rate outside [{self.ratio_low:g}, {self.ratio_high:g}] (four-fifths rule)"},
            {"rule": "significant", "text": f"group-vs-rest {self.test} test significant at alpha {self.alpha:g} after {corr} correction across {many} comparisons"},
        ]


def adjust(pvalues: Any, correction: str) -> np.ndarray:
    """Adjusted p-values: ``holm`` (Holm 1979) or ``bh`` (Benjamini & Hochberg 1995); NaN stays NaN.

    Raises:
        ValueError: an unknown correction.
    """
    if correction == "holm":
        return holm(pvalues)
    if correction == "bh":
        return benjamini_hochberg(pvalues)
    raise ValueError(f"correction must be 'holm' or 'bh', got {correction!r}")


def max_sd_reachable(n_groups: int) -> float:
    """Samuelson's bound: the largest number of sample SDs (ddof = 1) any of ``n_groups`` values can
    lie from their mean, ``(G - 1) / sqrt(G)``."""
    return (n_groups - 1) / math.sqrt(n_groups) if n_groups > 0 else 0.0


def quality_flags(table: dict[str, Any], rules: FlagRules) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The ``iou_sd``, ``iou_points`` and ``four_fifths`` flags of one group table.

    Args:
        table: a :func:`fairness.groups.group_table` result.
        rules: the thresholds.

    Returns:
        ``(flags, context)``: each flag is ``{attribute, group, rule, value, reference, detail}``;
        ``context`` has ``mean_over_groups`` and ``sd_over_groups`` of the mean IoU (over the
        sufficient groups) and ``sd_rule_can_fire``.
    """
    attr = table["attribute"]
    ok = [g for g in table["groups"] if not g["insufficient"] and np.isfinite(g["metrics"]["iou"]["value"])]
    flags: list[dict[str, Any]] = []
    means = np.array([g["metrics"]["iou"]["value"] for g in ok])
    ctx: dict[str, Any] = {"groups": len(ok), "mean_over_groups": None, "sd_over_groups": None,
                           "sd_rule_can_fire": max_sd_reachable(len(ok)) > rules.k_sd}
    if len(ok) >= 2:
        mu, sd = float(means.mean()), float(means.std(ddof=1))
        ctx.update(mean_over_groups=mu, sd_over_groups=sd)
        for g, m in zip(ok, means):
            if sd > 0 and abs(m - mu) > rules.k_sd * sd:
                flags.append({"attribute": attr, "group": g["value"], "rule": "iou_sd", "value": float(m), "reference": mu,
                              "detail": f"mean IoU {m:.4f} is {abs(m - mu) / sd:.2f} SD from the mean over groups {mu:.4f} (SD {sd:.4f}; limit {rules.k_sd:g})"})
            if abs(m - mu) * 100 > rules.d_points:
                flags.append({"attribute": attr, "group": g["value"], "rule": "iou_points", "value": float(m), "reference": mu,
                              "detail": f"mean IoU {m:.4f} is {abs(m - mu) * 100:.2f} IoU points from the mean over groups {mu:.4f} (limit {rules.d_points:g})"})
    overall = table["overall"]["acceptance_rate"]["value"]
    if len([g for g in table["groups"] if not g["insufficient"]]) >= 2:
        for g in table["groups"]:
            if g["insufficient"]:
                continue
            r = g["ratio_to_overall"]["acceptance_rate"]["value"]
            if np.isfinite(r) and not (rules.ratio_low <= r <= rules.ratio_high):
                flags.append({"attribute": attr, "group": g["value"], "rule": "four_fifths", "value": float(r), "reference": overall,
                              "detail": f"acceptance rate {g['metrics']['acceptance_rate']['value']:.3f} is {r:.3f} x the overall {overall:.3f} "
                                        f"(allowed {rules.ratio_low:g}-{rules.ratio_high:g})"})
    return flags, ctx


def significance_flags(tests: list[dict[str, Any]], rules: FlagRules) -> list[dict[str, Any]]:
    """Adjust every test's p-value across *all* the tests given (in place: ``p_adjusted`` and
    ``significant`` are added) and return the ``significant`` flags.

    Args:
        tests: ``{attribute, group, metric, statistic, p}`` dicts from every group table.
        rules: ``correction`` and ``alpha``.
    """
    adj = adjust([t["p"] for t in tests], rules.correction)
    flags = []
    for t, p in zip(tests, adj):
        t["p_adjusted"] = float(p)
        t["significant"] = bool(np.isfinite(p) and p <= rules.alpha)
        if t["significant"]:
            flags.append({"attribute": t["attribute"], "group": t["group"], "rule": "significant", "metric": t["metric"],
                          "value": t["statistic"], "reference": 0.0,
                          "detail": f"{t['metric']} differs from the rest by {t['statistic']:+.4f} (p {t['p']:.4g}, "
                                    f"{rules.correction} adjusted {p:.4g} <= {rules.alpha:g})"})
    return flags
