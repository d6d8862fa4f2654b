"""The `fairface` labeler: a user-supplied FairFace ResNet-34 checkpoint (race7 or race4, gender, age9).

FairFace ships no package, so the checkpoint is always a local file (BYO). The architecture is built with
`weights=None`: the upstream `predict.py` first builds `resnet34(pretrained=True)`, which downloads ImageNet
weights that the FairFace state dict overwrites anyway.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn
from torchvision.models import resnet34

from fairray.data.attributes import AGE9_LABELS, attribute_labels
from fairray.errors import FairrayError
from fairray.labelers.base import IMAGENET_MEAN, IMAGENET_STD, Head, to_model_input

RACE7 = ("White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian", "Middle Eastern")
RACE4 = ("White", "Black", "Asian", "Indian")
N_OUT = 18  # both FairFace models have 18 outputs; the race4 model simply leaves logits 4..6 unused
GENDER_SLICE, AGE_SLICE = slice(7, 9), slice(9, 18)


def check_images(images: np.ndarray | torch.Tensor) -> None:
    """Fail with one line on a wrong layout, before torch raises something about permute/conv shapes."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise FairrayError(f"expected uint8 images of shape (N, H, W, 3); got shape {tuple(images.shape)}")


def build_model() -> nn.Module:
    model = resnet34(weights=None)
    model.fc = nn.Linear(model.fc.in_features, N_OUT)
    return model


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FairrayError(f"no FairFace checkpoint at {path} (expected e.g. res34_fair_align_multi_7_20190809.pt)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling, zip and weights_only errors all mean "not a plain state dict"
        why = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise FairrayError(f"{path}: not a loadable torch state dict ({why}); "
                           "expected a FairFace ResNet-34 state dict") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FairrayError(f"{path}: expected a FairFace ResNet-34 state dict (name -> tensor); "
                           f"got {type(state).__name__}")
    # Checkpoints saved from nn.DataParallel carry a `module.` prefix on every key.
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def _check_state_dict(state: dict[str, torch.Tensor], model: nn.Module, path: Path) -> None:
    """Compare names and shapes up front so a wrong file gives one line, not load_state_dict's wall of text."""
    want = model.state_dict()
    fc = state.get("fc.weight")
    if fc is not None and tuple(fc.shape) != tuple(want["fc.weight"].shape):
        raise FairrayError(f"{path}: expected a FairFace ResNet-34 state dict with fc.weight of shape "
                           f"({N_OUT}, 512); got {tuple(fc.shape)}")
    missing, unexpected = sorted(set(want) - set(state)), sorted(set(state) - set(want))
    if missing or unexpected:
        raise FairrayError(f"{path}: expected a FairFace ResNet-34 state dict; {len(missing)} keys missing "
                           f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})")
    for k, v in want.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise FairrayError(f"{path}: expected a FairFace ResNet-34 state dict with {k} of shape "
                               f"{tuple(v.shape)}; got {tuple(state[k].shape)}")


class FairFaceLabeler:
    """FairFace ResNet-34 on 224 px ImageNet-normalised input; each head is a softmax over its own logit slice.

    FairFace was trained on dlib face chips (padding 0.25); feed aligned crops for its outputs to mean much.
    """

    name = "fairface"
    resolution = 224
    sources = ("fairface",)  # trained on FairFace's photographs

    def __init__(self, path: str | Path, device: str = "cpu", dtype: torch.dtype = torch.float32,
                 race: Literal[7, 4] = 7):
        if race not in (7, 4):
            raise FairrayError(f"FairFace race must be 7 or 4 (the two released models); got {race!r}")
        self.path, self.device, self.dtype, self.race = Path(path), str(device), dtype, race
        model = build_model()
        state = _read_state_dict(self.path)
        _check_state_dict(state, model, self.path)
        model.load_state_dict(state)
        # Under bf16 autocast (CUDA or CPU) the weights stay fp32; otherwise weights and input share one dtype.
        self._autocast = dtype == torch.bfloat16
        self.model = model.eval().to(self.device, dtype=torch.float32 if self._autocast else dtype)
        race_classes = RACE7 if race == 7 else RACE4
        self._slices = {f"race{race}": slice(0, race), "gender": GENDER_SLICE, "age9": AGE_SLICE}
        self.heads = (
            Head(f"race{race}", race_classes),
            Head("gender", tuple(attribute_labels("gender")), (0, 1)),  # FairFace order [Male, Female]
            Head("age9", AGE9_LABELS),
        )

    @torch.inference_mode()
    def predict_proba(self, images: np.ndarray | torch.Tensor) -> dict[str, np.ndarray]:
        check_images(images)
        if len(images) == 0:  # Ray can hand over empty batches; ViT patching cannot reshape them
            return {h.name: np.zeros((0, len(h.classes)), np.float32) for h in self.heads}
        x = to_model_input(images, self.resolution, self.device, IMAGENET_MEAN, IMAGENET_STD, self.dtype)
        with torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16, enabled=self._autocast):
            logits = self.model(x).float()
        return {h: torch.softmax(logits[:, s], 1).cpu().numpy() for h, s in self._slices.items()}
