"""Realism of harmonization, measured on real photos before any training.

The protocol of iHarmony4 (Cong et al., "DoveNet: Deep Image Harmonization via Domain
Verification", CVPR 2020): take a real photo with its subject mask, change only the subject's
appearance the way two photos differ, run a harmonization method on that composite, and score the
result against the untouched real photo. A method that does not beat "do nothing" (the composite
itself) is not harmonization.

The appearance change (:func:`perturb_subject`), seeded per photo by
``numpy.random.default_rng([seed, index])``, in this order:

- exposure: a gain of ``2 ** e`` in linear light, ``e ~ U(-exposure_stops, +exposure_stops)``;
- white balance / colour temperature: linear gains ``(exp(t), 1, exp(-t))`` normalised to unit
  luminance, ``t ~ U(-temperature, +temperature)``;
- contrast and saturation: factors ``~ U(1/k, k)`` in display (sRGB) space about the subject's mean
  BT.601 luma, as a photo editor applies them (:func:`synth.augment.jitter_matrix`).

Scores (DoveNet's definitions, on 8-bit values 0-255 averaged over the three channels, at the photo's
own resolution): ``MSE`` over the whole image, ``fMSE`` over the subject's pixels only, and
``PSNR = 10 log10(255^2 / MSE)`` in dB.

:func:`fit_illumination_prior` fits :class:`synth.harmonize.IlluminationPrior` (subject-vs-surround
illumination statistics) on real photos; the shipped :data:`synth.harmonize.DEFAULT_PRIOR` is its fit
on the ECSSD train split.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from synth import augment, harmonize
from synth.harmonize import IlluminationPrior, illumination_stats, surround_band

METHOD_DEFAULT_STRENGTH = {"none": 0.0, "illumination": 0.5, "reinhard": 0.5, "histogram": 0.5, "poisson": 1.0}


class RealismError(ValueError):
    """Unusable realism input (no photos, unknown method); the message names what."""


@dataclass(frozen=True)
class Perturbation:
    """Ranges of the subject appearance change (see the module docstring)."""

    exposure_stops: float = 0.6
    temperature: float = 0.15
    contrast: float = 1.25
    saturation: float = 1.25


@dataclass(frozen=True)
class MethodSpec:
    """A harmonization method and its strength in [0, 1], written ``name`` or ``name@strength``."""

    name: str
    strength: float

    @property
    def label(self) -> str:
        return self.name if self.name == "none" else f"{self.name}@{self.strength:g}"

    @staticmethod
    def parse(text: str) -> MethodSpec:
        """``"reinhard@0.5"`` -> ``MethodSpec("reinhard", 0.5)``; a bare name takes its default strength.

        Raises:
            RealismError: unknown method or a strength outside [0, 1].
        """
        name, _, st = text.partition("@")
        if name not in METHOD_DEFAULT_STRENGTH:
            raise RealismError(f"method {text!r}: unknown, choose from {sorted(METHOD_DEFAULT_STRENGTH)}")
        try:
            strength = float(st) if st else METHOD_DEFAULT_STRENGTH[name]
        except ValueError:
            raise RealismError(f"method {text!r}: strength {st!r} is not a number") from None
        if not 0.0 <= strength <= 1.0:
            raise RealismError(f"method {text!r}: strength must lie in [0, 1]")
        return MethodSpec(name, strength)


@dataclass
class RealismRow:
    """Scores of one method on one photo (8-bit units; PSNR in dB)."""

    photo_id: str
    method: str
    mse: float
    fmse: float
    psnr: float


@dataclass
class MethodSummary:
    """Means over photos with 95 % bootstrap CIs ``(lo, hi)``, and the paired difference of fMSE
    against "none" (method - none; negative is better) with its CI and the share of photos improved."""

    method: str
    n: int
    mse: tuple[float, float, float]
    fmse: tuple[float, float, float]
    psnr: tuple[float, float, float]
    fmse_vs_none: tuple[float, float, float]
    fmse_ratio_to_none: float
    share_improved: float


@dataclass
class RealismResult:
    rows: list[RealismRow]
    summaries: list[MethodSummary]
    perturbation: Perturbation
    seed: int
    n_photos: int
    skipped: list[tuple[str, str]] = field(default_factory=list)


def perturb_subject(rgb: np.ndarray, mask: np.ndarray, rng: np.random.Generator, ranges: Perturbation = Perturbation()) -> np.ndarray:
    """Change the subject's appearance only (see the module docstring for the four changes).

    Args:
        rgb: ``(H, W, 3)`` float32 sRGB in [0, 1]. mask: ``(H, W)`` bool subject.
        rng: draws, in order, exposure, temperature, contrast and saturation.

    Returns:
        ``(H, W, 3)`` float32 composite: the perturbed subject inside ``mask``, the photo outside.
    """
    e = rng.uniform(-ranges.exposure_stops, ranges.exposure_stops)
    t = rng.uniform(-ranges.temperature, ranges.temperature)
    c = math.exp(rng.uniform(-math.log(ranges.contrast), math.log(ranges.contrast)))
    s = math.exp(rng.uniform(-math.log(ranges.saturation), math.log(ranges.saturation)))
    gains = np.array([math.exp(t), 1.0, math.exp(-t)])
    gains = gains / float(gains @ np.array([0.2126, 0.7152, 0.0722]))
    lin = harmonize.srgb_to_linear(rgb) * (2.0**e * gains).astype(np.float32)
    disp = harmonize.linear_to_srgb(lin)
    luma = float((disp[mask] @ augment.LUMA).mean()) if mask.any() else 0.5
    m = augment.jitter_matrix(luma, 1.0, c, s, 0.0)
    disp = np.clip(cv2.transform(np.ascontiguousarray(disp), m), 0.0, 1.0)
    return np.where(mask[..., None], disp, rgb).astype(np.float32)


def harmonize_composite(composite: np.ndarray, mask: np.ndarray, spec: MethodSpec, prior: IlluminationPrior | None = None) -> np.ndarray:
    """Run one harmonization method on a real-photo composite.

    The background is the composite's own pixels outside the subject (they are real): Reinhard and
    histogram matching take their target statistics from them, Poisson blending clones the subject
    back into the composite, and illumination harmonization reads the band around the subject.

    Args:
        composite: ``(H, W, 3)`` float32 sRGB in [0, 1]. mask: ``(H, W)`` bool subject.

    Returns:
        ``(H, W, 3)`` float32, equal to ``composite`` outside the subject (Poisson: outside its
        3 px-dilated region).
    """
    alpha = mask.astype(np.float32)
    s = spec.strength
    if spec.name == "none" or not mask.any():
        return composite.copy()
    if spec.name == "poisson":
        return harmonize.poisson_blend(composite, alpha, composite, "normal", s)
    if spec.name == "reinhard":
        stats = harmonize.weighted_stats(harmonize.to_lab(composite), (~mask).astype(np.float32))
        out = harmonize.reinhard(composite, alpha, None, s, stats)
    elif spec.name == "histogram":
        bg = composite[~mask].reshape(-1, 1, 3)
        out = harmonize.histogram_match(composite, alpha, bg, s)
    elif spec.name == "illumination":
        out, _ = harmonize.illumination_harmonize(composite, alpha, composite, s, prior)
    else:  # pragma: no cover - MethodSpec.parse guards the names
        raise RealismError(f"unknown method {spec.name!r}")
    return np.where(mask[..., None], out, composite).astype(np.float32)


def harmonization_scores(result: np.ndarray, target: np.ndarray, mask: np.ndarray) -> tuple[float, float, float]:
    """``(MSE, fMSE, PSNR)`` of a harmonized image against the real photo (DoveNet, CVPR 2020).

    Both images are quantised to 8 bits first (what is written and what the protocol scores).
    MSE and fMSE are means of squared 8-bit differences over all pixels and channels, and over the
    subject's pixels and channels; PSNR is ``10 log10(255^2 / MSE)`` (inf for MSE 0).

    Args:
        result, target: ``(H, W, 3)`` float in [0, 1]. mask: ``(H, W)`` bool, not empty.
    """
    a = np.rint(np.clip(result, 0, 1) * 255.0)
    b = np.rint(np.clip(target, 0, 1) * 255.0)
    se = ((a - b) ** 2).mean(axis=2)
    mse = float(se.mean())
    fmse = float(se[mask].mean())
    psnr = float("inf") if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))
    return mse, fmse, psnr


def iter_photos(images: Path, masks: Path, ids: Iterable[str] | None = None, limit: int | None = None) -> Iterator[tuple[str, Path, Path]]:
    """``(id, image path, mask path)`` of photos and masks paired by file stem, sorted by id.

    Raises:
        RealismError: a folder that does not exist.
    """
    from synth.sources import IMAGE_EXTS

    for folder in (images, masks):
        if not Path(folder).is_dir():
            raise RealismError(f"{folder}: folder does not exist")
    imgs = {p.stem: p for p in sorted(Path(images).iterdir()) if p.suffix.lower() in IMAGE_EXTS}
    msks = {p.stem: p for p in sorted(Path(masks).iterdir()) if p.suffix.lower() in IMAGE_EXTS}
    keys = sorted(set(imgs) & set(msks))
    if ids is not None:
        wanted = set(ids)
        keys = [k for k in keys if k in wanted]
    for k in keys[:limit] if limit else keys:
        yield k, imgs[k], msks[k]


def _load(img_path: Path, mask_path: Path) -> tuple[np.ndarray, np.ndarray]:
    from synth.io import read_gray, read_rgb

    rgb = read_rgb(img_path).astype(np.float32) / 255.0
    mask = read_gray(mask_path) > 127
    if mask.shape != rgb.shape[:2]:
        raise ValueError(f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]}, photo {rgb.shape[1]}x{rgb.shape[0]}")
    if not mask.any() or mask.all():
        raise ValueError(f"{mask_path}: empty or full mask")
    return rgb, mask


def score_photo(
    index: int, photo_id: str, img_path: Path, mask_path: Path, methods: list[MethodSpec], seed: int,
    ranges: Perturbation = Perturbation(), prior: IlluminationPrior | None = None,
) -> list[RealismRow]:
    """Perturb one photo's subject (``default_rng([seed, index])``) and score every method on it.

    Raises:
        synth.io.BadInput / ValueError: unreadable files, a mask of the wrong size, empty or full.
    """
    rgb, mask = _load(img_path, mask_path)
    comp = perturb_subject(rgb, mask, np.random.default_rng([seed, index]), ranges)
    rows = []
    for spec in methods:
        out = harmonize_composite(comp, mask, spec, prior)
        rows.append(RealismRow(photo_id, spec.label, *harmonization_scores(out, rgb, mask)))
    return rows


def _score_chunk(args) -> tuple[list[RealismRow], list[tuple[str, str]]]:
    chunk, methods, seed, ranges, prior = args
    rows, skipped = [], []
    for index, pid, ip, mp in chunk:
        try:
            rows += score_photo(index, pid, ip, mp, methods, seed, ranges, prior)
        except Exception as exc:  # noqa: BLE001 - a bad photo is reported and the rest goes on
            skipped.append((pid, f"{type(exc).__name__}: {exc}"))
    return rows, skipped


def evaluate(
    photos: list[tuple[str, Path, Path]], methods: list[MethodSpec], seed: int = 0, ranges: Perturbation = Perturbation(),
    prior: IlluminationPrior | None = None, workers: int = 1, n_boot: int = 2000,
) -> RealismResult:
    """Run the protocol on ``photos`` for every method (``none`` is always included) and summarise.

    A photo that cannot be read (or has an empty or full mask) is skipped and listed; the rest go on.
    The index of a photo in ``photos`` seeds its perturbation, so results do not depend on ``workers``.

    Raises:
        RealismError: no usable photo.
    """
    from evalhub.stats import bootstrap_mean

    if not any(m.name == "none" for m in methods):
        methods = [MethodSpec("none", 0.0), *methods]
    items = [(i, pid, ip, mp) for i, (pid, ip, mp) in enumerate(photos)]
    chunks = [items[i::max(1, workers * 4)] for i in range(max(1, workers * 4))]
    jobs = [(c, methods, seed, ranges, prior) for c in chunks if c]
    rows: list[RealismRow] = []
    skipped: list[tuple[str, str]] = []
    if workers > 1:
        import multiprocessing as mp

        with mp.get_context("forkserver").Pool(workers) as pool:
            for r, s in pool.imap(_score_chunk, jobs):
                rows += r
                skipped += s
    else:
        for job in jobs:
            r, s = _score_chunk(job)
            rows += r
            skipped += s
    if not rows:
        raise RealismError("no usable photo: " + "; ".join(f"{p}: {why}" for p, why in skipped[:5]))
    ids = sorted({r.photo_id for r in rows})
    pos = {p: i for i, p in enumerate(ids)}
    table: dict[str, dict[str, np.ndarray]] = {}
    for spec in methods:
        t = {k: np.full(len(ids), np.nan) for k in ("mse", "fmse", "psnr")}
        for r in rows:
            if r.method == spec.label:
                for k in t:
                    t[k][pos[r.photo_id]] = getattr(r, k)
        table[spec.label] = t
    base = table["none"]["fmse"]
    summaries = []
    for spec in methods:
        t = table[spec.label]
        ci = {k: bootstrap_mean(t[k], n_boot=n_boot, seed=seed) for k in t}
        d = bootstrap_mean(t["fmse"] - base, n_boot=n_boot, seed=seed)
        summaries.append(MethodSummary(
            method=spec.label, n=ci["fmse"]["n"],
            mse=(ci["mse"]["mean"], ci["mse"]["lo"], ci["mse"]["hi"]),
            fmse=(ci["fmse"]["mean"], ci["fmse"]["lo"], ci["fmse"]["hi"]),
            psnr=(ci["psnr"]["mean"], ci["psnr"]["lo"], ci["psnr"]["hi"]),
            fmse_vs_none=(d["mean"], d["lo"], d["hi"]),
            fmse_ratio_to_none=float(np.nanmean(t["fmse"]) / np.nanmean(base)),
            share_improved=float(np.nanmean(t["fmse"] < base)) if spec.name != "none" else 0.0,
        ))
    return RealismResult(rows=rows, summaries=summaries, perturbation=ranges, seed=seed, n_photos=len(ids), skipped=skipped)


def markdown_table(result: RealismResult, title: str = "") -> str:
    """The per-method table: MSE, fMSE, PSNR with 95 % CIs, fMSE minus "none" with its CI."""
    f = lambda t, d=1: f"{t[0]:.{d}f} [{t[1]:.{d}f}, {t[2]:.{d}f}]"  # noqa: E731
    lines = [f"{title}" if title else "", "| method | photos | MSE | fMSE | PSNR (dB) | fMSE - none | fMSE / none | photos improved |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in result.summaries:
        lines.append(f"| {s.method} | {s.n} | {f(s.mse)} | {f(s.fmse)} | {f(s.psnr, 2)} | {f(s.fmse_vs_none)} | "
                     f"{s.fmse_ratio_to_none:.3f} | {s.share_improved:.0%} |")
    return "\n".join(x for x in lines if x) + "\n"


def fit_illumination_prior(photos: list[tuple[str, Path, Path]], band_fraction: float = 0.15, source: str = "") -> IlluminationPrior:
    """Fit :class:`IlluminationPrior` by ordinary least squares on real photos with subject masks.

    For each photo, the subject's and its surround band's :func:`illumination_stats`; then per
    statistic ``k`` the OLS line ``s_subject_k ~ intercept_k + slope_k s_band_k`` and the standard
    deviation of its residuals (``ddof=2``). Photos that cannot be read are left out.

    Raises:
        RealismError: fewer than 10 usable photos.
    """
    subj, band = [], []
    for _, ip, mp in photos:
        try:
            rgb, mask = _load(ip, mp)
        except Exception:  # noqa: BLE001 - unreadable photos are left out of the fit
            continue
        ring = surround_band(mask.astype(np.float32), band_fraction)
        if ring.sum() < 16:
            continue
        subj.append(illumination_stats(rgb, mask))
        band.append(illumination_stats(rgb, ring))
    if len(subj) < 10:
        raise RealismError(f"fitting the illumination prior needs at least 10 usable photos, got {len(subj)}")
    s, b = np.asarray(subj), np.asarray(band)
    icpt, slope, sd = [], [], []
    for k in range(s.shape[1]):
        x, y = b[:, k], s[:, k]
        design = np.column_stack([np.ones_like(x), x])
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        resid = y - design @ coef
        icpt.append(float(coef[0]))
        slope.append(float(coef[1]))
        sd.append(float(np.sqrt((resid**2).sum() / max(len(y) - 2, 1))))
    return IlluminationPrior(tuple(icpt), tuple(slope), tuple(sd), band_fraction, len(subj), source)
