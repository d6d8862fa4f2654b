"""Labeler specs on the command line: `attrclf:DIR`, `fairface:FILE[:race4]`, `clip:MODEL:FILE`."""

from __future__ import annotations

from pathlib import Path

from fairray.errors import FairrayError
from fairray.labelers.base import Labeler

FORMS = "attrclf:DIR, fairface:FILE[:race4], clip:MODEL_NAME:WEIGHTS_FILE"


def absolute_spec(spec: str | None) -> str | None:
    """attrclf:relative/dir -> attrclf:/absolute/dir (Train workers may run in another cwd)."""
    if spec is None:
        return None
    kind, _, rest = spec.partition(":")
    return f"{kind}:{Path(rest).resolve()}" if kind in ("attrclf", "fairface") and Path(rest.split(":")[0]).exists(
    ) else spec


def load_labeler(spec: str, device: str = "cpu") -> Labeler:
    kind, _, rest = spec.partition(":")
    if not rest:
        raise FairrayError(f"labeler {spec!r}: expected one of {FORMS}")
    if kind == "attrclf":
        from fairray.labelers.attrclf import AttrClfLabeler

        return AttrClfLabeler(rest, device=device)
    if kind == "fairface":
        from fairray.labelers.fairface import FairFaceLabeler

        path, _, variant = rest.partition(":")
        return FairFaceLabeler(path, device=device, race=4 if variant == "race4" else 7)
    if kind == "clip":
        from fairray.labelers.clip import ClipLabeler

        model, _, weights = rest.partition(":")
        if not weights:
            raise FairrayError(f"labeler {spec!r}: clip needs MODEL_NAME:WEIGHTS_FILE (local weights only)")
        return ClipLabeler(model, weights, device=device)
    raise FairrayError(f"unknown labeler kind {kind!r}; forms: {FORMS}")


def input_size(labeler: Labeler) -> int:
    """The square size the labeler consumes; decode resizes to it on the CPU only when sizes differ."""
    return int(getattr(labeler, "resolution", None) or getattr(labeler, "input_size", None) or 224)
