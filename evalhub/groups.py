"""The one engine for statistics by group: per-group metrics of a run table with stratified
bootstrap CIs, overall values, differences and ratios, in the shape of fairlearn's ``MetricFrame``.

``evalhub score`` slices, ``evalhub compare`` slices, ``fairness report`` and ``fairness compare``
all compute their group numbers here, so the same group of the same run gets the same numbers and
CIs everywhere.

A run table (:class:`evalhub.runs.RunTable`) has one row per image. Group metrics are computed over
the rows that have a value for the attribute; rows without one are counted (``n_missing``) and in no
group. Every metric except ECE is a ratio of sums over a group, ``sum(x_i) / sum(w_i)``:

==================  =======================================  ==========================================
metric              x_i                                       w_i (who counts)
==================  =======================================  ==========================================
image metrics       the image's value (IoU, boundary F1...)   images with a subject and a finite value
``acceptance_rate`` 1 if the gate accepted the extraction     every image
``frr``             1 if acceptable but rejected              acceptable extractions (IoU >= tau)
``far``             1 if unacceptable but accepted            unacceptable extractions (and negatives)
==================  =======================================  ==========================================

so an image metric's group value is the mean over the group's images with a subject. ``ece`` is the
15-bin equal-width expected calibration error of the gate within the group,
``sum_k |sum_{i in bin k} (c_i - y_i)| / n`` (Guo et al., ICML 2017), which equals
:func:`evalhub.calibration.ece`. Which metrics exist, and their direction, is the registry's
(:mod:`evalhub.registry`).

Confidence intervals come from a stratified percentile bootstrap: each group is resampled with
replacement on its own (seeded by the group's name, :func:`slice_seed`), the overall value of a
replicate is computed from the union of the resampled groups, and differences and ratios (between
groups: max - min, min / max; to overall: group - overall, group / overall) are computed replicate
by replicate. Because a group's resampling depends only on its size, the seed, the grouping and the
group's value, two runs of the same images grouped the same way are resampled identically: their
replicates are paired, and B - A replicate by replicate is a paired bootstrap of the change.
Source for the difference and ratio definitions: fairlearn's ``MetricFrame.difference`` and
``.ratio`` (``between_groups`` and ``to_overall``), which the tests match.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from evalhub.calibration import N_BINS, bin_ids
from evalhub.registry import GROUP, IMAGE, metric
from evalhub.stats import bootstrap_indices, percentile_interval

ATTR_PREFIX = "attr_"
INTERSECTION_SEP = "*"
VALUE_SEP = " & "
GATE_RATIOS = ("acceptance_rate", "frr", "far")


def slice_seed(base: int, *parts: str) -> int:
    """A bootstrap seed for one group: ``base`` plus the CRC-32 of its name parts, so a group's
    numbers do not change when other groups are added or removed."""
    return (base + zlib.crc32("\x1f".join(parts).encode())) % (2**31)


def attribute_columns(df: pd.DataFrame) -> list[str]:
    """Attribute names (without the ``attr_`` prefix) of a run table, in column order."""
    return [c[len(ATTR_PREFIX):] for c in df.columns if c.startswith(ATTR_PREFIX)]


@dataclass(frozen=True)
class GroupSettings:
    """How group numbers are computed.

    Attributes:
        n_boot: bootstrap replicates for the CIs (and the bootstrap test).
        level: CI level in (0, 1).
        seed: base seed; each group's resampling also depends on its attribute and value only.
        min_n: groups with fewer images are marked ``insufficient``: their numbers are reported,
            but they are left out of disparities, flags and tests (never merged or dropped).
        n_bins: ECE bins.
    """

    n_boot: int = 2000
    level: float = 0.95
    seed: int = 0
    min_n: int = 30
    n_bins: int = N_BINS


@dataclass(frozen=True)
class Interval:
    """A point value with its percentile bootstrap CI (NaN bounds when the value is undefined)."""

    value: float
    lo: float
    hi: float

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "lo": self.lo, "hi": self.hi}


def group_labels(df: pd.DataFrame, spec: str) -> pd.Series:
    """The group of every row for an attribute ``a`` or an intersection ``a*b[*c]``.

    Returns:
        ``(N,)`` object Series: the attribute's text value, or the values joined by ``" & "`` for an
        intersection; None where any attribute is missing.

    Raises:
        KeyError: an attribute the run table does not have (named, with the known ones).
    """
    names = spec.split(INTERSECTION_SEP)
    known = attribute_columns(df)
    for a in names:
        if not a or a not in known:
            raise KeyError(f"attribute {a!r} (in {spec!r}) is not in the run table (known: {known})")
    cols = [df[ATTR_PREFIX + a] for a in names]
    out = cols[0].astype(object).where(cols[0].notna(), None).map(lambda v: None if v is None else str(v))
    for c in cols[1:]:
        ok = out.notna() & c.notna()
        out = pd.Series(np.where(ok, out.astype(str) + VALUE_SEP + c.astype(str), None), index=df.index, dtype=object)
    return out


def metric_arrays(df: pd.DataFrame, metrics: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{metric: (x, w)}``, float64 ``(N,)`` each, for the ratio metrics among ``metrics`` (see the
    module table). Images with a subject whose metric is NaN (not computable) get ``w = 0``.

    Raises:
        KeyError: an unknown metric name.
    """
    pos = df["has_subject"].to_numpy(bool)
    accepted = df["accepted"].to_numpy(bool)
    acceptable = df["acceptable"].to_numpy(bool)
    gate = {
        "acceptance_rate": (accepted.astype(np.float64), np.ones(len(df))),
        "frr": ((acceptable & ~accepted).astype(np.float64), acceptable.astype(np.float64)),
        "far": ((~acceptable & accepted).astype(np.float64), (~acceptable).astype(np.float64)),
    }
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for m in metrics:
        if metric(m).level == IMAGE:
            v = df[m].to_numpy(np.float64) if m in df.columns else np.full(len(df), np.nan)
            w = pos & np.isfinite(v)
            out[m] = (np.where(w, v, 0.0), w.astype(np.float64))
        elif m in gate:
            out[m] = gate[m]
    return out


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _bin_sums(bins: np.ndarray, resid: np.ndarray, n_bins: int) -> np.ndarray:
    """Per-row-of-``bins`` sums of ``resid`` by bin: ``(B, n)`` -> ``(B, n_bins)``."""
    b = bins.shape[0]
    flat = (np.arange(b)[:, None] * n_bins + bins).ravel()
    return np.bincount(flat, weights=resid.ravel(), minlength=b * n_bins).reshape(b, n_bins)


def interval(reps: np.ndarray, value: float, level: float) -> Interval:
    """``value`` with the percentile interval of the finite ``reps`` (NaN bounds for a NaN value)."""
    lo, hi = percentile_interval(reps, level) if np.isfinite(value) else (float("nan"), float("nan"))
    return Interval(float(value), lo, hi)


@dataclass
class Replicates:
    """Point values and stratified bootstrap replicates of every group metric for one grouping.

    ``point[m]``: ``(G,)``; ``reps[m]``: ``(G, B)``; ``overall_point[m]``: float;
    ``overall_reps[m]``: ``(B,)``; ``den[m]``: ``(G,)`` denominators (images counted). ``num_reps``
    and ``den_reps`` keep the replicate sums of the ratio metrics and ``bin_reps`` the per-bin ECE
    residual sums ``(G, B, n_bins)`` for the bootstrap test. Groups are ``values`` (sorted as text),
    ``members[g]`` the row positions of group g in ``table`` (the rows with a group), ``group_of``
    ``(N,)`` the group index of each row. The per-row inputs the tests reuse: ``arrays``
    (:func:`metric_arrays`), ``row_bins`` (ECE bin of each confidence) and ``resid`` (confidence -
    acceptable).
    """

    table: pd.DataFrame
    values: list[str]
    members: list[np.ndarray]
    point: dict[str, np.ndarray]
    reps: dict[str, np.ndarray]
    overall_point: dict[str, float]
    overall_reps: dict[str, np.ndarray]
    den: dict[str, np.ndarray]
    num_reps: dict[str, np.ndarray]
    den_reps: dict[str, np.ndarray]
    bin_reps: np.ndarray
    n_missing: int
    group_of: np.ndarray
    arrays: dict[str, tuple[np.ndarray, np.ndarray]]
    row_bins: np.ndarray
    resid: np.ndarray


def group_replicates(df: pd.DataFrame, spec: str, settings: GroupSettings, metrics: Sequence[str],
                     labels: pd.Series | None = None) -> Replicates:
    """Per-group point values and stratified bootstrap replicates (see the module docstring).

    Args:
        df: a run table.
        spec: ``"a"`` or ``"a*b"``.
        metrics: registry names: image metrics, ``acceptance_rate``, ``frr``, ``far``, ``ece``.
        labels: group of each row (default :func:`group_labels` of ``spec``).

    Raises:
        KeyError: an unknown attribute or metric.
    """
    labels = group_labels(df, spec) if labels is None else labels
    known = labels.notna().to_numpy()
    sub = df[known].reset_index(drop=True)
    lab = labels[known].to_numpy(dtype=object)
    values = sorted(set(lab), key=str)
    n, b, k = len(sub), settings.n_boot, settings.n_bins
    arrays = metric_arrays(sub, metrics)
    ratio_metrics = [m for m in metrics if m in arrays]
    conf = sub["confidence"].to_numpy(np.float64)
    resid = conf - sub["acceptable"].to_numpy(np.float64)
    bins = bin_ids(conf, k) if n else np.zeros(0, np.int64)
    members = [np.flatnonzero(lab == v) for v in values]
    num_reps = {m: np.zeros((len(values), b)) for m in ratio_metrics}
    den_reps = {m: np.zeros((len(values), b)) for m in ratio_metrics}
    rep_bins = np.zeros((len(values), b, k))
    point_bins = np.zeros((len(values), k))
    for gi, (v, rows) in enumerate(zip(values, members)):
        idx = rows[bootstrap_indices(rows.size, b, slice_seed(settings.seed, spec, v))]
        for m in ratio_metrics:
            x, w = arrays[m]
            num_reps[m][gi], den_reps[m][gi] = x[idx].sum(axis=1), w[idx].sum(axis=1)
        rep_bins[gi] = _bin_sums(bins[idx], resid[idx], k)
        point_bins[gi] = np.bincount(bins[rows], weights=resid[rows], minlength=k)
    sizes = np.array([r.size for r in members], dtype=np.float64)
    point, reps, overall_point, overall_reps, den = {}, {}, {}, {}, {}
    for m in ratio_metrics:
        x, w = arrays[m]
        num_p = np.array([x[r].sum() for r in members])
        den[m] = np.array([w[r].sum() for r in members])
        point[m], reps[m] = _ratio(num_p, den[m]), _ratio(num_reps[m], den_reps[m])
        overall_point[m] = float(_ratio(np.array([x.sum()]), np.array([w.sum()]))[0])
        overall_reps[m] = _ratio(num_reps[m].sum(axis=0), den_reps[m].sum(axis=0))
    if "ece" in metrics:
        point["ece"] = np.abs(point_bins).sum(axis=1) / np.maximum(sizes, 1)
        reps["ece"] = np.abs(rep_bins).sum(axis=2) / np.maximum(sizes, 1)[:, None]
        den["ece"] = sizes
        overall_point["ece"] = float(np.abs(point_bins.sum(axis=0)).sum() / n) if n else float("nan")
        overall_reps["ece"] = np.abs(rep_bins.sum(axis=0)).sum(axis=1) / max(n, 1)
    group_of = np.full(n, -1)
    for gi, rows in enumerate(members):
        group_of[rows] = gi
    return Replicates(sub, values, members, point, reps, overall_point, overall_reps, den, num_reps, den_reps, rep_bins,
                      int((~known).sum()), group_of, arrays, bins, resid)


@dataclass
class GroupedStats:
    """Group metrics of one grouping of a run table, in the shape of fairlearn's ``MetricFrame``.

    Attributes:
        spec: the grouping, ``"a"`` or ``"a*b"``.
        metrics: the metric names computed.
        settings: bootstrap settings.
        replicates: the point values and replicates behind every number.
    """

    spec: str
    metrics: tuple[str, ...]
    settings: GroupSettings
    replicates: Replicates

    @property
    def values(self) -> list[str]:
        """The groups, sorted as text."""
        return self.replicates.values

    @property
    def sizes(self) -> dict[str, int]:
        """Images per group."""
        return {v: int(m.size) for v, m in zip(self.replicates.values, self.replicates.members)}

    def insufficient(self) -> list[str]:
        """Groups with fewer than ``settings.min_n`` images."""
        return [v for v, n in self.sizes.items() if n < self.settings.min_n]

    @property
    def overall(self) -> dict[str, Interval]:
        """Each metric over every row with a group (``MetricFrame.overall``)."""
        r = self.replicates
        return {m: interval(r.overall_reps[m], r.overall_point[m], self.settings.level) for m in self.metrics}

    @property
    def by_group(self) -> dict[str, dict[str, Interval]]:
        """``{group: {metric: Interval}}`` (``MetricFrame.by_group``)."""
        r, lvl = self.replicates, self.settings.level
        return {v: {m: interval(r.reps[m][gi], r.point[m][gi], lvl) for m in self.metrics} for gi, v in enumerate(r.values)}

    def counted(self, m: str) -> dict[str, int]:
        """Per group, the images metric ``m`` counts (with a subject for IoU, acceptable for FRR...)."""
        return {v: int(d) for v, d in zip(self.replicates.values, self.replicates.den[m])}

    def to_overall(self, kind: str = "difference") -> dict[str, dict[str, Interval]]:
        """``{group: {metric: group - overall}}`` (``kind='difference'``) or ``group / overall``
        (``kind='ratio'``), each with its CI, replicate by replicate."""
        r, lvl = self.replicates, self.settings.level
        out: dict[str, dict[str, Interval]] = {}
        with np.errstate(invalid="ignore", divide="ignore"):
            for gi, v in enumerate(r.values):
                row = {}
                for m in self.metrics:
                    if kind == "difference":
                        row[m] = interval(r.reps[m][gi] - r.overall_reps[m], r.point[m][gi] - r.overall_point[m], lvl)
                    else:
                        p = r.point[m][gi] / r.overall_point[m] if r.overall_point[m] else np.nan
                        row[m] = interval(r.reps[m][gi] / r.overall_reps[m], p, lvl)
                out[v] = row
        return out

    def between_groups(self, m: str, kind: str = "difference", groups: np.ndarray | None = None) -> Interval | None:
        """``max - min`` (``kind='difference'``) or ``min / max`` (``kind='ratio'``) of metric ``m``
        over ``groups`` (a boolean mask; default the sufficient groups with a finite value), with
        its CI; None with fewer than two such groups (``MetricFrame.difference/ratio``,
        ``method='between_groups'``)."""
        r = self.replicates
        p = r.point[m]
        use = (np.array([n >= self.settings.min_n for n in self.sizes.values()], dtype=bool) if groups is None else groups) & np.isfinite(p)
        if use.sum() < 2:
            return None
        pu, ru = p[use], r.reps[m][use]
        with np.errstate(invalid="ignore", divide="ignore", all="ignore"):
            r_max, r_min = np.nanmax(ru, axis=0), np.nanmin(ru, axis=0)
            if kind == "difference":
                return interval(r_max - r_min, pu.max() - pu.min(), self.settings.level)
            return interval(np.where(r_max > 0, r_min / r_max, np.nan), pu.min() / pu.max() if pu.max() > 0 else np.nan, self.settings.level)

    def change_from(self, base: GroupedStats) -> dict[str, dict[str, Interval]]:
        """``{group: {metric: self - base}}`` with paired CIs: ``base`` must group the same images
        the same way (the same rows of another run), so the replicates are paired.

        Raises:
            ValueError: the two do not group the same images.
        """
        a, b = base.replicates, self.replicates
        if a.values != b.values or any(x.size != y.size for x, y in zip(a.members, b.members)):
            raise ValueError(f"{self.spec}: the two runs do not group the same images")
        lvl = self.settings.level
        with np.errstate(invalid="ignore"):
            return {v: {m: interval(b.reps[m][gi] - a.reps[m][gi], b.point[m][gi] - a.point[m][gi], lvl)
                        for m in self.metrics if m in a.reps}
                    for gi, v in enumerate(b.values)}


def grouped_stats(df: pd.DataFrame, spec: str, metrics: Sequence[str], settings: GroupSettings = GroupSettings(),
                  labels: pd.Series | None = None) -> GroupedStats:
    """Group metrics of ``df`` grouped by ``spec`` (see the module docstring).

    Args:
        df: a run table (``has_subject``, ``accepted``, ``acceptable``, ``confidence`` in [0, 1],
            the image metrics' columns, ``attr_*`` columns).
        spec: an attribute ``a`` or an intersection ``a*b``.
        metrics: registry names (image metrics and gate metrics).
        settings: bootstrap settings.
        labels: group of each row (default :func:`group_labels`).

    Raises:
        KeyError: an unknown attribute or metric.
    """
    for m in metrics:
        if metric(m).level == GROUP and m not in (*GATE_RATIOS, "ece"):
            raise KeyError(f"group metric {m!r} has no group engine")
    return GroupedStats(spec, tuple(metrics), settings, group_replicates(df, spec, settings, metrics, labels))
