"""A small student generator for distillation (TinyGAN's block, unconditional) and a feature-exposing D wrapper.

Student: Linear z -> (4w*, 4, 4), then one residual block per doubling: BN -> ReLU -> bilinear x2 -> depthwise 3x3 ->
pointwise 1x1 -> BN -> ReLU -> depthwise 3x3 -> pointwise 1x1, plus a bilinear x2 + 1x1 shortcut; head BN -> ReLU ->
3x3 conv -> tanh. Depthwise-separable convs make width cheap, so a student of 1/4 the teacher's parameters is still
reasonably wide. It takes the teacher's z (same z_dim) and has the fairray generator interface (z_dim, n_classes,
resolution; forward(z, y=None)), so `fairray.models.generator_io.sample` works on it unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class StudentConfig:
    resolution: int = 32
    z_dim: int = 64
    width: int = 16  # channels at full resolution; doubles per halving, capped at 4x width at 4x4


def _levels(resolution: int) -> int:
    if resolution not in (32, 64, 128):
        raise ValueError(f"student resolution must be 32, 64 or 128, got {resolution}")
    return int(math.log2(resolution)) - 2


class SeparableConv(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class StudentBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), SeparableConv(cin, cout)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), SeparableConv(cout, cout)
        self.skip = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        h = self.conv1(F.interpolate(F.relu(self.bn1(x)), scale_factor=2, mode="bilinear", align_corners=False))
        h = self.conv2(F.relu(self.bn2(h)))
        return h + self.skip(up)


class StudentGenerator(nn.Module):
    def __init__(self, cfg: StudentConfig):
        super().__init__()
        n = _levels(cfg.resolution)
        chans = [cfg.width * 2 ** min(n - 1 - i, 2) for i in range(n)]  # e.g. 4w, 2w, w at 32 px
        self.z_dim, self.n_classes, self.resolution, self.width = cfg.z_dim, 0, cfg.resolution, cfg.width
        self.c0 = chans[0]
        self.linear = nn.Linear(cfg.z_dim, self.c0 * 16)
        self.blocks = nn.Sequential(*(StudentBlock(a, b) for a, b in zip([self.c0, *chans[:-1]], chans, strict=True)))
        self.out_bn = nn.BatchNorm2d(chans[-1])
        self.out_conv = nn.Conv2d(chans[-1], 3, 3, 1, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.xavier_uniform_(m.weight, math.sqrt(2) if getattr(m, "groups", 1) > 1 else 1.0)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is not None:
            raise ValueError("the student generator is unconditional")
        h = self.linear(z.view(z.shape[0], -1)).view(z.shape[0], self.c0, 4, 4)
        return torch.tanh(self.out_conv(F.relu(self.out_bn(self.blocks(h)))))


def count_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def build_student(arch: str, tcfg, width: int) -> nn.Module:
    """The student of a teacher GanConfig: `separable` (the block above) or `thinned` (the teacher's own
    architecture at `width`, which `thin_from` can initialise from the teacher)."""
    if arch == "separable":
        return StudentGenerator(StudentConfig(resolution=tcfg.resolution, z_dim=tcfg.z_dim, width=width))
    if arch == "thinned":
        from fairray.models.generator_io import build_models

        if tcfg.model != "dcgan":
            raise ValueError(f"a thinned student needs a dcgan teacher, not {tcfg.model}; use student_arch=separable")
        return build_models(tcfg.model_copy(update={"width": width}))[0]
    raise ValueError(f"unknown student_arch {arch!r}; available: thinned, separable")


def auto_width(arch: str, tcfg, max_params: int, widths: range = range(2, 257)) -> int:
    """The widest student with at most max_params parameters (count grows monotonically with width)."""
    best = None
    for w in widths:
        if count_params(build_student(arch, tcfg, w)) > max_params:
            break
        best = w
    if best is None:
        raise ValueError(f"no {arch} student at {tcfg.resolution} px, z_dim {tcfg.z_dim} fits in {max_params:,} "
                         "parameters")
    return best


@torch.no_grad()
def thin_from(student: nn.Module, teacher: nn.Module) -> nn.Module:
    """Initialise a thinned DCGAN generator from its teacher (GAN Compression's and Content-aware compression's
    start): per layer, keep the output channels whose BatchNorm scale |gamma| is largest (the channels the teacher
    uses most) and copy their weights, BatchNorm parameters and running statistics; the input channels follow the
    previous layer's choice. The student starts out drawing the teacher's faces, so a few hundred distillation
    steps refine a face generator instead of teaching noise to become one."""
    t_layers, s_layers = list(teacher.net), list(student.net)
    keep = torch.arange(t_layers[0].weight.shape[0])  # z: every input channel
    for i, (t, st) in enumerate(zip(t_layers, s_layers, strict=True)):
        if not isinstance(t, nn.ConvTranspose2d):
            continue
        bn = t_layers[i + 1] if i + 1 < len(t_layers) and isinstance(t_layers[i + 1], nn.BatchNorm2d) else None
        n_out = st.weight.shape[1]
        out = (bn.weight.abs().argsort(descending=True)[:n_out].sort().values if bn is not None
               else torch.arange(n_out))
        st.weight.copy_(t.weight[keep][:, out])
        if bn is not None:
            sbn = s_layers[i + 1]
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(sbn, name).copy_(getattr(bn, name)[out])
        keep = out
    return student


class FeatureDiscriminator(nn.Module):
    """Wraps a fairray DCGAN or unconditional BigGAN discriminator: forward(x) -> (logits, [per-layer features]).

    One module, so DDP sees a single forward that yields both the adversarial logit and TinyGAN's multi-layer
    feature-matching targets (calling D's submodules directly would bypass DDP's gradient hooks)."""

    def __init__(self, D: nn.Module):
        super().__init__()
        from fairray.models import biggan, dcgan, stylegan

        if not isinstance(D, dcgan.Discriminator | biggan.Discriminator | stylegan.Discriminator):
            raise TypeError(f"unsupported discriminator {type(D).__name__}")
        if getattr(D, "embed", None) is not None:
            raise TypeError("distillation needs an unconditional discriminator")
        self.D, self.kind = D, type(D).__module__.rsplit(".", 1)[-1]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats: list[torch.Tensor] = []
        h = x
        if self.kind == "dcgan":  # conv -> [BN] -> LeakyReLU per halving
            for layer in self.D.body:
                h = layer(h)
                if isinstance(layer, nn.LeakyReLU):
                    feats.append(h)
            return self.D.head_of(h), feats
        for block in self.D.blocks:  # BigGAN DBlocks, or the style D's strided convs
            h = block(h)
            feats.append(h)
        if self.kind == "stylegan":
            return self.D.head_of(h), feats
        return self.D.linear(F.relu(h).sum((2, 3))).squeeze(1), feats


def feature_l1(fake: list[torch.Tensor], real: list[torch.Tensor]) -> torch.Tensor:
    """TinyGAN's D-feature loss: sum_j w_j L1(f_j(fake), f_j(real)), w doubling toward the deepest layer."""
    n = len(fake)
    return sum(F.l1_loss(f, r) / 2 ** (n - 1 - j) for j, (f, r) in enumerate(zip(fake, real, strict=True)))
