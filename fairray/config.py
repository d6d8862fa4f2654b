"""Typed configs (pydantic v2) loaded from YAML with `--set a.b=v` overrides.

Unknown keys and wrong types are errors that name the key and what is allowed; `--dry-run` prints the
resolved config as YAML.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fairray.data.bias import BiasSpec, parse_bias
from fairray.errors import FairrayError


class Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SynthConfig(Cfg):
    """A biased SynthFaces set, its balanced reference set (fairgen's D_ref) and train/val/test splits."""

    n: int = Field(10_000, ge=1, description="biased training rows")
    val_frac: float = Field(0.1, ge=0, le=1, description="val rows as a fraction of n (same bias)")
    test_frac: float = Field(0.1, ge=0, le=1, description="test rows as a fraction of n (same bias)")
    perc: float = Field(0.25, ge=0, le=1, description="reference-set size as a fraction of the biased set")
    bias: BiasSpec = Field(default_factory=lambda: BiasSpec(preset="90_10"))
    resolution: Literal[32, 64, 128] = 32
    seed: int = 0
    shard_rows: int = Field(5_000, ge=1)
    image_folder: bool = Field(False, description="also write images/<split>/*.png + labels.csv")

    @field_validator("bias", mode="before")
    @classmethod
    def _parse_bias(cls, v: Any) -> Any:
        return parse_bias(v) if isinstance(v, str) else v


class TrackingConfig(Cfg):
    uri: str | None = Field(None, description="MLflow tracking URI; default $MLFLOW_TRACKING_URI or <out>/mlflow.db")
    experiment: str = "fairray"
    enabled: bool = True


class DemoConfig(Cfg):
    synth: SynthConfig = Field(default_factory=lambda: SynthConfig(n=4_000))
    tracking: TrackingConfig = Field(default_factory=lambda: TrackingConfig(experiment="fairray-demo"))
    grid_size: int = Field(8, ge=2, le=16, description="sample grid is grid_size x grid_size")


C = TypeVar("C", bound=Cfg)


class _Loader(yaml.SafeLoader):
    """YAML 1.2-style ints: `90_10` stays the string fairgen means, not the integer 9010."""


_Loader.yaml_implicit_resolvers = {k: [r for r in v if r[0] != "tag:yaml.org,2002:int"]
                                   for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?(0|[1-9][0-9]*)$"), list("-+0123456789"))


def parse_value(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


def apply_override(data: dict, assignment: str) -> None:
    if "=" not in assignment:
        raise FairrayError(f"--set expects key=value, got {assignment!r}")
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise FairrayError(f"--set {key}: {p!r} is a value, not a section")
    node[parts[-1]] = parse_value(raw)


def load_config(cls: type[C], path: Path | None = None, overrides: list[str] | None = None) -> C:
    data: dict = {}
    if path is not None:
        if not Path(path).is_file():
            raise FairrayError(f"config file not found: {path}")
        data = yaml.load(Path(path).read_text(), Loader=_Loader) or {}
        if not isinstance(data, dict):
            raise FairrayError(f"{path}: a config must be a mapping of keys to values")
    for o in overrides or []:
        apply_override(data, o)
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise FairrayError(format_validation_error(cls, e)) from None


def _allowed_keys(cls: type[BaseModel], loc: tuple) -> list[str]:
    model: Any = cls
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        ann = getattr(field, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return list(model.model_fields)


def format_validation_error(cls: type[BaseModel], e: ValidationError) -> str:
    msgs = []
    for err in e.errors():
        key = ".".join(str(p) for p in err["loc"]) or "<root>"
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(cls, err["loc"])
            msgs.append(f"unknown key '{key}'" + (f" (allowed: {', '.join(allowed)})" if allowed else ""))
        else:
            got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
            msgs.append(f"{key}: {err['msg'].removeprefix('Value error, ')}{got}")
    return "config error: " + "; ".join(msgs)


def dump_config(cfg: BaseModel) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json", exclude_none=False), sort_keys=False)
