"""The one metric vocabulary of liftlab.

Every metric a run reports is declared here once: its name (the catalog's ``metric_values.metric``
and the run table's column), how it is computed, its direction, unit and range, what it needs, and
which views show it. Scoring, storage, ``evalhub compare``, reports, slices and ``fairness`` read
these declarations instead of spelling metric names of their own, so adding a metric is one entry
here (plus its function); the catalog stores metrics by name and needs no migration.

Two levels:

* ``image`` metrics are computed per image by :func:`evalhub.metrics.image_metrics` and stored per
  sample; group numbers are means over the group's images that have a subject (negatives are judged
  by the gate only). ``needs`` says which ground truth they need: ``mask`` or ``alpha`` (an alpha
  matte and a trimap).
* ``group`` metrics judge the gate over every image of a group, from the per-image ``confidence``,
  ``accepted`` and ``acceptable`` columns (``needs='gate'``); they have no per-image value.
"""

from __future__ import annotations

from dataclasses import dataclass

IMAGE, GROUP = "image", "group"


@dataclass(frozen=True)
class Metric:
    """One metric.

    Attributes:
        name: column / catalog name, e.g. ``"iou"``.
        label: how reports and plots name it.
        level: ``"image"`` (per image, stored) or ``"group"`` (computed over a group's images).
        higher_is_better: the direction a verdict ("regression", "improvement") uses.
        unit: ``"fraction"`` (in [0, 1]), ``"pixels/1000"`` (SAD, gradient and connectivity
            errors, as the alphamatting.com tables print them), ``"squared alpha"`` (MSE) or
            ``"count"`` (subjects).
        needs: ``"mask"``, ``"alpha"`` (alpha matte + trimap) or ``"gate"``.
        summary: shown in the run summary (mean with CI over images with a subject).
        slices: shown per slice (``evalhub score`` slices and ``evalhub compare``'s slice table).
        compare: compared by ``evalhub compare``.
        fairness: reported per group by ``fairness report`` / ``fairness compare``.
        headline: printed by ``evalhub score`` on the terminal.
        computed_by: ``"core"`` (:func:`evalhub.metrics.image_metrics`), ``"subjects"`` (the
            several-subjects set of :mod:`evalhub.subjects`, always computed) or ``"sod"`` (the
            salient-object set of :mod:`evalhub.sod`, computed with ``evalhub score --sod``).
        source: the published definition.
    """

    name: str
    label: str
    level: str
    higher_is_better: bool
    unit: str
    needs: str
    summary: bool = True
    slices: bool = False
    compare: bool = True
    fairness: bool = False
    headline: bool = False
    source: str = ""
    computed_by: str = "core"


REGISTRY: tuple[Metric, ...] = (
    Metric("iou", "mean IoU", IMAGE, True, "fraction", "mask", slices=True, fairness=True, headline=True,
           source="Jaccard index of the masks binarised at 0.5"),
    Metric("dice", "mean Dice", IMAGE, True, "fraction", "mask", source="Sorensen-Dice coefficient"),
    Metric("precision", "mean precision", IMAGE, True, "fraction", "mask", compare=False),
    Metric("recall", "mean recall", IMAGE, True, "fraction", "mask", compare=False),
    Metric("boundary_f1", "mean boundary F1", IMAGE, True, "fraction", "mask", slices=True, fairness=True, headline=True,
           source="DAVIS 2016/2017 boundary F (Perazzi et al., CVPR 2016), tolerance 0.008 x diagonal"),
    Metric("boundary_precision", "mean boundary precision", IMAGE, True, "fraction", "mask", summary=False, compare=False),
    Metric("boundary_recall", "mean boundary recall", IMAGE, True, "fraction", "mask", summary=False, compare=False),
    Metric("boundary_iou", "mean Boundary IoU", IMAGE, True, "fraction", "mask", slices=True, headline=True,
           source="Cheng et al., CVPR 2021, dilation ratio 0.02"),
    Metric("mae", "mean absolute error", IMAGE, False, "fraction", "mask", headline=True,
           source="mean |prob - gt| over the image (salient-object MAE)"),
    Metric("sad", "SAD (unknown region)", IMAGE, False, "pixels/1000", "alpha", source="Rhemann et al., CVPR 2009"),
    Metric("mse", "MSE (unknown region)", IMAGE, False, "squared alpha", "alpha", source="Rhemann et al., CVPR 2009"),
    Metric("grad", "gradient error", IMAGE, False, "pixels/1000", "alpha", source="Rhemann et al., CVPR 2009"),
    Metric("conn", "connectivity error", IMAGE, False, "pixels/1000", "alpha", source="Rhemann et al., CVPR 2009"),
    Metric("pred_area_fraction", "predicted area fraction", IMAGE, True, "fraction", "mask", summary=False, compare=False,
           source="share of the image predicted foreground (prob >= 0.5); a diagnostic, not a quality"),
    Metric("s_measure", "S-measure", IMAGE, True, "fraction", "mask", computed_by="sod",
           source="Fan et al., ICCV 2017 (alpha 0.5), via PySODMetrics"),
    Metric("weighted_f", "weighted F-measure", IMAGE, True, "fraction", "mask", computed_by="sod",
           source="Margolin et al., CVPR 2014 (beta^2 1), via PySODMetrics"),
    Metric("e_measure_adaptive", "adaptive E-measure", IMAGE, True, "fraction", "mask", computed_by="sod",
           source="Fan et al., IJCAI 2018, threshold 2 x mean, via PySODMetrics"),
    Metric("e_measure_mean", "mean E-measure", IMAGE, True, "fraction", "mask", computed_by="sod",
           source="Fan et al., IJCAI 2018, mean over the 256 thresholds, via PySODMetrics"),
    Metric("f_measure_adaptive", "adaptive F-measure", IMAGE, True, "fraction", "mask", computed_by="sod",
           source="Achanta et al., CVPR 2009 (beta^2 0.3), threshold 2 x mean, via PySODMetrics"),
    Metric("f_measure_mean", "mean F-measure", IMAGE, True, "fraction", "mask", computed_by="sod",
           source="Achanta et al., CVPR 2009 (beta^2 0.3), mean over the 256 thresholds, via PySODMetrics"),
    Metric("pq", "Panoptic Quality", IMAGE, True, "fraction", "mask", slices=True, computed_by="subjects",
           source="Kirillov et al., CVPR 2019: one subject class, matches at IoU > 0.5, per image"),
    Metric("sq", "segmentation quality (SQ)", IMAGE, True, "fraction", "mask", computed_by="subjects",
           source="Kirillov et al., CVPR 2019: mean IoU of matched subjects"),
    Metric("rq", "recognition quality (RQ)", IMAGE, True, "fraction", "mask", computed_by="subjects",
           source="Kirillov et al., CVPR 2019: F1 over subjects"),
    Metric("subject_recall", "per-subject recall", IMAGE, True, "fraction", "mask", computed_by="subjects",
           source="matched true subjects / true subjects"),
    Metric("false_subjects", "false subjects per image", IMAGE, False, "count", "mask", computed_by="subjects",
           source="predicted subjects that match no true subject"),
    Metric("subjects_true", "true subjects", IMAGE, True, "count", "mask", summary=False, compare=False, computed_by="subjects"),
    Metric("subjects_pred", "predicted subjects", IMAGE, True, "count", "mask", summary=False, compare=False, computed_by="subjects"),
    Metric("subjects_matched", "matched subjects", IMAGE, True, "count", "mask", summary=False, compare=False, computed_by="subjects"),
    Metric("subjects_iou_sum", "sum of matched IoUs", IMAGE, True, "count", "mask", summary=False, compare=False, computed_by="subjects"),
    Metric("acceptance_rate", "acceptance rate", GROUP, True, "fraction", "gate", summary=False, compare=False, fairness=True,
           source="share of images whose confidence >= the release threshold"),
    Metric("frr", "false-reject rate (among acceptable)", GROUP, False, "fraction", "gate", summary=False, compare=False, fairness=True),
    Metric("far", "false-accept rate (among unacceptable)", GROUP, False, "fraction", "gate", summary=False, compare=False, fairness=True),
    Metric("ece", "ECE (15 equal-width bins)", GROUP, False, "fraction", "gate", summary=False, compare=False, fairness=True,
           source="Guo et al., ICML 2017"),
)

BY_NAME: dict[str, Metric] = {m.name: m for m in REGISTRY}


def metric(name: str) -> Metric:
    """The declaration of ``name``.

    Raises:
        KeyError: an unknown metric (the message lists the known ones).
    """
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r} (known: {sorted(BY_NAME)})") from None


def names(*, level: str | None = None, needs: str | None = None, **flags: bool) -> tuple[str, ...]:
    """Metric names in registry order that match every given property, e.g.
    ``names(level="image", slices=True)``."""
    out = []
    for m in REGISTRY:
        if level is not None and m.level != level:
            continue
        if needs is not None and m.needs != needs:
            continue
        if all(getattr(m, k) == v for k, v in flags.items()):
            out.append(m.name)
    return tuple(out)


IMAGE_METRICS = names(level=IMAGE)
"""Every per-image metric: the run table's metric columns and the catalog's stored values."""
HIGHER_IS_BETTER: dict[str, bool] = {m.name: m.higher_is_better for m in REGISTRY}
LABELS: dict[str, str] = {m.name: m.label for m in REGISTRY}
