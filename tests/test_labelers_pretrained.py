"""FairFace and CLIP loaders on tiny random models written to tmp: proves the plumbing, never the quality.

Nothing is downloaded: sockets are blocked for the whole module, so a loader that tries the network fails.
"""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet34

from fairray.errors import FairrayError
from fairray.labelers.base import IMAGENET_MEAN, IMAGENET_STD, Labeler
from fairray.labelers.fairface import FairFaceLabeler
from fairray.labelers.registry import load_labeler

open_clip = pytest.importorskip("open_clip")

from fairray.labelers.clip import DEFAULT_PROMPTS, ClipLabeler, validate_prompts  # noqa: E402


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*_a, **_k):
        raise AssertionError("a labeler tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (5, 37, 41, 3), dtype=np.uint8)


# ---------------------------------------------------------------- FairFace

@pytest.fixture(scope="module")
def fairface(tmp_path_factory) -> tuple[nn.Module, object]:
    torch.manual_seed(0)
    model = resnet34(weights=None)
    model.fc = nn.Linear(512, 18)
    path = tmp_path_factory.mktemp("fairface") / "res34_fair_align_multi_7.pt"
    torch.save(model.state_dict(), path)  # the released format: a bare state dict
    return model.eval(), path


def _reference(model: nn.Module, images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    x = F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        return model(x)


def test_fairface_matches_manual_reference(fairface, images):
    model, path = fairface
    lab = FairFaceLabeler(path)
    assert isinstance(lab, Labeler) and lab.name == "fairface"
    assert [h.name for h in lab.heads] == ["race7", "gender", "age9"]
    assert lab.heads[1].classes == ("male", "female") and lab.heads[1].codes == (0, 1)
    probs = lab.predict_proba(images)
    logits = _reference(model, images)
    for head, sl, k in (("race7", slice(0, 7), 7), ("gender", slice(7, 9), 2), ("age9", slice(9, 18), 9)):
        p = probs[head]
        assert p.shape == (5, k) and p.dtype == np.float32
        np.testing.assert_allclose(p.sum(1), 1, atol=1e-5)
        np.testing.assert_allclose(p, torch.softmax(logits[:, sl], 1).numpy(), atol=1e-5)


def test_fairface_race4_and_dataparallel_prefix(fairface, images, tmp_path):
    model, _ = fairface
    path = tmp_path / "dp.pt"
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, path)
    lab = FairFaceLabeler(path, race=4)
    probs = lab.predict_proba(torch.from_numpy(images))
    assert [h.name for h in lab.heads] == ["race4", "gender", "age9"]
    assert lab.heads[0].classes == ("White", "Black", "Asian", "Indian")
    np.testing.assert_allclose(probs["race4"], torch.softmax(_reference(model, images)[:, :4], 1).numpy(),
                               atol=1e-5)


def test_fairface_registry_spec(fairface):
    from fairray.labelers.registry import input_size

    lab = load_labeler(f"fairface:{fairface[1]}:race4")
    assert isinstance(lab, FairFaceLabeler) and lab.race == 4 and input_size(lab) == 224


def test_fairface_bad_checkpoints(tmp_path):
    with pytest.raises(FairrayError, match="no FairFace checkpoint"):
        FairFaceLabeler(tmp_path / "missing.pt")
    wrong = resnet34(weights=None)
    wrong.fc = nn.Linear(512, 10)
    torch.save(wrong.state_dict(), tmp_path / "fc10.pt")
    with pytest.raises(FairrayError, match=r"fc.weight of shape \(18, 512\); got \(10, 512\)") as e:
        FairFaceLabeler(tmp_path / "fc10.pt")
    assert "\n" not in str(e.value)
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "partial.pt")
    with pytest.raises(FairrayError, match="keys missing"):
        FairFaceLabeler(tmp_path / "partial.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(FairrayError, match="not a loadable torch state dict"):
        FairFaceLabeler(tmp_path / "junk.pt")
    with pytest.raises(FairrayError, match="7 or 4"):
        FairFaceLabeler(tmp_path / "fc10.pt", race=5)


# ---------------------------------------------------------------- CLIP

TINY_CLIP = {  # a real open_clip CLIP (ViT + text transformer), ~1.7M params, mostly the BPE vocab embedding
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
TINY_MEAN, TINY_STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A local-dir folder (open_clip_config.json + weights) and the model written into it."""
    folder = tmp_path_factory.mktemp("tinyclip")
    (folder / "open_clip_config.json").write_text(json.dumps(
        {"model_cfg": TINY_CLIP, "preprocess_cfg": {"mean": TINY_MEAN, "std": TINY_STD}}))
    torch.manual_seed(0)
    model = open_clip.create_model(f"local-dir:{folder}", load_weights=False).eval()
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    return folder, model


def test_clip_local_dir_heads_probs_and_reference(tiny_clip, images):
    folder, model = tiny_clip
    lab = ClipLabeler("tiny", f"local-dir:{folder}")
    assert isinstance(lab, Labeler) and lab.name == "clip"
    assert (lab.resolution, lab.mean, lab.std) == (32, TINY_MEAN, TINY_STD)
    assert {h.name: h.codes for h in lab.heads} == {"gender": (0, 1), "age5": (0, 1, 2, 3, 4),
                                                    "tone4": (0, 1, 2, 3)}
    probs = lab.predict_proba(images)
    for h in lab.heads:
        assert probs[h.name].shape == (5, len(h.classes)) and probs[h.name].dtype == np.float32
        np.testing.assert_allclose(probs[h.name].sum(1), 1, atol=1e-5)
    assert {k: v.shape for k, v in lab.predict_proba(images[:0]).items()} == {"gender": (0, 2), "age5": (0, 5),
                                                                              "tone4": (0, 4)}
    # Determinism: the same call twice, and a second labeler from the same folder (a plain dir path).
    again = ClipLabeler("tiny", folder).predict_proba(images)
    for k, v in lab.predict_proba(images).items():
        np.testing.assert_array_equal(v, probs[k])
        np.testing.assert_allclose(again[k], v, atol=1e-6)
    # Reference for gender: prompt ensembling by hand on the model that wrote the weights.
    tok = open_clip.get_tokenizer(f"local-dir:{folder}")
    with torch.no_grad():
        cls = []
        for texts in DEFAULT_PROMPTS["gender"].values():
            e = F.normalize(model.encode_text(tok(texts)), dim=-1).mean(0)
            cls.append(F.normalize(e, dim=0))
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
        x = F.interpolate(x, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
        x = (x - torch.tensor(TINY_MEAN).view(1, 3, 1, 1)) / torch.tensor(TINY_STD).view(1, 3, 1, 1)
        img = F.normalize(model.encode_image(x), dim=-1)
        ref = torch.softmax(model.logit_scale.exp() * img @ torch.stack(cls).T, 1)
    np.testing.assert_allclose(probs["gender"], ref.numpy(), atol=1e-5)


def test_pretrained_labelers_run_under_cpu_bf16(fairface, tiny_clip, images):
    """precision=bf16 on CPU (the labeling actors' auto setting on CPUs with native bf16): autocast with fp32
    weights, probabilities within bf16 rounding of fp32's."""
    _, path = fairface
    folder, _ = tiny_clip
    for spec in (f"fairface:{path}", f"clip:tiny:local-dir:{folder}"):
        fp32, bf16 = load_labeler(spec, "cpu", "fp32"), load_labeler(spec, "cpu", "bf16")
        assert bf16.dtype == torch.bfloat16 and next(bf16.model.parameters()).dtype == torch.float32
        a, b = fp32.predict_proba(images), bf16.predict_proba(images)
        for h in fp32.heads:
            assert b[h.name].dtype == np.float32
            np.testing.assert_allclose(b[h.name], a[h.name], atol=0.05)
            assert not np.array_equal(b[h.name], a[h.name]), spec


def test_clip_named_model_with_weights_file(tiny_clip, images, monkeypatch):
    folder, _ = tiny_clip
    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, "fairray-tiny-test", TINY_CLIP)
    lab = ClipLabeler("fairray-tiny-test", folder / "open_clip_pytorch_model.bin",
                      prompts={"gender": {"female": ["a photo of a woman"], "male": ["a photo of a {} person"]},
                               "smile": {"smiling": ["a smiling face"], "neutral": ["a neutral face"]}})
    assert lab.mean == tuple(open_clip.OPENAI_DATASET_MEAN)  # no preprocess_cfg with a bare file
    assert lab.prompts["gender"]["male"] == ["a photo of a male person"]
    assert {h.name: h.codes for h in lab.heads} == {"gender": (1, 0), "smile": (0, 1)}
    assert {k: v.shape for k, v in lab.predict_proba(images).items()} == {"gender": (5, 2), "smile": (5, 2)}


@pytest.mark.parametrize("model_name, pretrained, match", [
    ("ViT-B-32", "openai", "download"),
    ("ViT-B-32", "laion2b_s34b_b79k", "download"),
    ("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "x", "download"),
    ("ViT-B-32", "https://example.com/w.bin", "download"),
    ("ViT-B-32", "local-dir:/nonexistent/folder", "open_clip_config.json"),
    ("local-dir:/some/folder", "w.bin", "pretrained='local-dir"),
])
def test_clip_refuses_non_local(model_name, pretrained, match):
    with pytest.raises(FairrayError, match=match):
        ClipLabeler(model_name, pretrained)


def test_clip_bad_local_inputs(tiny_clip, tmp_path, monkeypatch):
    folder, _ = tiny_clip
    with pytest.raises(FairrayError, match="unknown open_clip model"):
        ClipLabeler("no-such-model", folder / "open_clip_pytorch_model.bin")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP}))
    with pytest.raises(FairrayError, match="no weights"):
        ClipLabeler("tiny", f"local-dir:{empty}")
    # Weights of another architecture: one line from FairrayError, not load_state_dict's wall of text.
    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, "fairray-tiny-wide",
                        {**TINY_CLIP, "embed_dim": 48})
    with pytest.raises(FairrayError, match="could not load") as e:
        ClipLabeler("fairray-tiny-wide", folder / "open_clip_pytorch_model.bin")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("prompts", [
    {}, [], {"gender": ["a man", "a woman"]}, {"gender": {"male": ["a man"]}},
    {"gender": {"male": "a man", "female": ["a woman"]}}, {"gender": {"male": [], "female": ["a woman"]}},
    {"gender": {"male": ["a man"], "female": [""]}}, {"gender": {"man": ["a man"], "woman": ["a woman"]}},
    {"": {"a": ["x"], "b": ["y"]}}, {"h": {1: ["x"], "b": ["y"]}},
])
def test_clip_prompt_validation(prompts):
    with pytest.raises(FairrayError, match="clip prompts"):
        validate_prompts(prompts)


def test_model_input_resize_is_the_antialiased_one_both_ways():
    from fairray.labelers.base import to_model_input

    rng = np.random.default_rng(0)
    for size, to in ((32, 64), (64, 32)):  # up: plain bilinear stands in (same pixels); down: antialiased
        images = rng.integers(0, 256, (4, size, size, 3), dtype=np.uint8)
        ref = F.interpolate(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255, size=(to, to),
                            mode="bilinear", antialias=True, align_corners=False)
        torch.testing.assert_close(to_model_input(images, to), ref, atol=1e-6, rtol=0)
