"""The search-space file format (tune_spaces/*.yaml) and its validation.

A space names a trainable (fairray.tune.trainables.TRAINABLES), fixed settings of that trainable's config,
the searched params (grid, choice, uniform, loguniform, quantised), the searcher and scheduler, the objective
(fairness, quality or a weighted combination; both are always recorded) and a budget. `load_space` checks all of
it, including every candidate value against the trainable's pydantic config, so a bad space fails before any
trial starts with a FairrayError that names the bad key.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fairray.config import apply_override, format_validation_error, read_yaml
from fairray.errors import FairrayError

ParamType = Literal["grid", "choice", "uniform", "loguniform", "quantised"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Param(_Strict):
    """One searched setting. grid: every value is a trial; choice: one value drawn per sample; uniform /
    loguniform: a float in [low, high]; quantised: uniform (or log-uniform with log: true) rounded to q."""

    type: ParamType
    values: list[Any] | None = None
    low: float | None = None
    high: float | None = None
    q: float | None = None
    log: bool = False

    @model_validator(mode="after")
    def _shape(self) -> Param:
        if self.type in ("grid", "choice"):
            if not self.values:
                raise ValueError(f"type {self.type} needs a non-empty `values` list")
            if self.low is not None or self.high is not None or self.q is not None:
                raise ValueError(f"type {self.type} takes `values`, not low/high/q")
            if len({json.dumps(v, sort_keys=True) for v in self.values}) != len(self.values):
                raise ValueError("`values` has duplicates (each would be a duplicate trial)")
            return self
        if self.values is not None:
            raise ValueError(f"type {self.type} takes low/high, not `values`")
        if self.low is None or self.high is None:
            raise ValueError(f"type {self.type} needs `low` and `high`")
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if (self.type == "loguniform" or self.log) and self.low <= 0:
            raise ValueError(f"a log scale needs low > 0 (got {self.low})")
        if self.type == "quantised":
            if self.q is None or self.q <= 0:
                raise ValueError("type quantised needs a step `q` > 0")
        elif self.q is not None or self.log:
            raise ValueError(f"type {self.type} takes no `q`/`log` (use type: quantised)")
        return self

    def candidates(self) -> list[Any]:
        """Values that span what the param can take (checked against the trainable's config)."""
        if self.values is not None:
            return list(self.values)
        return [self.low, self.high]

    def to_tune(self) -> Any:
        from ray import tune

        if self.type == "grid":
            return tune.grid_search(list(self.values or []))
        if self.type == "choice":
            return tune.choice(list(self.values or []))
        if self.type == "uniform":
            return tune.uniform(self.low, self.high)
        if self.type == "loguniform":
            return tune.loguniform(self.low, self.high)
        return (tune.qloguniform if self.log else tune.quniform)(self.low, self.high, self.q)


class Search(_Strict):
    searcher: Literal["grid", "random"] = Field(
        "grid", description="grid: every param is a grid, all combinations run; random: num_samples draws "
                            "of the sampled params, crossed with any grid params")
    num_samples: int = Field(1, ge=1, description="draws (random) or repeats of the whole grid (grid)")
    scheduler: Literal["fifo", "asha"] = Field("fifo", description="asha stops weak trials at evaluations")
    grace_period: int = Field(1, ge=1, description="asha: evaluations before a trial can be stopped")
    reduction_factor: float = Field(2.0, gt=1, description="asha: keep 1/reduction_factor at each rung")
    seed: int | None = Field(None, description="random searcher seed (reproducible draws)")


class Objective(_Strict):
    metric: Literal["fairness", "quality", "combined"] = Field(
        "fairness", description="what Tune optimises; both fairness and quality are always recorded")
    mode: Literal["min", "max"] | None = Field(None, description="must agree with the metric (default: its own)")
    fairness: str | None = Field(None, description="fairness metric name (default: the trainable's)")
    quality: str | None = Field(None, description="quality metric name (default: the trainable's)")
    weights: dict[Literal["fairness", "quality"], float] = Field(
        default_factory=lambda: {"fairness": 1.0, "quality": 0.0},
        description="combined = w_f * fairness + w_q * quality, each signed so that lower is better")


class Budget(_Strict):
    max_trials: int = Field(64, ge=1, description="the expanded space may hold at most this many trials")
    evaluations: int = Field(1, ge=1, description="evaluations per trial (GAN: kimg split into stages; asha rungs)")
    time_budget_s: float | None = Field(None, gt=0, description="stop starting/continuing trials after this")
    max_concurrent_trials: int | None = Field(None, ge=1, description="default: what the cluster's CPUs/GPUs fit")


class SpaceFile(_Strict):
    trainable: str
    description: str = ""
    fixed: dict[str, Any] = Field(default_factory=dict, description="settings of the trainable held fixed")
    params: dict[str, Param]
    search: Search = Field(default_factory=Search)
    objective: Objective = Field(default_factory=Objective)
    budget: Budget = Field(default_factory=Budget)


class Space:
    """A validated space: the file's content plus what the trainable registry says about it."""

    def __init__(self, path: Path, spec: SpaceFile, raw: dict):
        self.path, self.spec, self.raw = Path(path), spec, raw

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def params(self) -> dict[str, Param]:
        return self.spec.params

    def n_trials(self) -> int:
        grid = math.prod(len(p.values or []) for p in self.params.values() if p.type == "grid")
        return grid * self.spec.search.num_samples

    def param_space(self) -> dict[str, Any]:
        return {k: p.to_tune() for k, p in self.params.items()}

    def digest(self) -> str:
        """Identity of the search (what a restore must match); descriptions and budgets may change."""
        core = {k: self.raw.get(k) for k in ("trainable", "fixed", "params", "search", "objective")}
        return hashlib.sha256(json.dumps(core, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_space(path: Path, overrides: list[str] | None = None) -> Space:
    """Read, override (`params.alpha.values=[0,1]`) and validate a space; every error names its key."""
    from fairray.tune.trainables import get_trainable

    path = Path(path)
    if not path.is_file() and (Path("tune_spaces") / path).is_file():
        path = Path("tune_spaces") / path
    if not path.is_file() and (Path("tune_spaces") / f"{path}.yaml").is_file():
        path = Path("tune_spaces") / f"{path}.yaml"
    raw = read_yaml(path)
    for o in overrides or []:
        apply_override(raw, o)
    try:
        spec = SpaceFile.model_validate(raw)
    except ValidationError as e:
        raise FairrayError(f"{path}: " + format_validation_error(SpaceFile, e).removeprefix("config error: ")
                           ) from None
    if not spec.params:
        raise FairrayError(f"{path}: params is empty; a space searches at least one setting")
    space = Space(path, spec, raw)
    trainable = get_trainable(spec.trainable, where=f"{path}: trainable")
    _check_search(space)
    _check_values(space, trainable)
    if trainable.reports(space) < 2 and spec.search.scheduler == "asha":
        raise FairrayError(f"{path}: search.scheduler: asha needs several evaluations per trial "
                           f"(set budget.evaluations >= 2 for {spec.trainable})")
    if spec.objective.mode is not None:
        want = trainable.mode_of(spec.objective.metric, spec.objective)
        if spec.objective.mode != want:
            raise FairrayError(f"{path}: objective.mode: {spec.objective.metric} is optimised with mode {want}, "
                               f"not {spec.objective.mode}")
    if space.n_trials() > spec.budget.max_trials:
        raise FairrayError(f"{path}: budget.max_trials: the space expands to {space.n_trials()} trials, more than "
                           f"max_trials={spec.budget.max_trials}")
    return space


def _check_search(space: Space) -> None:
    s = space.spec.search
    if s.searcher == "grid":
        for k, p in space.params.items():
            if p.type != "grid":
                raise FairrayError(f"{space.path}: params.{k}: type {p.type} is sampled, but search.searcher is "
                                   "grid (make it type: grid, or use searcher: random)")
    elif not any(p.type != "grid" for p in space.params.values()):
        raise FairrayError(f"{space.path}: search.searcher: random, but every param is a grid (use searcher: grid)")
    if s.scheduler == "asha" and s.searcher == "grid" and space.n_trials() < 2:
        raise FairrayError(f"{space.path}: search.scheduler: asha needs at least 2 trials to compare")


def _check_values(space: Space, trainable) -> None:
    """Fixed settings, then each param's candidate values, through the trainable's own config validation."""
    base: dict = {}
    for key, value in space.spec.fixed.items():
        _check_key(space, trainable, f"fixed.{key}", key)
        apply_override(base, f"{key}={json.dumps(value)}")
    trainable.validate(base, f"{space.path}: fixed")
    for key, p in space.params.items():
        _check_key(space, trainable, f"params.{key}", key)
        if key in space.spec.fixed:
            raise FairrayError(f"{space.path}: params.{key} is also in fixed; keep it in one place")
        for v in p.candidates():
            if key in trainable.data_params:
                trainable.check_data_param(key, v, f"{space.path}: params.{key}")
                continue
            trial = json.loads(json.dumps(base))
            apply_override(trial, f"{key}={json.dumps(v)}")
            trainable.validate(trial, f"{space.path}: params.{key}={v!r}")
        if key in trainable.data_params and p.type not in ("grid", "choice"):
            raise FairrayError(f"{space.path}: params.{key}: a data setting needs type grid or choice (each value "
                               "gets its own dataset, prepared before the trials start)")


def _check_key(space: Space, trainable, where: str, key: str) -> None:
    if key in trainable.data_params:
        return
    known = trainable.settings()
    if key.split(".")[0] not in known:
        raise FairrayError(f"{space.path}: {where}: {trainable.name} has no setting {key.split('.')[0]!r} "
                           f"(settings: {', '.join(sorted(known) + sorted(trainable.data_params))})")


def describe(space: Space) -> str:
    """One paragraph: what is searched, how, and for what."""
    s, o = space.spec.search, space.spec.objective
    parts = []
    for k, p in space.params.items():
        parts.append(f"{k} {p.type} {p.values}" if p.values is not None else
                     f"{k} {p.type} [{p.low}, {p.high}]" + (f" q={p.q}" if p.q else ""))
    return (f"{space.name}: {space.spec.trainable}, {space.n_trials()} trial(s) ({s.searcher}, {s.scheduler}); "
            f"optimise {o.metric}; " + "; ".join(parts))


__all__ = ["Budget", "Objective", "Param", "Search", "Space", "SpaceFile", "describe", "load_space"]
