"""The `clip` labeler: zero-shot attribute labels from a local open_clip checkpoint (optional extra `clip`).

No package ships CLIP weights, and open_clip downloads whenever `pretrained` is a tag ("openai") or a model
name has the `hf-hub:` schema, so only a local file or a `local-dir:` folder is accepted (BYO weights).
Prompt sets follow AI-Face / FairFace-Generator style annotation: gender, five age groups and four skin
tones, several phrasings per class, averaged in embedding space (the usual CLIP prompt ensembling).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fairray.data.attributes import attribute_labels, attribute_values
from fairray.errors import FairrayError
from fairray.labelers.base import Head, to_model_input
from fairray.labelers.fairface import check_images

# AI-Face age groups: child 0-14, young 15-24, adult 25-44, middle-aged 45-64, senior 65+.
AGE5_LABELS = ("child", "young", "adult", "middle-aged", "senior")
TEMPLATES = ("a photo of {}.", "a close-up photo of the face of {}.", "a portrait of {}.",
             "a cropped face photo of {}.")
_PHRASES: dict[str, dict[str, tuple[str, ...]]] = {
    "gender": {"male": ("a man", "a male person"), "female": ("a woman", "a female person")},
    "age5": {
        "child": ("a child", "a young kid under fourteen"),
        "young": ("a teenager", "a young adult in their late teens or early twenties"),
        "adult": ("an adult in their thirties", "an adult aged between 25 and 44"),
        "middle-aged": ("a middle-aged person", "a person in their fifties"),
        "senior": ("an elderly person", "a senior citizen over 65"),
    },
    "tone4": {  # fairray's tone4: Monk 1-3 light, 4-5 light-medium, 6-7 medium-dark, 8-10 dark
        "light": ("a person with light skin", "a person with very fair skin"),
        "light-medium": ("a person with light-medium skin", "a person with light tan skin"),
        "medium-dark": ("a person with medium-dark skin", "a person with brown skin"),
        "dark": ("a person with dark skin", "a person with deep dark brown skin"),
    },
}
DEFAULT_PROMPTS: dict[str, dict[str, list[str]]] = {
    head: {c: [t.format(p) for p in phrases for t in TEMPLATES] for c, phrases in classes.items()}
    for head, classes in _PHRASES.items()
}
# Heads whose codes must agree with fairray's columns: class name -> code.
KNOWN_CODES: dict[str, dict[str, int]] = {
    "gender": dict(zip(attribute_labels("gender"), attribute_values("gender"), strict=True)),
    "tone4": dict(zip(attribute_labels("tone4"), attribute_values("tone4"), strict=True)),
    "age5": {c: i for i, c in enumerate(AGE5_LABELS)},
}
_DOWNLOAD_SCHEMES = ("hf-hub:", "http://", "https://")


def validate_prompts(prompts: Mapping[str, Any]) -> dict[str, dict[str, list[str]]]:
    """{head: {class: [phrases]}} -> the same with "{}" filled by the class name; FairrayError on bad shape."""
    if not isinstance(prompts, Mapping) or not prompts:
        raise FairrayError("clip prompts: expected a non-empty dict {head: {class_name: [prompts]}}")
    out: dict[str, dict[str, list[str]]] = {}
    for head, classes in prompts.items():
        if not isinstance(head, str) or not head:
            raise FairrayError(f"clip prompts: head names must be non-empty strings; got {head!r}")
        if not isinstance(classes, Mapping) or len(classes) < 2:
            raise FairrayError(f"clip prompts: head {head!r} needs a dict of at least 2 classes -> prompts")
        out[head] = {}
        for cls, texts in classes.items():
            if not isinstance(cls, str) or not cls:
                raise FairrayError(f"clip prompts: head {head!r} has a class name that is not a string: {cls!r}")
            if (isinstance(texts, str) or not isinstance(texts, list | tuple) or not texts
                    or not all(isinstance(t, str) and t.strip() for t in texts)):
                raise FairrayError(f"clip prompts: {head}/{cls} must be a non-empty list of non-empty strings "
                                   f"(templates with {{}} or phrases); got {texts!r}")
            out[head][cls] = [t.replace("{}", cls) for t in texts]
        known = KNOWN_CODES.get(head)
        if known is not None and not set(out[head]) <= set(known):
            raise FairrayError(f"clip prompts: head {head!r} is a fairray column, so its classes must be among "
                               f"{tuple(known)}; got {tuple(out[head])}")
    return out


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:300] or type(e).__name__


def _resolve(model_name: str, pretrained: str | Path) -> tuple[str, str | None]:
    """-> (name for open_clip, checkpoint file or None when a local-dir folder holds config and weights)."""
    src = str(pretrained)
    if model_name.startswith(_DOWNLOAD_SCHEMES) or src.startswith(_DOWNLOAD_SCHEMES):
        raise FairrayError(f"clip: {model_name!r}/{src!r} would download; pass a local weights file or "
                           "local-dir:/folder")
    if model_name.startswith("local-dir:"):
        raise FairrayError("clip: pass the folder as pretrained='local-dir:/folder', not as the model name")
    folder = Path(src.removeprefix("local-dir:"))
    if src.startswith("local-dir:") or folder.is_dir():
        cfg_path = folder / "open_clip_config.json"
        if not cfg_path.is_file():
            raise FairrayError(f"clip: expected {cfg_path} (open_clip's local-dir layout: config + weights)")
        try:
            model_cfg = json.loads(cfg_path.read_text())["model_cfg"]
        except (ValueError, KeyError, TypeError) as e:
            raise FairrayError(f"clip: {cfg_path} is not an open_clip config with a 'model_cfg' key "
                               f"({_one_line(e)})") from None
        if not any(p.suffix in (".safetensors", ".bin", ".pth") for p in folder.iterdir()):
            raise FairrayError(f"clip: no weights (*.safetensors, *.bin or *.pth) in {folder}")
        _refuse_hf_text(model_cfg, str(folder), local_tokenizer=True)
        return f"local-dir:{folder}", None
    path = Path(src)
    if not path.is_file():
        raise FairrayError(f"clip: pretrained={src!r} is not a local file or folder; tags such as 'openai' "
                           "download and are refused (pass the weights file path)")
    import open_clip

    name = model_name.replace("/", "-")
    model_cfg = open_clip.get_model_config(name)
    if model_cfg is None:
        raise FairrayError(f"clip: unknown open_clip model {model_name!r} (see open_clip.list_models(), "
                           "or use a local-dir: folder with open_clip_config.json)")
    if "siglip" in name.lower():  # open_clip picks a hub tokenizer for these by name
        raise FairrayError(f"clip: {name} uses a Hugging Face tokenizer, which downloads; use a local-dir: folder")
    _refuse_hf_text(model_cfg, name, local_tokenizer=False)
    return name, str(path.resolve())  # absolute: never mistaken for a pretrained tag


def _refuse_hf_text(model_cfg: Any, where: str, local_tokenizer: bool) -> None:
    """HF text towers and hub tokenizers are fetched by name when the model is built: not possible offline."""
    text_cfg = model_cfg.get("text_cfg", {}) if isinstance(model_cfg, dict) else {}
    hf_model = text_cfg.get("hf_model_name")
    if hf_model and not Path(hf_model).is_dir():
        raise FairrayError(f"clip: {where} builds its text tower from Hugging Face {hf_model!r}, which downloads")
    if text_cfg.get("hf_tokenizer_name") and not local_tokenizer:
        raise FairrayError(f"clip: {where} needs the Hugging Face tokenizer {text_cfg['hf_tokenizer_name']!r}, "
                           "which downloads; use a local-dir: folder that holds the tokenizer files")


class ClipLabeler:
    """CLIP zero-shot: softmax(logit_scale * cos(image, class text)) per head, class texts fixed at init."""

    name = "clip"
    sources = None  # zero-shot: no training domain to check against

    def __init__(self, model_name: str, pretrained: str | Path, device: str = "cpu",
                 prompts: Mapping[str, Any] | None = None, dtype: torch.dtype = torch.float32,
                 preprocess_cfg: dict[str, Any] | None = None):
        try:
            import open_clip
        except ImportError:
            raise FairrayError("clip labeler needs open_clip: pip install 'fairray[clip]'") from None
        self.prompts = validate_prompts(DEFAULT_PROMPTS if prompts is None else prompts)
        name, checkpoint = _resolve(model_name, pretrained)
        self.model_name, self.pretrained, self.device, self.dtype = name, str(pretrained), str(device), dtype
        self._autocast = dtype == torch.bfloat16
        try:
            model = open_clip.create_model(name, pretrained=checkpoint, device=self.device,
                                           require_pretrained=True, force_preprocess_cfg=preprocess_cfg)
            tokenizer = open_clip.get_tokenizer(name)
        except Exception as e:  # open_clip raises RuntimeError/ValueError/KeyError for bad files and configs
            raise FairrayError(f"clip: could not load {name} from {pretrained}: {_one_line(e)}") from None
        self.model = model.eval().to(dtype=torch.float32 if self._autocast else dtype)
        cfg = open_clip.get_model_preprocess_cfg(model)
        size = cfg.get("size", 224)
        size = (size, size) if isinstance(size, int) else tuple(size)
        if size[0] != size[1]:
            raise FairrayError(f"clip: {name} wants non-square {size} input; fairray feeds square images")
        self.resolution = int(size[0])
        self.mean, self.std = tuple(cfg["mean"]), tuple(cfg["std"])
        self.heads = tuple(Head(h, tuple(c), tuple(KNOWN_CODES[h][k] for k in c) if h in KNOWN_CODES else None)
                           for h, c in self.prompts.items())
        self.logit_scale = float(model.logit_scale.detach().float().exp().clamp(max=100))
        self._text, self._slices = self._encode_classes(tokenizer)

    @torch.inference_mode()
    def _encode_classes(self, tokenizer: Any) -> tuple[torch.Tensor, dict[str, slice]]:
        """Per class: mean of the normalised prompt embeddings, renormalised (prompt ensembling)."""
        rows, slices, start = [], {}, 0
        for head, classes in self.prompts.items():
            for texts in classes.values():
                with torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16, enabled=self._autocast):
                    emb = self.model.encode_text(tokenizer(texts).to(self.device)).float()
                rows.append(F.normalize(F.normalize(emb, dim=-1).mean(0), dim=0))
            slices[head] = slice(start, start + len(classes))
            start += len(classes)
        return torch.stack(rows), slices

    @torch.inference_mode()
    def predict_proba(self, images: np.ndarray | torch.Tensor) -> dict[str, np.ndarray]:
        check_images(images)
        if len(images) == 0:  # Ray can hand over empty batches; ViT patching cannot reshape them
            return {h.name: np.zeros((0, len(h.classes)), np.float32) for h in self.heads}
        x = to_model_input(images, self.resolution, self.device, self.mean, self.std, self.dtype)
        with torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16, enabled=self._autocast):
            feats = self.model.encode_image(x).float()
        logits = self.logit_scale * F.normalize(feats, dim=-1) @ self._text.T
        return {h: torch.softmax(logits[:, s], 1).cpu().numpy() for h, s in self._slices.items()}
