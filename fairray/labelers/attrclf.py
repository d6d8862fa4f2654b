"""The `attrclf` labeler: fairray's own calibrated multi-head attribute classifier."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fairray.data.attributes import ALL_ATTRIBUTES, attribute_labels
from fairray.errors import FairrayError
from fairray.labelers.base import Head, to_model_input
from fairray.models.classifiers import AttributeClassifier, ClassifierConfig


class AttrClfLabeler:
    """Loads <dir>/model.pt (or the file itself); probabilities are temperature-calibrated per head."""

    name = "attrclf"

    def __init__(self, path: str | Path, device: str = "cpu", dtype: torch.dtype = torch.float32):
        path = Path(path)
        path = path / "model.pt" if path.is_dir() else path
        if not path.is_file():
            raise FairrayError(f"no attrclf checkpoint at {path} (train one with `fairray train-attrclf`)")
        state = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(state, dict) or state.get("format") != "fairray.attrclf/1":
            raise FairrayError(f"{path} is not a fairray attrclf checkpoint")
        cfg = ClassifierConfig(**{**state["config"], "blocks": tuple(state["config"]["blocks"])})
        self.model = AttributeClassifier(cfg).eval().to(device=device)
        self.model.load_state_dict(state["state_dict"])
        self.device, self.dtype, self.resolution = device, dtype, cfg.resolution
        self.temperature: dict[str, float] = state["temperature"]
        self.heads = tuple(
            Head(h, tuple(attribute_labels(h)) if h in ALL_ATTRIBUTES else tuple(map(str, codes)), tuple(codes))
            for h, codes in state["codes"].items())
        # The `source` values of its training rows; None for a checkpoint saved before labelers recorded them.
        self.sources: tuple[str, ...] | None = tuple(state["sources"]) if "sources" in state else None
        self.path = path

    def _input(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        return to_model_input(images, self.resolution, self.device)

    @torch.inference_mode()
    def predict_proba(self, images: np.ndarray | torch.Tensor) -> dict[str, np.ndarray]:
        # bf16 autocast on CUDA and on CPUs with native bf16 (oneDNN AMX / AVX512-BF16 kernels); weights stay fp32
        with torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16, enabled=self.dtype == torch.bfloat16):
            out = self.model(self._input(images))
        return {h: torch.softmax(v.float() / self.temperature[h], 1).cpu().numpy() for h, v in out.items()}

    @torch.inference_mode()
    def features(self, images: np.ndarray | torch.Tensor) -> np.ndarray:
        """Pooled trunk features: the space of `fd_attrclf_<n>` (a Frechet distance, not FID)."""
        return self.model.features(self._input(images)).float().cpu().numpy()
