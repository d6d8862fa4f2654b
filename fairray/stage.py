"""The one contract every fairray stage follows: `run(cfg, out, ctx) -> metrics`.

A stage is a command's unit of work (train the attribute classifier, train a GAN, distil, debias, ...). The CLI,
the demo, Tune trials and the experiments all call it the same way; what differs between callers travels in a
`RunContext`: the MLflow tracker and parent run to log under, the run's name and extra tags, and whether to show
progress bars. A stage opens its own tracker from `cfg.tracking` when the context carries none.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from fairray.tracking import RunHandle, Tracker


@dataclass(frozen=True)
class RunContext:
    """Who is calling a stage: where it logs (tracker + parent run), under which name and tags, how loudly."""

    tracker: Tracker | None = None
    parent: RunHandle | None = None
    name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    progress: bool = True

    def tracker_for(self, out: Path, cfg: Any) -> Tracker:
        """The caller's tracker, or one opened from the stage config's `tracking` section under `out`."""
        if self.tracker is not None:
            return self.tracker
        from fairray.tracking import Tracker

        t = cfg.tracking
        return Tracker(Path(out), t.experiment, t.uri, t.enabled)

    @contextmanager
    def resumable_run(self, out: Path, cfg: Any, command: str, name: str, params: dict[str, Any]
                      ) -> Iterator[RunHandle]:
        """The MLflow run named `name` under the parent, reused when a re-run (same out, same name) continues a
        job, so a resumed training never makes a duplicate run; params are logged once, on creation."""
        tracker = self.tracker_for(out, cfg)
        existing = tracker.find_run("fairray.run_name", name)
        with tracker.run(name, parent=self.parent, run_id=existing,
                         tags={"fairray.command": command, "fairray.run_name": name, **self.tags}) as run:
            if existing is None:
                run.log_params(params)
            yield run

    def with_(self, **changes: Any) -> RunContext:
        return replace(self, **changes)


class Stage(Protocol):
    """`run(cfg, out, ctx) -> metrics`: what a Tune trainable, the demo and the CLI call."""

    def __call__(self, cfg: Any, out: Path, ctx: RunContext | None = None) -> dict[str, Any]: ...
