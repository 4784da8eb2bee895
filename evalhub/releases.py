"""Model releases: the ONNX release manifest, batched ONNX inference, prediction folders and the
documented confidence proxy.

A release turns a dataset image into a *probability map* (``(H, W)`` float32 in [0, 1] at the
ground-truth size) and a *confidence* (float in [0, 1]).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from evalhub.calibration import check_confidences
from evalhub.upsample import UpsampleSpec, upsample
from synth.io import BadInput, open_image


class ReleaseError(ValueError):
    """A release that does not match its manifest, or bad prediction files; names the field or ids."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputSpec(_Strict):
    """How an image becomes the model's input tensor."""

    name: str | None = Field(None, description="input name; None = the model's only input")
    size: tuple[int, int] = Field(..., description="model input (height, width) in pixels")
    resize: Literal["stretch", "letterbox"] = "stretch"
    color_order: Literal["RGB", "BGR"] = "RGB"
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    scale: float = Field(255.0, gt=0, description="pixels are divided by this first")
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    pad_value: float = Field(0.0, description="letterbox padding, in pixel units (0-255) before normalisation")

    @field_validator("std")
    @classmethod
    def _positive_std(cls, v):
        if any(s <= 0 for s in v):
            raise ValueError("every std must be > 0")
        return v


class OutputSpec(_Strict):
    """One model output and the activation that turns it into [0, 1]."""

    name: str
    activation: Literal["sigmoid", "softmax", "none"] = "sigmoid"


class ReleaseManifest(_Strict):
    """``release.yaml`` of an ONNX release.

    ``outputs.mask``: a ``(N, 1, h, w)``, ``(N, h, w)`` or ``(N, h, w, 1)`` map (or ``(N, 2, h, w)``
    with ``softmax``, channel 1 = subject). ``outputs.confidence``: ``(N,)`` or ``(N, 1)`` (or
    ``(N, 2)`` with ``softmax``); omit it and the proxy of :func:`proxy_confidence` is used and
    marked as a proxy in every report. ``threshold``: the gate accepts ``confidence >= threshold``.
    ``upsample``: how the map is brought to the photo's size (:mod:`evalhub.upsample`: ``bilinear``,
    ``guided`` with ``radius`` and ``eps``, or ``matting``). ``calibration``: the gate calibrator
    ``evalhub calibrate`` fitted (:mod:`evalhub.gate`); scoring and ``evalhub lift`` apply it.
    """

    version: str
    input: InputSpec
    outputs: dict[Literal["mask", "confidence"], OutputSpec]
    threshold: float = Field(0.5, ge=0, le=1)
    batch_size: int = Field(8, ge=1)
    description: str | None = None
    upsample: UpsampleSpec = Field(default_factory=UpsampleSpec, description="how the map reaches the photo's size (evalhub.upsample)")
    calibration: dict[str, Any] | None = Field(None, description="gate calibrator written by `evalhub calibrate` (evalhub.gate)")

    @field_validator("outputs")
    @classmethod
    def _needs_mask(cls, v):
        if "mask" not in v:
            raise ValueError("outputs.mask is required")
        return v


def load_manifest(path: str | Path) -> ReleaseManifest:
    """Read and validate ``release.yaml``.

    Raises:
        ReleaseError: unreadable YAML, or each invalid field named by its path (``input.size``).
    """
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ReleaseError(f"release manifest {path}: {exc}") from None
    try:
        return ReleaseManifest.model_validate(doc)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ReleaseError(f"release manifest {path} is invalid:\n" + "\n".join(lines)) from None


# --------------------------------------------------------------------------------------------
# The confidence proxy

PROXY_DESCRIPTION = (
    "proxy confidence (the release has no confidence output): mean certainty |2p - 1| of the "
    "probability map over the predicted subject and a band of ceil(0.008 x diagonal) pixels around "
    "it; 0 when nothing is predicted"
)


def proxy_confidence(prob: np.ndarray) -> float:
    """Confidence proxy for a release without a gate output.

    The mean of ``|2p - 1|`` over the predicted subject (``p >= 0.5``) dilated by a disk of
    ``ceil(0.008 * diagonal)`` pixels, so soft or ragged boundaries lower it and the background far
    from the subject does not dilute it; 0 when nothing is predicted (an empty extraction is never
    shown). This is a heuristic, not a trained gate: every report marks it as a proxy.

    Args:
        prob: ``(H, W)`` float in [0, 1].

    Returns:
        A float in [0, 1].
    """
    fg = (prob >= 0.5).astype(np.uint8)
    if not fg.any():
        return 0.0
    r = int(math.ceil(0.008 * math.hypot(*prob.shape[:2])))
    region = cv2.dilate(fg, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))) > 0
    return float(np.abs(2.0 * prob[region] - 1.0).mean())


# --------------------------------------------------------------------------------------------
# ONNX


def _activate(x: np.ndarray, activation: str, axis: int) -> np.ndarray:
    if activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))
    if activation == "softmax":
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)
    return x


def available_providers() -> list[str]:
    """onnxruntime providers to use: CUDA first when this onnxruntime build has it, then CPU."""
    import onnxruntime as ort

    have = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in have]


class OnnxRelease:
    """An ONNX model run per its manifest.

    Args:
        model: path of the ``.onnx`` file.
        manifest: the validated manifest.
        providers: onnxruntime providers (default :func:`available_providers`).
        threads: intra-op threads (0 = onnxruntime's default).

    Raises:
        ReleaseError: the model cannot be loaded, or its inputs/outputs do not match the manifest
            (the message names the manifest field).
    """

    def __init__(self, model: str | Path, manifest: ReleaseManifest, providers: list[str] | None = None, threads: int = 0):
        import onnxruntime as ort

        self.path = Path(model)
        self.manifest = manifest
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=providers or available_providers())
        except Exception as exc:
            raise ReleaseError(f"cannot load ONNX model {self.path}: {exc}") from None
        self._check()

    def _check(self) -> None:
        spec = self.manifest.input
        inputs = {i.name: i for i in self.session.get_inputs()}
        if spec.name is None:
            if len(inputs) != 1:
                raise ReleaseError(f"manifest field 'input.name' is required: {self.path.name} has inputs {sorted(inputs)}")
            self.input_name = next(iter(inputs))
        elif spec.name not in inputs:
            raise ReleaseError(f"manifest field 'input.name': {spec.name!r} is not an input of {self.path.name} (inputs: {sorted(inputs)})")
        else:
            self.input_name = spec.name
        shape = inputs[self.input_name].shape
        if len(shape) != 4:
            raise ReleaseError(f"manifest field 'input.layout': {self.path.name} input {self.input_name!r} has rank {len(shape)}, expected 4 ({spec.layout})")
        h, w = spec.size
        want = {"NCHW": (3, h, w), "NHWC": (h, w, 3)}[spec.layout]
        fields = {"NCHW": ("input.layout", "input.size", "input.size"), "NHWC": ("input.size", "input.size", "input.layout")}[spec.layout]
        for dim, exp, fld in zip(shape[1:], want, fields):
            if isinstance(dim, int) and dim != exp:
                raise ReleaseError(
                    f"manifest field '{fld}': {self.path.name} input {self.input_name!r} has shape {shape}, "
                    f"the manifest implies (N, {', '.join(map(str, want))}) for layout {spec.layout} and size {list(spec.size)}"
                )
        outputs = [o.name for o in self.session.get_outputs()]
        for key, out in self.manifest.outputs.items():
            if out.name not in outputs:
                raise ReleaseError(f"manifest field 'outputs.{key}.name': {out.name!r} is not an output of {self.path.name} (outputs: {outputs})")
        self.output_names = [self.manifest.outputs[k].name for k in ("mask", "confidence") if k in self.manifest.outputs]

    @property
    def has_confidence(self) -> bool:
        return "confidence" in self.manifest.outputs

    def input_shape(self, n: int) -> tuple[int, int, int, int]:
        """Shape of a batch of ``n`` model inputs."""
        h, w = self.manifest.input.size
        return (n, 3, h, w) if self.manifest.input.layout == "NCHW" else (n, h, w, 3)

    def preprocess(self, rgb: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """One image to a model input ``(3, h, w)`` or ``(h, w, 3)`` float32 and the valid window
        ``(top, left, height, width)`` inside it (the whole input for ``stretch``)."""
        out = np.empty(self.input_shape(1)[1:], np.float32)
        return out, self.preprocess_into(rgb, out)

    def preprocess_into(self, rgb: np.ndarray, out: np.ndarray) -> tuple[int, int, int, int]:
        """Write one image's model input into ``out`` (one slot of a batch) and return the valid
        window ``(top, left, height, width)``.

        Resizing: ``stretch`` to the input size, or ``letterbox`` (fit, keep aspect, centre, pad
        with ``pad_value``); area interpolation when shrinking, bilinear when enlarging. Then
        ``(pixel / scale - mean) / std`` per channel, in the manifest's colour order and layout.
        """
        spec = self.manifest.input
        h, w = spec.size
        if spec.resize == "stretch":
            nh, nw, top, left = h, w, 0, 0
        else:
            s = min(h / rgb.shape[0], w / rgb.shape[1])
            nh, nw = max(1, round(rgb.shape[0] * s)), max(1, round(rgb.shape[1] * s))
            top, left = (h - nh) // 2, (w - nw) // 2
        shrink = nh < rgb.shape[0] or nw < rgb.shape[1]
        resized = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        order = (0, 1, 2) if spec.color_order == "RGB" else (2, 1, 0)
        for c, src in enumerate(order):
            gain = 1.0 / (spec.scale * spec.std[c])
            bias = spec.mean[c] / spec.std[c]
            plane = out[c] if spec.layout == "NCHW" else out[..., c]
            if (nh, nw) != (h, w):
                plane[...] = spec.pad_value * gain - bias
            dst = plane[top : top + nh, left : left + nw]
            np.multiply(resized[..., src], np.float32(gain), out=dst, casting="unsafe")
            dst -= np.float32(bias)
        return (top, left, nh, nw)

    def run_batch(self, batch: np.ndarray) -> list[np.ndarray]:
        """Bare ``InferenceSession.run`` of one preprocessed batch (the mask and confidence outputs)."""
        return self.session.run(self.output_names, {self.input_name: batch})

    def _mask_maps(self, raw: np.ndarray) -> np.ndarray:
        spec = self.manifest.outputs["mask"]
        if raw.ndim == 4 and raw.shape[1] in (1, 2) and raw.shape[-1] not in (1, 2):
            axis, layout = 1, "NCHW"
        elif raw.ndim == 4 and raw.shape[-1] in (1, 2):
            axis, layout = 3, "NHWC"
        elif raw.ndim == 3:
            axis, layout = None, "NHW"
        else:
            raise ReleaseError(f"manifest field 'outputs.mask': output {spec.name!r} has shape {raw.shape}; expected (N,1,h,w), (N,h,w) or (N,h,w,1)")
        x = raw.astype(np.float32)
        if spec.activation == "softmax":
            if axis is None or x.shape[axis] != 2:
                raise ReleaseError(f"manifest field 'outputs.mask.activation': softmax needs 2 channels, output {spec.name!r} has shape {raw.shape}")
            x = _activate(x, "softmax", axis).take(1, axis=axis)
        else:
            if axis is not None and x.shape[axis] != 1:
                raise ReleaseError(f"manifest field 'outputs.mask.activation': {x.shape[axis]} channels need softmax")
            x = _activate(x, spec.activation, 0)
            x = x.reshape(x.shape[0], *(x.shape[2:] if layout == "NCHW" else x.shape[1:3]))
        return x

    def _confidences(self, raw: np.ndarray) -> np.ndarray:
        spec = self.manifest.outputs["confidence"]
        x = raw.astype(np.float64).reshape(raw.shape[0], -1)
        if spec.activation == "softmax":
            if x.shape[1] != 2:
                raise ReleaseError(f"manifest field 'outputs.confidence.activation': softmax needs 2 values per image, output {spec.name!r} has shape {raw.shape}")
            return _activate(x, "softmax", 1)[:, 1]
        if x.shape[1] != 1:
            raise ReleaseError(f"manifest field 'outputs.confidence': output {spec.name!r} has shape {raw.shape}; expected (N,) or (N,1)")
        return _activate(x[:, 0], spec.activation, 0)

    def predict(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, float | None]]:
        """Probability maps at each image's own size and confidences (None without a gate output).

        The model's maps (:meth:`predict_maps`) reach each photo's size through the manifest's
        upsampler (:func:`evalhub.upsample.upsample`).

        Args:
            images: ``(H, W, 3)`` uint8 RGB photos.

        Returns:
            One ``(prob (H, W) float32 in [0, 1], confidence)`` per image, in order. Confidences are
            returned raw; the caller checks them for NaN, infinite and out-of-range values.
        """
        return [(upsample(m, im, self.manifest.upsample), c) for im, (m, c) in zip(images, self.predict_maps(images))]

    def predict_maps(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, float | None]]:
        """The model's own probability maps, cut to each image's valid window (letterbox padding
        removed) at the model's output resolution, and the confidences; as :meth:`predict` before
        upsampling."""
        from concurrent.futures import ThreadPoolExecutor

        bs = self.manifest.batch_size
        chunks = [images[i : i + bs] for i in range(0, len(images), bs)]
        out: list[tuple[np.ndarray, float | None]] = []
        if not chunks:
            return out
        # the next batch is prepared on a second thread while the session runs this one (OpenCV,
        # NumPy and onnxruntime release the GIL)
        with ThreadPoolExecutor(1) as pool:
            nxt = pool.submit(self._prepare, chunks[0])
            for i, chunk in enumerate(chunks):
                batch, windows = nxt.result()
                if i + 1 < len(chunks):
                    nxt = pool.submit(self._prepare, chunks[i + 1])
                out.extend(self._windows(windows, self.run_batch(batch)))
        return out

    def _prepare(self, chunk: list[np.ndarray]) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
        batch = np.empty(self.input_shape(len(chunk)), np.float32)
        return batch, [self.preprocess_into(im, batch[k]) for k, im in enumerate(chunk)]

    def _windows(self, windows, res) -> list[tuple[np.ndarray, float | None]]:
        maps = self._mask_maps(res[0])
        confs = self._confidences(res[1]) if self.has_confidence else [None] * len(windows)
        ih, iw = self.manifest.input.size
        out = []
        for (top, left, nh, nw), m, c in zip(windows, maps, confs):
            mh, mw = m.shape
            # the valid window in output coordinates (outputs may be smaller than inputs)
            sy, sx = mh / ih, mw / iw
            win = m[int(round(top * sy)) : int(round((top + nh) * sy)), int(round(left * sx)) : int(round((left + nw) * sx))]
            out.append((win, None if c is None else float(c)))
        return out


# --------------------------------------------------------------------------------------------
# Prediction folders


PREDICTION_ENCODINGS = ("probability", "binary")
"""How a predictions folder's mask files encode the prediction, as its release declares it."""


def read_probability(path: str | Path, encoding: str = "probability") -> np.ndarray:
    """A predicted mask file as ``(h, w)`` float32 probabilities in [0, 1], read as declared.

    ``encoding="probability"`` (the default): 8-bit values / 255, 16-bit / 65535, 32-bit float files
    as they are (in [0, 1]). An 8-bit map whose values are all 0 or 1 is read as probabilities too
    (p <= 1/255), never guessed to be a binary mask: a release whose files are 0/1 masks says
    ``encoding="binary"``, where any value > 0 is foreground and the values must be 0/1 or 0/255.

    Channels: a grey file is read as it is; a file with an alpha channel (RGBA, LA: what
    background-removal tools write) is read from its alpha; an RGB file whose three channels are
    equal is grey. Any other colour file (a mask in one channel, a colour visualisation) is
    ambiguous and refused, naming the file.

    Raises:
        BadInput: unreadable file, ambiguous colour file, float values outside [0, 1], or a binary
            release's file with other values than 0/1 or 0/255 (each naming the file).
        ValueError: an unknown ``encoding``.
    """
    if encoding not in PREDICTION_ENCODINGS:
        raise ValueError(f"encoding must be one of {PREDICTION_ENCODINGS}, got {encoding!r}")
    img = open_image(path)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float32) / 65535.0
        if encoding == "binary":
            return (arr > 0).astype(np.float32)
        return np.clip(arr, 0, 1)
    if img.mode == "1":
        return np.asarray(img, dtype=np.float32)
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
            raise BadInput(path, "float mask values outside [0, 1]")
        return (arr > 0).astype(np.float32) if encoding == "binary" else arr
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        arr = np.asarray(img.convert("RGBA"), dtype=np.uint8)[..., 3]
    elif img.mode == "L":
        arr = np.asarray(img, dtype=np.uint8)
    else:
        rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
        if not ((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()):
            raise BadInput(path, "colour prediction without an alpha channel: which channel holds the mask is ambiguous; "
                                 "write grey or RGBA files")
        arr = rgb[..., 0]
    if encoding == "binary":
        values = np.unique(arr)
        if not (set(values.tolist()) <= {0, 1} or set(values.tolist()) <= {0, 255}):
            raise BadInput(path, f"the release declares binary masks but the file holds values {values[:6].tolist()}...")
        return (arr > 0).astype(np.float32)
    return arr.astype(np.float32) / 255.0


def read_confidences(path: str | Path) -> dict[str, float]:
    """``confidences.csv`` (``sample_id,confidence``) as ``{sample_id: confidence}``.

    Raises:
        ReleaseError: missing columns, duplicate ids, unparsable, NaN, infinite or out-of-[0, 1]
            values (each naming the ids).
    """
    path = Path(path)
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"sample_id", "confidence"} <= set(reader.fieldnames):
            raise ReleaseError(f"{path}: needs the columns sample_id,confidence (found {reader.fieldnames})")
        ids, vals, unparsable, seen, dups = [], [], [], set(), set()
        for row in reader:
            sid = (row["sample_id"] or "").strip()
            if sid in seen:
                dups.add(sid)
            seen.add(sid)
            try:
                vals.append(float(row["confidence"]))
            except (TypeError, ValueError):
                unparsable.append(sid)
                vals.append(float("nan"))
            ids.append(sid)
    if unparsable:
        raise ReleaseError(f"{path}: confidence is not a number for ids {unparsable[:20]}")
    if dups:
        raise ReleaseError(f"{path}: duplicate ids {sorted(dups)[:20]}")
    try:
        check_confidences(vals, ids)
    except ValueError as exc:
        raise ReleaseError(f"{path}: {exc}") from None
    return dict(zip(ids, vals))


def scan_predictions(folder: str | Path) -> tuple[dict[str, Path], dict[str, float] | None]:
    """A predictions folder: ``masks/<sample_id>.png`` and optional ``confidences.csv``.

    Returns:
        ``(mask files by id, confidences by id or None)``.

    Raises:
        ReleaseError: no ``masks/`` folder, or a bad ``confidences.csv``.
    """
    folder = Path(folder)
    masks_dir = folder / "masks"
    if not masks_dir.is_dir():
        raise ReleaseError(f"predictions folder {folder}: no masks/ folder")
    files = {p.stem: p for p in sorted(masks_dir.iterdir()) if p.is_file() and not p.name.startswith(".")}
    conf_path = folder / "confidences.csv"
    return files, read_confidences(conf_path) if conf_path.is_file() else None


def write_confidences(path: str | Path, confidences: dict[str, float]) -> None:
    """Write ``confidences.csv`` (``sample_id,confidence``), ids sorted."""
    from synth.io import atomic_write_text

    lines = ["sample_id,confidence"] + [f"{k},{confidences[k]:.9g}" for k in sorted(confidences)]
    atomic_write_text(path, "\n".join(lines) + "\n")


def release_content(kind: str, path: str | Path) -> str:
    """A digest of what a release predicts with, for its catalog content hash: the ONNX file's
    SHA-256, or for a predictions folder the SHA-256 over every file's name and bytes (``masks/``
    and ``confidences.csv``).

    Raises:
        ReleaseError: the file or folder cannot be read (named).
    """
    import hashlib

    h = hashlib.sha256()
    path = Path(path)
    try:
        files = [path] if kind == "onnx" else [p for p in sorted((path / "masks").iterdir()) if p.is_file()] + [
            p for p in [path / "confidences.csv"] if p.is_file()]
        for f in files:
            h.update(f.name.encode() + b"\0")
            h.update(hashlib.sha256(f.read_bytes()).digest())
    except OSError as exc:
        raise ReleaseError(f"release {path}: cannot read {exc.filename} ({exc.strerror})") from None
    return h.hexdigest()


def describe(release: dict[str, Any]) -> str:
    """One line about a catalog release revision for listings."""
    proxy = " (proxy confidence)" if release.get("confidence_proxy") else ""
    return f"{release['name']}@{release.get('revision', 1)}\t{release['kind']}\tv{release.get('version') or '-'}\tthreshold {release['threshold']:g}{proxy}\t{release['path']}"
