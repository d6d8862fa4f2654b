"""What every config shares: the `Cfg` base, YAML reading, `--set a.b=v` overrides, section defaults, one-line errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from fairray.errors import FairrayError


class Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


C = TypeVar("C", bound=Cfg)


class _Loader(yaml.SafeLoader):
    """YAML 1.2-style ints: `90_10` stays the string fairgen means, not the integer 9010."""


_Loader.yaml_implicit_resolvers = {k: [r for r in v if r[0] != "tag:yaml.org,2002:int"]
                                   for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?(0|[1-9][0-9]*)$"), list("-+0123456789"))


def _yaml_problem(e: yaml.YAMLError) -> str:
    """yaml's own message spans many lines (context, snippet, caret); the user needs where and what."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    context = getattr(e, "context", None)
    return where + (f"{problem} ({context})" if context else problem)


def parse_value(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


def apply_override(data: dict, assignment: str) -> None:
    """Set `a.b=v` in the nested dict `data`; the value is read as YAML (`[0, 1]`, `{k: v}`, `null`, ...)."""
    if "=" not in assignment:
        raise FairrayError(f"--set expects key=value, got {assignment!r}")
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise FairrayError(f"--set {key}: {p!r} is a value, not a section")
    try:
        node[parts[-1]] = parse_value(raw)
    except yaml.YAMLError as e:
        raise FairrayError(f"--set {key}: cannot read {raw!r} as YAML: {_yaml_problem(e)}") from None


def read_yaml(path: Path) -> dict:
    if not Path(path).is_file():
        raise FairrayError(f"config file not found: {path}")
    try:
        data = yaml.load(Path(path).read_text(), Loader=_Loader) or {}
    except yaml.YAMLError as e:
        raise FairrayError(f"{path}: malformed YAML at {_yaml_problem(e)}") from None
    if not isinstance(data, dict):
        raise FairrayError(f"{path}: a config must be a mapping of keys to values")
    return data


def load_config(cls: type[C], path: Path | None = None, overrides: list[str] | None = None) -> C:
    data = read_yaml(path) if path is not None else {}
    for o in overrides or []:
        apply_override(data, o)
    try:
        return cls.model_validate(with_section_defaults(cls, data))
    except ValidationError as e:
        raise FairrayError(format_validation_error(cls, e)) from None


def merge_overrides(cls: type[BaseModel], base: dict, update: dict) -> dict:
    """`update` over `base`, section by section, each nested section then completed from its configured defaults:
    what `cls.model_validate` should see. Idempotent, so a result can be merged over again."""
    return with_section_defaults(cls, _deep_merge(base, update, cls))


def with_section_defaults(cls: type[BaseModel], data: dict) -> dict:
    """Overrides of a nested section land on that section's *configured* defaults: `--set attrclf.epochs=2` on
    the demo keeps the demo's attrclf settings instead of resetting the section to AttrClfConfig's own."""
    out = dict(data)
    for name, field in cls.model_fields.items():
        sub = field.annotation
        if name in out and isinstance(out[name], dict) and isinstance(sub, type) and issubclass(sub, Cfg):
            default = field.get_default(call_default_factory=True)
            # exclude_unset: a field left at its default stays unset, so a stage can tell "default" from "asked for"
            base = default.model_dump(mode="json", exclude_unset=True) if isinstance(default, Cfg) else {}
            # user values over this section's configured defaults, then (deeper) over the sub-config's own
            out[name] = with_section_defaults(sub, _deep_merge(base, out[name], sub))
    return out


def _deep_merge(base: dict, update: dict, cls: type[BaseModel]) -> dict:
    merged = dict(base)
    for k, v in update.items():
        field = cls.model_fields.get(k)
        sub = getattr(field, "annotation", None)
        if isinstance(v, dict) and isinstance(merged.get(k), dict) and isinstance(sub, type) and issubclass(sub, Cfg):
            merged[k] = _deep_merge(merged[k], v, sub)
        else:
            merged[k] = v
    return merged


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
    """pydantic's multi-line report as one line: each key with what is wrong (unknown keys: what is allowed)."""
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
