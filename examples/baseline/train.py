"""Train the reference LiftNet release on a synth build, export it to ONNX with its release manifest.

    pip install -e ".[train]"          # torch==2.13.0 (CPU build from the machine's local file)
    python examples/baseline/train.py --data runs/ecssd-train-full --out examples/releases/liftnet-full \\
        --minutes 15 --threads 1

Data: a ``synth build`` folder (``manifest.parquet``); its ``train`` split trains, its ``val`` split
reports a validation loss. The target is the build's alpha matte (a binary mask for a naive build).
Loss: BCE + soft Dice on the mask logits against the alpha, plus BCE of the gate logit against
``has_subject`` (negatives teach the gate). AdamW with a cosine schedule over the budget;
horizontal flips. Seeded (``--seed``). ``--epochs`` gives every recipe the same number of updates
(the comparison's budget); ``--minutes`` cuts at a wall-clock time instead. Both are logged.

Writes into ``--out``: ``model.onnx`` (inputs ``image`` (N, 3, 256, 256); outputs ``mask`` logits
(N, 1, 256, 256) and ``confidence`` logit (N, 1)), ``release.yaml`` (the evalhub manifest),
``weights.pt`` (the PyTorch state dict, for the ONNX-vs-PyTorch test) and ``train_log.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
import yaml
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model import MEAN, STD, LiftNet, n_parameters  # noqa: E402

SIZE = 256


def load_split(root: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images ``(N, H, W, 3)`` uint8 RGB, alphas ``(N, H, W)`` uint8 and ``has_subject`` ``(N,)`` bool
    of one split of a synth build, resized to SIZE if needed."""
    m = pd.read_parquet(root / "manifest.parquet")
    m = m[m["split"] == split].sort_values("sample_id")
    imgs, alphas = [], []
    for r in m.itertuples():
        img = cv2.cvtColor(cv2.imread(str(root / r.image_path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        a = cv2.imread(str(root / r.alpha_path), cv2.IMREAD_GRAYSCALE)
        if img.shape[:2] != (SIZE, SIZE):
            img = cv2.resize(img, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
            a = cv2.resize(a, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
        imgs.append(img)
        alphas.append(a)
    return np.stack(imgs), np.stack(alphas), m["has_subject"].to_numpy(bool)


def to_tensor(imgs: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` RGB to the normalised float ``(N, 3, H, W)`` the model takes."""
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def losses(mask_logits: torch.Tensor, conf_logit: torch.Tensor, alpha: torch.Tensor, has: torch.Tensor) -> dict[str, torch.Tensor]:
    """BCE and soft Dice (1 - (2 sum(p a) + 1) / (sum p + sum a + 1), per image) on the mask, BCE on
    the gate."""
    bce = F.binary_cross_entropy_with_logits(mask_logits, alpha)
    p = torch.sigmoid(mask_logits).flatten(1)
    a = alpha.flatten(1)
    dice = (1 - (2 * (p * a).sum(1) + 1) / (p.sum(1) + a.sum(1) + 1)).mean()
    gate = F.binary_cross_entropy_with_logits(conf_logit.squeeze(1), has)
    return {"bce": bce, "dice": dice, "gate": gate, "total": bce + dice + gate}


def evaluate(model: LiftNet, x: np.ndarray, a: np.ndarray, h: np.ndarray, batch: int = 32) -> dict[str, float]:
    model.eval()
    tot = {"bce": 0.0, "dice": 0.0, "gate": 0.0, "total": 0.0}
    with torch.no_grad():
        for i in range(0, len(x), batch):
            mk, c = model(to_tensor(x[i:i + batch]))
            ls = losses(mk, c, torch.tensor(a[i:i + batch], dtype=torch.float32).unsqueeze(1) / 255,
                        torch.tensor(h[i:i + batch], dtype=torch.float32))
            for k in tot:
                tot[k] += float(ls[k]) * len(x[i:i + batch])
    model.train()
    return {k: v / max(len(x), 1) for k, v in tot.items()}


def export(model: LiftNet, out: Path, name: str, recipe: str, threshold: float) -> None:
    """``model.onnx`` (opset 17, dynamic batch) and ``release.yaml``."""
    model.eval()
    dummy = torch.zeros(1, 3, SIZE, SIZE)
    torch.onnx.export(model, dummy, str(out / "model.onnx"), input_names=["image"], output_names=["mask", "confidence"],
                      dynamic_axes={"image": {0: "n"}, "mask": {0: "n"}, "confidence": {0: "n"}}, opset_version=17, dynamo=False)
    manifest = {
        "version": name,
        "description": f"LiftNet ({n_parameters(model):,} parameters) trained only on the liftlab build of {recipe}",
        "input": {"name": "image", "size": [SIZE, SIZE], "resize": "stretch", "color_order": "RGB", "layout": "NCHW",
                  "scale": 255.0, "mean": list(MEAN), "std": list(STD)},
        "outputs": {"mask": {"name": "mask", "activation": "sigmoid"}, "confidence": {"name": "confidence", "activation": "sigmoid"}},
        "threshold": threshold,
        "batch_size": 8,
    }
    (out / "release.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="a synth build folder")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--name", default=None, help="release version name [default: the out folder's name]")
    ap.add_argument("--minutes", type=float, default=15.0, help="training budget (wall clock), unless --epochs")
    ap.add_argument("--epochs", type=int, default=None, help="train exactly this many epochs (the same budget in steps for every recipe)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threshold", type=float, default=0.5, help="gate threshold written to the manifest")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    rng = np.random.default_rng(args.seed)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    t_load = time.perf_counter()
    xt, at, ht = load_split(args.data, "train")
    xv, av, hv = load_split(args.data, "val")
    print(f"train {len(xt)} ({ht.sum()} with a subject), val {len(xv)}; loaded in {time.perf_counter() - t_load:.1f} s", flush=True)

    model = LiftNet()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    budget = args.minutes * 60
    steps_per_epoch = len(xt) // args.batch
    total_steps = args.epochs * steps_per_epoch if args.epochs else None
    t0 = time.perf_counter()
    step, epoch, log = 0, 0, []
    done = False
    while not done:
        order = rng.permutation(len(xt))
        run = {"bce": 0.0, "dice": 0.0, "gate": 0.0, "total": 0.0}
        n = 0
        for i in range(0, len(order) - args.batch + 1, args.batch):
            elapsed = time.perf_counter() - t0
            progress = step / total_steps if total_steps else elapsed / budget
            if progress >= 1.0:
                done = True
                break
            for g in opt.param_groups:  # cosine over the budget (steps with --epochs, else wall clock)
                g["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * progress))
            idx = order[i:i + args.batch]
            img, alpha = xt[idx], at[idx]
            flip = rng.random(len(idx)) < 0.5
            img = np.where(flip[:, None, None, None], img[:, :, ::-1], img)
            alpha = np.where(flip[:, None, None], alpha[:, :, ::-1], alpha)
            mk, c = model(to_tensor(np.ascontiguousarray(img)))
            ls = losses(mk, c, torch.from_numpy(np.ascontiguousarray(alpha)).float().unsqueeze(1) / 255, torch.from_numpy(ht[idx]).float())
            opt.zero_grad()
            ls["total"].backward()
            opt.step()
            step += 1
            n += 1
            for k in run:
                run[k] += float(ls[k].detach())
        if n:
            epoch += 1
            val = evaluate(model, xv, av, hv)
            entry = {"epoch": epoch, "steps": step, "seconds": round(time.perf_counter() - t0, 1),
                     "train": {k: v / n for k, v in run.items()}, "val": val}
            log.append(entry)
            print(json.dumps(entry), flush=True)
    name = args.name or args.out.name
    torch.save(model.state_dict(), args.out / "weights.pt")
    lock = args.data / "recipe.lock.yaml"
    recipe = (yaml.safe_load(lock.read_text()).get("recipe") or {}).get("name") if lock.is_file() else None
    export(model, args.out, name, f"recipe {recipe}" if recipe else str(args.data.name), args.threshold)
    (args.out / "train_log.json").write_text(json.dumps({
        "data": str(args.data), "seed": args.seed, "threads": args.threads, "budget": f"{args.epochs} epochs" if args.epochs else f"{args.minutes} minutes",
        "seconds": round(time.perf_counter() - t0, 1), "batch": args.batch,
        "lr": args.lr, "parameters": n_parameters(model), "steps": step, "epochs": log,
        "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
    }, indent=2))
    print(f"wrote {args.out}/model.onnx, release.yaml, weights.pt, train_log.json ({step} steps)")


if __name__ == "__main__":
    main()
