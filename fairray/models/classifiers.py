"""Multi-head ResNet-style attribute classifier (fairgen's ResNet-18 variant, width and depth configurable).

At 32 px the stem is a 3x3 stride-1 conv (CIFAR style) so the small faces keep their detail; at 64 px and up
a stride-2 stem halves the cost. One shared trunk, one linear head per attribute.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class ClassifierConfig:
    heads: dict[str, int] = field(default_factory=dict)  # attribute -> number of classes
    resolution: int = 32
    width: int = 16
    blocks: tuple[int, ...] = (2, 2, 2, 2)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(h)) + self.skip(x))


class AttributeClassifier(nn.Module):
    """x in [0, 1], NCHW -> {attribute: logits}. `features(x)` gives the pooled trunk output."""

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        stem_stride = 1 if cfg.resolution <= 32 else 2
        layers: list[nn.Module] = [nn.Conv2d(3, w, 3, stem_stride, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
        cin = w
        for i, n in enumerate(cfg.blocks):
            cout = w * 2**i
            for j in range(n):
                layers.append(BasicBlock(cin, cout, 2 if j == 0 and i > 0 else 1))
                cin = cout
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.trunk = nn.Sequential(*layers)
        self.feature_dim = cin
        self.heads = nn.ModuleDict({name: nn.Linear(cin, k) for name, k in cfg.heads.items()})
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.trunk(x)
        return {name: head(f) for name, head in self.heads.items()}
