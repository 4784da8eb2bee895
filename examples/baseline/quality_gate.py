"""Give the reference release a gate that predicts its own extraction is acceptable.

    python examples/baseline/quality_gate.py --release examples/releases/liftnet-full \\
        --data runs/ecssd-gate-heldout --out examples/releases/liftnet-full-qgate

The shipped gate of ``liftnet-full`` was trained on ``has_subject``: it says "a subject is present"
and is near 1 on every real photo. Here the mask network stays frozen and a new gate head learns
*quality*: its target is 1 when the release's own extraction of a held-out composite is acceptable
(IoU with the composite's mask >= ``--accept-iou``, 0.8; a negative never is). The composites come
from ``examples/recipes/ecssd-gate-heldout.yaml``: the training recipe on the ECSSD validation
photos, which the release never saw.

The head sees the shipped gate's features (mean and max of the deepest stage) and four statistics
of the predicted map that speak to its reliability: the predicted area, the mean certainty
``|2p - 1|``, the share of uncertain pixels (``0.1 < p < 0.9``) and the mean probability. It is a
two-layer MLP trained with BCE (AdamW, full batch), seeded. 20 % of the composites are held back:
the number of epochs is the one (of ``EPOCH_GRID``) with the lowest log loss on them, where the
validation ECE and AURC of both gates are reported; then the head is refit on all composites.

Writes ``--out``: ``model.onnx`` (the frozen mask network with the quality gate; same inputs and
outputs as the release), ``release.yaml``, ``gate_head.pt`` and ``train_log.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from model import LiftNet  # noqa: E402
from train import SIZE, load_split, to_tensor  # noqa: E402

N_STATS = 4
EPOCH_GRID = (10, 20, 30, 50, 75, 100, 150, 200, 300)


def map_stats(mask_logits: torch.Tensor) -> torch.Tensor:
    """``(N, 4)``: predicted area (p >= 0.5), mean certainty |2p - 1|, share of uncertain pixels
    (0.1 < p < 0.9) and mean p of ``(N, 1, H, W)`` mask logits."""
    p = torch.sigmoid(mask_logits).flatten(1)
    return torch.stack([(p >= 0.5).float().mean(1), (2 * p - 1).abs().mean(1), ((p > 0.1) & (p < 0.9)).float().mean(1), p.mean(1)], dim=1)


class QualityGate(nn.Module):
    """The frozen LiftNet with a quality gate head on its gate features and map statistics."""

    def __init__(self, base: LiftNet, n_features: int):
        super().__init__()
        self.base = base
        self.head = nn.Sequential(nn.Linear(n_features + N_STATS, 64), nn.ReLU(inplace=True), nn.Linear(64, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask, _, feats = self.base.features(x)
        return mask, self.head(torch.cat([feats, map_stats(mask)], dim=1))


def ece(p: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    from evalhub.calibration import ece as _ece

    return float(_ece(p, y, bins))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--release", type=Path, default=Path("examples/releases/liftnet-full"))
    ap.add_argument("--data", type=Path, required=True, help="a synth build of held-out composites (its val split)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--accept-iou", type=float, default=0.8)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()

    base = LiftNet()
    base.load_state_dict(torch.load(args.release / "weights.pt", map_location="cpu"))
    base.eval()
    for p in base.parameters():
        p.requires_grad_(False)
    x, alpha, has = load_split(args.data, "val")
    feats, stats, ious = [], [], []
    with torch.no_grad():
        for i in range(0, len(x), 32):
            mask, _, f = base.features(to_tensor(x[i : i + 32]))
            feats.append(f)
            stats.append(map_stats(mask))
            pred = (torch.sigmoid(mask[:, 0]) >= 0.5).numpy()
            true = alpha[i : i + 32] >= 128
            inter = (pred & true).sum((1, 2))
            union = (pred | true).sum((1, 2))
            ious.append(np.where(union > 0, inter / np.maximum(union, 1), 1.0))
    inputs = torch.cat([torch.cat(feats), torch.cat(stats)], dim=1)
    iou = np.concatenate(ious)
    y = has & (iou >= args.accept_iou)
    target = torch.from_numpy(y.astype(np.float32))
    print(f"{len(x)} held-out composites ({has.sum()} with a subject), {y.sum()} acceptable extractions; "
          f"features in {time.perf_counter() - t0:.1f} s", flush=True)

    def fit(idx: np.ndarray) -> nn.Module:
        torch.manual_seed(args.seed)
        gate = QualityGate(base, inputs.shape[1] - N_STATS)
        head = gate.head
        opt = torch.optim.AdamW(head.parameters(), lr=args.lr, weight_decay=1e-3)
        xi, yi = inputs[idx], target[idx]
        mu, sd = xi.mean(0), xi.std(0) + 1e-6  # standardised inputs, folded into the first layer below
        for _ in range(args.epochs):
            loss = nn.functional.binary_cross_entropy_with_logits(head((xi - mu) / sd).squeeze(1), yi)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():  # fold the standardisation into the first linear layer
            lin = head[0]
            lin.bias -= (lin.weight * (mu / sd)).sum(1)
            lin.weight /= sd
        return gate

    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(x))
    cut = int(0.8 * len(x))
    held = order[cut:]
    from evalhub.calibration import aurc

    def judge(gate: nn.Module) -> dict[str, float]:
        with torch.no_grad():
            logit = gate.head(inputs[held]).squeeze(1)
            p = torch.sigmoid(logit).numpy()
            nll = float(nn.functional.binary_cross_entropy_with_logits(logit, target[held]))
        return {"epochs": gate.epochs, "nll": nll, "ece": ece(p, y[held]), "aurc": float(aurc(p, y[held]))}

    # the number of epochs is chosen by the held-back composites' log loss
    sweep = []
    for epochs in EPOCH_GRID:
        args.epochs = epochs
        g = fit(order[:cut])
        g.epochs = epochs
        sweep.append(judge(g))
    best = min(sweep, key=lambda r: r["nll"])
    args.epochs = best["epochs"]
    with torch.no_grad():
        old = torch.sigmoid(base.gate(inputs[held, : inputs.shape[1] - N_STATS]).squeeze(1)).numpy()
    val = {"n": int(len(held)), "sweep": sweep, "chosen_epochs": args.epochs, "quality_gate": best,
           "has_subject_gate": {"ece": ece(old, y[held]), "aurc": float(aurc(old, y[held]))}}
    print(json.dumps({"validation": val}), flush=True)
    gate = fit(np.arange(len(x)))

    args.out.mkdir(parents=True, exist_ok=True)
    gate.eval()
    torch.save(gate.head.state_dict(), args.out / "gate_head.pt")
    torch.onnx.export(gate, torch.zeros(1, 3, SIZE, SIZE), str(args.out / "model.onnx"), input_names=["image"],
                      output_names=["mask", "confidence"], dynamic_axes={"image": {0: "n"}, "mask": {0: "n"}, "confidence": {0: "n"}},
                      opset_version=17, dynamo=False)
    manifest = yaml.safe_load((args.release / "release.yaml").read_text())
    manifest["version"] = args.out.name
    manifest["description"] = (f"{manifest['version'].replace('-qgate', '')} with a quality gate: P(IoU >= {args.accept_iou}) of its own "
                               f"extraction, learned on {len(x)} held-out composites ({args.data.name})")
    (args.out / "release.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    (args.out / "train_log.json").write_text(json.dumps({
        "release": str(args.release), "data": str(args.data), "accept_iou": args.accept_iou, "n": int(len(x)),
        "n_acceptable": int(y.sum()), "epochs": args.epochs, "lr": args.lr, "seed": args.seed, "validation": val,
        "seconds": round(time.perf_counter() - t0, 1), "torch": torch.__version__,
    }, indent=2))
    print(f"wrote {args.out}/model.onnx, release.yaml, gate_head.pt, train_log.json")


if __name__ == "__main__":
    main()
