"""The ``synth`` recipe: a YAML document validated with pydantic (unknown keys are rejected).

Relative input paths (sources, metadata, cache) are resolved against the recipe file's folder;
the output folder is resolved against the current directory. ``synth schema`` prints the JSON
schema of :class:`Recipe`.
"""

from __future__ import annotations

import math
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from synth.edges import MATTING_METHODS


COMPOSITE_ATTRIBUTES = ("area_fraction", "area_bucket", "n_components", "touches_border", "thin_structures")
"""Attributes every composite gets from its own written mask (a source photo's are ``source_<name>``)."""


class RecipeError(ValueError):
    """A recipe that cannot be used; the message names the file and the field path."""


def _allows_bool(annotation: Any) -> bool:
    """Whether a field's type admits a YAML boolean (``bool`` itself, or a union / container with it)."""
    if annotation is bool:
        return True
    return any(_allows_bool(a) for a in typing.get_args(annotation) if not isinstance(a, (str, int, float)) or a is bool)


class Strict(BaseModel):
    """Base of every recipe section: unknown keys are errors, and a YAML boolean is never taken
    for a number (pydantic would read ``n_samples: true`` as 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and info.field_name in cls.model_fields and not _allows_bool(cls.model_fields[info.field_name].annotation):
            raise ValueError(f"a boolean ({str(value).lower()}) where a number or text is expected")
        return value


Unit = Annotated[float, Field(ge=0.0, le=1.0)]


def _range(lo_min: float, hi_max: float):
    """Validator factory for [lo, hi] pairs inside [lo_min, hi_max]."""

    def check(v: tuple[float, float]) -> tuple[float, float]:
        lo, hi = v
        if lo > hi:
            raise ValueError(f"range low {lo} is above high {hi}")
        if lo < lo_min or hi > hi_max:
            raise ValueError(f"range {list(v)} must lie within [{lo_min}, {hi_max}]")
        return v

    return check


class ForegroundPool(Strict):
    """A pool of subjects.

    ``kind``: ``rgba`` (cut-outs with an alpha channel in ``cutouts``), ``image_alpha`` (photos in
    ``images`` with 8/16-bit alpha mattes in ``alphas``), ``image_mask`` (photos with binary masks in
    ``masks``, foreground where > 127; the ECSSD and CCP layouts). Files pair by file stem, which is
    also the id joined to ``metadata``.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["rgba", "image_alpha", "image_mask"]
    images: Path | None = None
    masks: Path | None = None
    alphas: Path | None = None
    cutouts: Path | None = None
    metadata: Path | None = None
    id_column: str = "sample_id"
    provenance: dict[str, Literal["annotated", "self-reported", "estimated"]] = Field(default_factory=dict)
    limit: int | None = Field(default=None, ge=1, description="use only the first N ids (sorted)")
    ids: Path | None = Field(default=None, description="text file of ids (file stems), one per line: use only these")

    @model_validator(mode="after")
    def _folders(self) -> ForegroundPool:
        need = {"rgba": ("cutouts",), "image_alpha": ("images", "alphas"), "image_mask": ("images", "masks")}[self.kind]
        missing = [f for f in need if getattr(self, f) is None]
        if missing:
            raise ValueError(f"kind {self.kind!r} needs {', '.join(missing)}")
        return self


class BackgroundPool(Strict):
    """A pool of backgrounds: ``folder`` (plain photos) or ``masked`` (photos whose subject, given by
    ``masks``, is removed by inpainting the mask dilated by ``dilate_px`` pixels). Masked photos whose
    subject covers more than ``max_subject_fraction`` of the frame are skipped (too little scene left
    to inpaint from) and listed in the report."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["folder", "masked"]
    images: Path
    masks: Path | None = None
    dilate_px: int = Field(default=15, ge=0, le=200)
    inpaint: Literal["telea", "ns"] = "telea"
    max_subject_fraction: float = Field(default=0.5, gt=0.0, le=1.0)
    max_inpainted_fraction: Unit = Field(
        default=1.0, description="largest inpainted share of a sample's crop (masked plates); plates with no such crop are skipped"
    )
    crop_zoom: tuple[float, float] = Field(
        default=(1.0, 1.0), description="crop window size as a fraction of the largest window of the output's aspect"
    )
    limit: int | None = Field(default=None, ge=1)
    ids: Path | None = Field(default=None, description="text file of ids (file stems), one per line: use only these")

    _zoom = field_validator("crop_zoom")(_range(0.25, 1.0))

    @model_validator(mode="after")
    def _masks(self) -> BackgroundPool:
        if self.kind == "masked" and self.masks is None:
            raise ValueError("kind 'masked' needs masks")
        return self

    @property
    def clean_crops(self) -> bool:
        """True when crops are chosen by their inpainted share or zoom (else today's cover crop)."""
        return self.kind == "masked" and (self.max_inpainted_fraction < 1.0 or self.crop_zoom != (1.0, 1.0))


class Sources(Strict):
    foregrounds: list[ForegroundPool] = Field(min_length=1)
    backgrounds: list[BackgroundPool] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Sources:
        names = [p.name for p in self.foregrounds] + [p.name for p in self.backgrounds]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"pool names must be unique, repeated: {dup}")
        return self


class Output(Strict):
    size: tuple[Annotated[int, Field(ge=32, le=8192)], Annotated[int, Field(ge=32, le=8192)]] = Field(
        default=(512, 512), description="(height, width) in pixels"
    )
    coco: bool = False
    webdataset: bool = False
    shard_size: int = Field(default=1000, ge=1)


class Splits(Strict):
    """Fractions of source photos per split; assigned by photo, so nothing leaks across splits."""

    train: Unit = 0.8
    val: Unit = 0.1
    test: Unit = 0.1

    @model_validator(mode="after")
    def _sum(self) -> Splits:
        total = self.train + self.val + self.test
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"split fractions must sum to 1, got {total}")
        return self

    def as_dict(self) -> dict[str, float]:
        return {"train": self.train, "val": self.val, "test": self.test}


class Cell(Strict):
    values: dict[str, str]
    share: float = Field(ge=0.0, le=1.0)


class Balance(Strict):
    """Joint quotas over attribute columns of the (primary) foreground.

    ``uniform``: every combination of the observed values of ``columns`` gets an equal share.
    ``explicit``: ``cells`` list the shares (summing to 1); unlisted combinations get none.
    """

    columns: list[str] = Field(default_factory=list)
    mode: Literal["uniform", "explicit"] = "uniform"
    cells: list[Cell] = Field(default_factory=list)

    @field_validator("columns")
    @classmethod
    def _plannable(cls, v: list[str]) -> list[str]:
        for c in v:
            if c in COMPOSITE_ATTRIBUTES:
                raise ValueError(
                    f"{c!r} is computed from each composite's own mask after rendering and cannot be "
                    f"balanced; balance the source photo's value with 'source_{c}'"
                )
        return v

    @model_validator(mode="after")
    def _cells(self) -> Balance:
        if self.mode == "explicit":
            if not self.cells:
                raise ValueError("mode 'explicit' needs cells")
            total = sum(c.share for c in self.cells)
            if not math.isclose(total, 1.0, abs_tol=1e-6):
                raise ValueError(f"cell shares must sum to 1, got {total}")
            for i, c in enumerate(self.cells):
                if sorted(c.values) != sorted(self.columns):
                    raise ValueError(f"cells[{i}] must give a value for exactly the columns {self.columns}")
        elif self.cells:
            raise ValueError("cells are only allowed with mode 'explicit'")
        return self


class Placement(Strict):
    """Subject size, rotation and position jitter (uniform within each range)."""

    scale: tuple[float, float] = Field(default=(0.5, 0.9), description="subject's longer side / output's shorter side")
    rotation_deg: tuple[float, float] = (-10.0, 10.0)
    center_x: tuple[float, float] = Field(default=(0.35, 0.65), description="fraction of output width")
    center_y: tuple[float, float] = Field(default=(0.4, 0.65), description="fraction of output height")

    _scale = field_validator("scale")(_range(0.05, 2.0))
    _rot = field_validator("rotation_deg")(_range(-180.0, 180.0))
    _cx = field_validator("center_x")(_range(0.0, 1.0))
    _cy = field_validator("center_y")(_range(0.0, 1.0))


class Occlusion(Strict):
    """Something in front of the subject. ``source: cutout`` lays another foreground of the pool (a
    real cut-out with its alpha, from another photo of the same split) over the subject, sized to
    ``cutout_scale`` of the subject's longer side and placed to cover about ``coverage`` of it;
    ``plate`` lays a half-plane patch of another background (the older, rectangular occluder)."""

    probability: Unit = 0.0
    source: Literal["cutout", "plate"] = "cutout"
    coverage: tuple[float, float] = Field(default=(0.1, 0.3), description="fraction of subject pixels covered")
    cutout_scale: tuple[float, float] = Field(default=(0.3, 0.7), description="occluder's longer side / subject's longer side")
    feather_px: float = Field(default=2.0, ge=0.0, le=50.0)

    _cs = field_validator("cutout_scale")(_range(0.05, 2.0))

    _cov = field_validator("coverage")(_range(0.0, 0.9))


class LightWrap(Strict):
    enabled: bool = False
    radius_px: float = Field(default=8.0, gt=0.0, le=200.0)
    strength: Unit = 0.4


class Harmonization(Strict):
    """How a pasted subject takes the scene's appearance.

    ``illumination`` (the default) moves the subject's exposure, white balance and contrast part of
    the way (``strength``, a shrinkage) towards what a real subject under the light of its surround
    has, and keeps its own colours (:func:`synth.harmonize.illumination_harmonize`). ``reinhard``
    and ``histogram`` are colour transfer (they copy the background's colours onto the subject,
    camouflaging it); ``poisson`` is gradient-domain blending. ``synth realism`` measures each on
    real photos. ``match_noise`` and ``match_blur`` act on the subject alone (prefer ``camera``).
    """

    method: Literal["none", "illumination", "reinhard", "histogram", "poisson"] = "illumination"
    strength: tuple[float, float] = Field(default=(0.1, 0.1), description="uniform range in [0, 1]")
    poisson_mode: Literal["normal", "mixed"] = "normal"
    light_wrap: LightWrap = LightWrap()
    match_noise: bool = False
    match_blur: bool = False

    _strength = field_validator("strength", mode="before")(
        lambda v: (v, v) if isinstance(v, (int, float)) else v
    )
    _strength_range = field_validator("strength")(_range(0.0, 1.0))


class Defocus(Strict):
    """Depth of field: the plate (the scene behind the subject) is lens-blurred with a disk of radius
    ``radius`` (fraction of the output diagonal), the subject stays sharp."""

    probability: Unit = 0.0
    radius: tuple[float, float] = Field(default=(0.003, 0.012), description="disk radius / output diagonal")

    _r = field_validator("radius")(_range(0.0, 0.1))


class SensorNoise(Strict):
    """Poisson-Gaussian sensor noise on the whole composite, in linear light: ``shot`` variance gain
    and ``read`` standard deviation (linear units)."""

    probability: Unit = 0.0
    shot: tuple[float, float] = (0.0005, 0.004)
    read: tuple[float, float] = (0.001, 0.006)

    _s = field_validator("shot")(_range(0.0, 0.1))
    _rd = field_validator("read")(_range(0.0, 0.1))


class Shadow(Strict):
    """A soft contact shadow of the subject on the plate (``blur`` and ``offset`` as fractions of the
    subject's height)."""

    probability: Unit = 0.0
    opacity: tuple[float, float] = (0.2, 0.5)
    blur: tuple[float, float] = (0.02, 0.06)
    offset: tuple[float, float] = (0.0, 0.03)

    _o = field_validator("opacity")(_range(0.0, 1.0))
    _b = field_validator("blur")(_range(0.0, 0.5))
    _f = field_validator("offset")(_range(0.0, 0.5))


class Camera(Strict):
    """Effects of one camera on the whole scene: depth of field, sensor noise, a contact shadow."""

    defocus: Defocus = Defocus()
    sensor_noise: SensorNoise = SensorNoise()
    shadow: Shadow = Shadow()


class Band(Strict):
    """Unknown-band half width: ``px`` pixels, or ``fraction`` of the image diagonal."""

    px: int | None = Field(default=None, ge=0, le=500)
    fraction: float | None = Field(default=None, ge=0.0, le=0.2)

    @model_validator(mode="after")
    def _one(self) -> Band:
        if (self.px is None) == (self.fraction is None):
            raise ValueError("give exactly one of px or fraction")
        return self


class Edges(Strict):
    """Foreground edge preparation and output trimaps.

    ``alpha``: ``refine`` solves a soft alpha in the unknown band of binary masks (``matting``
    method, ``refine_band``); ``binary`` pastes the hard mask. ``foreground_estimation`` estimates
    the subject's own colours at the edge (no old-background halo). ``trimap_band``: band of the
    output trimaps.
    """

    alpha: Literal["refine", "binary"] = "refine"
    matting: Literal[MATTING_METHODS] = "cf"  # type: ignore[valid-type]
    refine_band: Band = Band(fraction=0.01)
    foreground_estimation: bool = True
    trimap_band: Band = Band(px=10)


class ColorJitter(Strict):
    brightness: float = Field(default=0.0, ge=0.0, le=1.0)
    contrast: float = Field(default=0.0, ge=0.0, le=1.0)
    saturation: float = Field(default=0.0, ge=0.0, le=1.0)
    hue_deg: float = Field(default=0.0, ge=0.0, le=180.0)


class Chance(Strict):
    probability: Unit = 0.0
    sigma: tuple[float, float] = (0.5, 1.5)

    _sigma = field_validator("sigma")(_range(0.0, 50.0))


class Augment(Strict):
    color_jitter: ColorJitter = ColorJitter()
    blur: Chance = Chance()
    noise: Chance = Field(default=Chance(sigma=(1.0, 4.0)), description="sigma in 8-bit levels")
    jpeg_quality: tuple[int, int] = (90, 95)

    _q = field_validator("jpeg_quality")(_range(1, 100))


class Quarantine(Strict):
    max_fraction: Unit = Field(default=0.2, description="fail when more input items than this are quarantined")


class Catalog(Strict):
    enabled: bool = Field(default=True, description="register the dataset, samples and attributes")
    dataset_name: str | None = None


class Recipe(Strict):
    """A complete build recipe; see the README and ``examples/recipes/`` for annotated examples."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    n_samples: int = Field(ge=1, le=1_000_000, description="samples to build; a plan is held in memory, so split larger sets into several builds")
    output: Output = Output()
    sources: Sources
    splits: Splits = Splits()
    balance: Balance = Balance()
    negatives: Unit = Field(default=0.0, description="share of background-only samples (no subject)")
    subjects_per_image: dict[int, float] = Field(default_factory=lambda: {1: 1.0})
    placement: Placement = Placement()
    occlusion: Occlusion = Occlusion()
    harmonization: Harmonization = Harmonization()
    camera: Camera = Camera()
    edges: Edges = Edges()
    augment: Augment = Augment()
    quarantine: Quarantine = Quarantine()
    catalog: Catalog = Catalog()
    cache_dir: Path | None = None

    @field_validator("subjects_per_image")
    @classmethod
    def _spi(cls, v: dict[int, float]) -> dict[int, float]:
        if not v:
            raise ValueError("needs at least one entry")
        for k, p in v.items():
            if not 1 <= k <= 8:
                raise ValueError(f"subject count {k} must be in 1..8")
            if p < 0:
                raise ValueError(f"probability for {k} subjects is negative")
        total = sum(v.values())
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"probabilities must sum to 1, got {total}")
        return dict(sorted(v.items()))

    def resolve_paths(self, base: Path) -> Recipe:
        """A copy with every relative input path made absolute against ``base``."""

        def fix(p: Path | None) -> Path | None:
            if p is None:
                return None
            return p if p.is_absolute() else (base / p).resolve()

        fgs = [
            p.model_copy(update={k: fix(getattr(p, k)) for k in ("images", "masks", "alphas", "cutouts", "metadata", "ids")})
            for p in self.sources.foregrounds
        ]
        bgs = [p.model_copy(update={k: fix(getattr(p, k)) for k in ("images", "masks", "ids")}) for p in self.sources.backgrounds]
        return self.model_copy(
            update={"sources": Sources(foregrounds=fgs, backgrounds=bgs), "cache_dir": fix(self.cache_dir)}
        )


def _format_errors(source: str, err: ValidationError) -> str:
    lines = [f"{source}: invalid recipe"]
    for e in err.errors():
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"]).lstrip(".") or "(root)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def parse_recipe(data: dict[str, Any], source: str = "<recipe>", base: Path | None = None) -> Recipe:
    """Validate a recipe document.

    Raises:
        RecipeError: unknown keys or bad values, one line per problem with its field path
            (e.g. ``harmonization.strength: range low 0.8 is above high 0.2``).
    """
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: a recipe must be a YAML mapping, got {type(data).__name__}")
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as err:
        raise RecipeError(_format_errors(source, err)) from None
    return recipe.resolve_paths(base) if base is not None else recipe


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that repeats a key (PyYAML keeps the last silently)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe YAML file; relative input paths resolve against its folder.

    Raises:
        RecipeError: missing file, bad YAML, or invalid content (with field paths).
    """
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: recipe file not found")
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return parse_recipe(data, str(path), base=path.resolve().parent)


def recipe_schema() -> dict[str, Any]:
    """The JSON schema of :class:`Recipe`."""
    return Recipe.model_json_schema()
