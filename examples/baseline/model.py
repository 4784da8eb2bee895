"""LiftNet: the reference gated subject-lifting model at small size (PyTorch, optional ``train`` extra).

Input ``(N, 3, 256, 256)`` float32, RGB scaled to [0, 1] then normalised with the ImageNet mean and
standard deviation. Outputs ``mask`` ``(N, 1, 256, 256)`` logits of the subject's alpha/mask and
``confidence`` ``(N, 1)`` logit of the gate (a subject is there and the extraction can be shown).

- Encoder: a stem down to 1/4 of the input and three stride-2 stages (1/8, 1/16, 1/32), 3x3
  convolutions with batch norm and ReLU: features at four scales.
- Channel-reweighting branch: global average pooling of the deepest features and a two-layer MLP
  give one sigmoid weight per decoder channel at every decoder scale (squeeze-and-excitation, Hu et
  al. CVPR 2018, applied across scales).
- Decoder: top-down fusion as in a feature pyramid (Lin et al. CVPR 2017): 1x1 lateral projections,
  upsample-and-add, a 3x3 refinement, reweighted by the branch above, down to 1/4; a 3x3 + 1x1 head
  gives the mask logits, upsampled bilinearly to the input size.
- Gate: average- and max-pooled deepest features through a two-layer MLP to one logit.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class LiftNet(nn.Module):
    """See the module docstring. ``widths``: the stem's output width (at 1/4) and the widths of the
    three deeper stages (1/8, 1/16, 1/32); ``dec``: the decoder width."""

    def __init__(self, widths: tuple[int, ...] = (32, 48, 96, 160), dec: int = 40):
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, 16, 2), conv_bn(16, widths[0], 2), conv_bn(widths[0], widths[0]))
        self.stages = nn.ModuleList(
            nn.Sequential(conv_bn(widths[i], widths[i + 1], 2), conv_bn(widths[i + 1], widths[i + 1])) for i in range(3)
        )
        self.lateral = nn.ModuleList(nn.Conv2d(w, dec, 1) for w in widths)
        self.refine = nn.ModuleList(conv_bn(dec, dec) for _ in widths)
        self.reweight = nn.Sequential(nn.Linear(widths[-1], 64), nn.ReLU(inplace=True), nn.Linear(64, len(widths) * dec))
        self.head = nn.Sequential(conv_bn(dec, dec), nn.Conv2d(dec, 1, 1))
        self.gate = nn.Sequential(nn.Linear(2 * widths[-1], 64), nn.ReLU(inplace=True), nn.Linear(64, 1))
        self.dec = dec
        self.levels = len(widths)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask, conf, _ = self.features(x)
        return mask, conf

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(mask logits (N, 1, H, W), gate logit (N, 1), gate features (N, 2 x widths[-1]))``:
        the gate features are the deepest stage's mean and max over space."""
        size = x.shape[-2:]
        f = self.stem(x)
        feats = [f]
        for stage in self.stages:
            f = stage(f)
            feats.append(f)
        deep = feats[-1]
        pooled = deep.mean(dim=(2, 3))
        weights = torch.sigmoid(self.reweight(pooled)).view(-1, self.levels, self.dec, 1, 1)
        y = None
        for level in range(self.levels - 1, -1, -1):  # deepest first
            lat = self.lateral[level](feats[level])
            y = lat if y is None else lat + F.interpolate(y, size=lat.shape[-2:], mode="bilinear", align_corners=False)
            y = self.refine[level](y) * weights[:, level]
        mask = F.interpolate(self.head(y), size=size, mode="bilinear", align_corners=False)
        gate_in = torch.cat([pooled, deep.amax(dim=(2, 3))], dim=1)
        return mask, self.gate(gate_in), gate_in


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
