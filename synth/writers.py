"""Dataset-level outputs: manifest (Parquet), build report (JSON + Markdown), recipe lock,
COCO RLE annotations and WebDataset shards."""

from __future__ import annotations

import io
import json
import platform
import tarfile
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from synth.io import atomic_write_bytes, atomic_write_text

MANIFEST_FIXED = [
    "sample_id", "index", "split", "image_path", "mask_path", "alpha_path", "trimap_path", "has_subject",
    "n_subjects", "height", "width", "fg_id", "fg_ids", "bg_id", "subject_area_fraction",
    "sha256_image", "sha256_mask", "sha256_alpha", "sha256_trimap", "light_z_before", "light_z_after",
    "matched_blur_sigma", "matched_noise_sigma", "occlusion_achieved", "bg_crop_offset_x", "bg_crop_offset_y",
    "bg_crop_zoom", "bg_inpainted_fraction", "crop_inpainted_fraction",
]


def flatten_record(rec: dict[str, Any], attr_names: list[str], param_names: list[str]) -> dict[str, Any]:
    """One manifest row: fixed columns, every attribute (as text) and every sampled parameter."""
    row = {k: rec.get(k) for k in MANIFEST_FIXED}
    for a in attr_names:
        v = rec["attributes"].get(a)
        row[a] = None if v is None else (("true" if v else "false") if isinstance(v, bool) else str(v))
    for k in param_names:
        row[f"param_{k}"] = rec["params"].get(k)
    return row


def write_manifest(path: Path, records: list[dict[str, Any]]) -> list[str]:
    """Write ``manifest.parquet`` (one row per sample, ordered by index); returns attribute names.

    Columns: :data:`MANIFEST_FIXED`, then attribute columns (text, null where missing; negatives
    have none), then ``param_*`` columns with every sampled parameter.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    attr_names = sorted({a for r in records for a in r["attributes"]})
    param_names = sorted({k for r in records for k in r["params"]})
    rows = [flatten_record(r, attr_names, param_names) for r in records]
    cols = MANIFEST_FIXED + attr_names + [f"param_{k}" for k in param_names]
    data = {c: [row[c] for row in rows] for c in cols}
    fields = []
    for c in cols:
        if c in attr_names:
            fields.append(pa.field(c, pa.string()))
        else:
            fields.append(pa.field(c, pa.array(data[c]).type))
    table = pa.table({c: pa.array(data[c], type=f.type) for c, f in zip(cols, fields)})
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    atomic_write_bytes(path, buf.getvalue())
    return attr_names


def package_versions() -> dict[str, str]:
    """Versions of liftlab and the libraries that shape its outputs."""
    out = {"python": platform.python_version()}
    for pkg in ("liftlab", "numpy", "opencv-python-headless", "pillow", "pymatting", "numba", "scipy", "pyarrow", "pydantic"):
        try:
            out[pkg] = importlib_metadata.version(pkg)
        except importlib_metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def write_lock(path: Path, recipe_doc: dict, input_hashes: dict[str, dict[str, str]], fingerprint: str) -> None:
    """``recipe.lock.yaml``: the resolved recipe, package versions, input hashes and the plan
    fingerprint a resume checks against."""
    doc = {"recipe": recipe_doc, "versions": package_versions(), "inputs": input_hashes, "fingerprint": fingerprint}
    atomic_write_text(path, yaml.safe_dump(doc, sort_keys=True, allow_unicode=True))


def write_report(out_dir: Path, report: dict[str, Any]) -> None:
    """``build_report.json`` and a readable ``build_report.md``."""
    atomic_write_text(out_dir / "build_report.json", json.dumps(report, indent=2, sort_keys=True))
    atomic_write_text(out_dir / "build_report.md", report_markdown(report))


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.4f}"
    return str(x)


def report_markdown(rep: dict[str, Any]) -> str:
    """Render the build report as Markdown."""
    c = rep["counts"]
    lines = [
        f"# Build report: {rep['name']}",
        "",
        f"- samples: {c['samples']} ({c['positives']} with a subject, {c['negatives']} negatives)",
        "- splits: " + ", ".join(f"{k} {v}" for k, v in c["splits"].items()),
        "- subjects per image: " + ", ".join(f"{k}: {v}" for k, v in c["subjects_per_image"].items()),
        f"- distinct foregrounds used: {c['distinct_foregrounds']} (most uses of one: {c['max_uses_of_one_foreground']})",
        f"- output: {rep['output_size'][1]}x{rep['output_size'][0]} px",
        "",
        "## Balance",
        "",
    ]
    b = rep["balance"]
    if b["columns"]:
        lines += [
            f"Columns: {', '.join(b['columns'])}. Max |deviation| {b['max_abs_deviation']:.4f}, "
            f"total variation distance {b['total_variation_distance']:.4f}.",
            "",
            "| cell | target | achieved | target share | achieved share |",
            "|---|---:|---:|---:|---:|",
        ]
        for row in b["cells"]:
            cell = ", ".join(f"{k}={v}" for k, v in row["cell"].items())
            lines.append(f"| {cell} | {row['target']} | {row['achieved']} | {row['target_share']:.4f} | {row['achieved_share']:.4f} |")
    else:
        lines.append("No balance columns.")
    px = rep.get("pixels")
    if px and px.get("foreground_share_quantiles"):
        qs = px["foreground_share_quantiles"]
        lines += ["", "## Foreground pixel share", "",
                  f"Negatives: {px['negatives_share']:.1%} of the samples. Foreground share of each positive: mean "
                  f"{px['foreground_share_mean']:.4f}, median {qs['p50']:.4f} (p10 {qs['p10']:.4f}, p90 {qs['p90']:.4f}); "
                  f"of all pixels, negatives included: {px['foreground_share_pooled']:.4f}. A per-pixel loss sees the "
                  "pooled share; per-image metrics weigh every image alike.", "",
                  "| foreground share | positives |", "|---|---:|"]
        for b in px["histogram"]:
            lines.append(f"| {b['from']:.0%} - {b['to']:.0%} | {b['n']} |")
    lines += ["", "## Harmonization", "",
              "Light mismatch: how unusual each subject's exposure, white balance and contrast are for the surround it was "
              "pasted in, in standard deviations of real ECSSD photos (RMS z over the four statistics; real photos give "
              "about 1). Colour similarity to the background is deliberately not a target: it rewards camouflage.", "",
              "| method | n | mean light z before | mean light z after |", "|---|---:|---:|---:|"]
    for m, h in rep["harmonization"].items():
        lines.append(f"| {m} | {h['n']} | {_fmt(h['mean_before'])} | {_fmt(h['mean_after'])} |")
    pl = rep.get("plates")
    if pl:
        lines += ["", "## Background plates", "",
                  f"Inpainted share of the plates used: mean {_fmt(pl['plate_mean'])}; of the samples' crops: mean "
                  f"{_fmt(pl['crop_mean'])}, max {_fmt(pl['crop_max'])} (bound {_fmt(pl['bound'])})."]
    if rep.get("contact_sheet"):
        lines += ["", "## Contact sheet", "", f"![contact sheet]({rep['contact_sheet']})", "",
                  "The first composites with their mask outline (green), written by the build so you can look before training."]
    q = rep["quarantine"]
    lines += ["", f"## Quarantine ({q['n_bad_input']} bad inputs, {q['n_skipped']} skipped)", ""]
    if q["entries"]:
        lines += ["| id | kind | reason | file |", "|---|---|---|---|"]
        for e in q["entries"]:
            lines.append(f"| {e['item_id']} | {e['kind']} | {e['reason']} | {e['path']} |")
    else:
        lines.append("Nothing quarantined.")
    t = rep["timings_s"]
    lines += ["", "## Timings (s)", ""] + [f"- {k}: {v:.2f}" for k, v in t.items()]
    cache = rep["cache"]
    lines += ["", f"Cache: {cache['foreground_hits']} foreground and {cache['background_hits']} background hits, "
              f"{cache['foreground_prepared']} foregrounds and {cache['background_prepared']} backgrounds prepared."]
    prep = rep.get("preparation")
    if prep and prep.get("prepared_per_s"):
        lines.append(f"Preparation: {prep['prepared']} inputs in {prep['seconds']:.2f} s, {prep['prepared_per_s']:.2f} inputs/s "
                     f"over {rep.get('workers', 1)} worker(s).")
    return "\n".join(lines) + "\n"


def write_coco(path: Path, out_dir: Path, records: list[dict[str, Any]]) -> None:
    """COCO instance annotations with RLE masks (pycocotools): one category ``subject``, one
    annotation per sample with a subject (the union mask), negatives as images without annotations."""
    import cv2
    from pycocotools import mask as mask_utils

    images, anns = [], []
    for i, r in enumerate(records, start=1):
        images.append({"id": i, "file_name": r["image_path"], "height": r["height"], "width": r["width"], "sample_id": r["sample_id"]})
        if not r["has_subject"]:
            continue
        m = cv2.imread(str(out_dir / r["mask_path"]), cv2.IMREAD_GRAYSCALE) > 127
        if not m.any():
            continue
        rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        anns.append(
            {
                "id": len(anns) + 1, "image_id": i, "category_id": 1, "iscrowd": 0,
                "segmentation": {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")},
                "area": float(mask_utils.area(rle)), "bbox": [float(v) for v in mask_utils.toBbox(rle)],
            }
        )
    doc = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "subject"}]}
    atomic_write_text(path, json.dumps(doc))


def write_webdataset(out_dir: Path, records: list[dict[str, Any]], shard_size: int) -> list[str]:
    """WebDataset tar shards ``shards/shard-NNNNNN.tar``: per sample ``<id>.jpg``, ``<id>.mask.png``,
    ``<id>.alpha.png``, ``<id>.trimap.png`` and ``<id>.json`` (its manifest record). Member
    metadata is fixed (mtime 0, uid 0), so shards are byte-reproducible."""
    names = []
    for s in range(0, len(records), shard_size):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for r in records[s : s + shard_size]:
                members = [
                    (f"{r['sample_id']}.jpg", (out_dir / r["image_path"]).read_bytes()),
                    (f"{r['sample_id']}.mask.png", (out_dir / r["mask_path"]).read_bytes()),
                    (f"{r['sample_id']}.alpha.png", (out_dir / r["alpha_path"]).read_bytes()),
                    (f"{r['sample_id']}.trimap.png", (out_dir / r["trimap_path"]).read_bytes()),
                    (f"{r['sample_id']}.json", json.dumps(r, sort_keys=True).encode()),
                ]
                for name, data in members:
                    info = tarfile.TarInfo(name)
                    info.size, info.mtime, info.mode = len(data), 0, 0o644
                    tar.addfile(info, io.BytesIO(data))
        name = f"shards/shard-{s // shard_size:06d}.tar"
        atomic_write_bytes(out_dir / name, buf.getvalue())
        names.append(name)
    return names


def write_contact_sheet(path: Path, out_dir: Path, records: list[dict[str, Any]], n: int = 48, cols: int = 8, tile: int = 160) -> str | None:
    """A PNG grid of the first ``n`` composites (by index), each downscaled to ``tile`` px on its
    longer side with its mask outline drawn in green and its sample id, so a data engineer can look
    at the data before training.

    Returns:
        The sheet's path relative to ``out_dir`` (None when there is no sample).
    """
    import cv2

    recs = sorted(records, key=lambda r: r["index"])[:n]
    if not recs:
        return None
    rows = (len(recs) + cols - 1) // cols
    sheet = np.full((rows * (tile + 18), cols * tile, 3), 32, np.uint8)
    for i, r in enumerate(recs):
        img = cv2.imread(str(out_dir / r["image_path"]), cv2.IMREAD_COLOR)
        mask = cv2.imread(str(out_dir / r["mask_path"]), cv2.IMREAD_GRAYSCALE)
        if img is None or mask is None:
            continue
        s = tile / max(img.shape[:2])
        size = (max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s)))
        small = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        m = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours((m > 127).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(small, contours, -1, (0, 255, 0), 1)
        y, x = (i // cols) * (tile + 18), (i % cols) * tile
        sheet[y : y + small.shape[0], x : x + small.shape[1]] = small
        label = r["sample_id"] + ("" if r["has_subject"] else " neg")
        cv2.putText(sheet, label, (x + 3, y + tile + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (230, 230, 230), 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".png", sheet)
    atomic_write_bytes(path, buf.tobytes())
    return path.name
