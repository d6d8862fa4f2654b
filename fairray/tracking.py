"""MLflow tracking that never stops the work.

The store defaults to `sqlite:///<out>/mlflow.db` with artifacts in `<out>/mlartifacts` (never the cwd),
overridable by `MLFLOW_TRACKING_URI` or the config. The experiment is created once, on the driver. A
failing store (server down, database locked) logs one warning and turns the tracker into a no-op.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fairray.machine import cpu_description

log = logging.getLogger("fairray.tracking")

# A dead server should cost seconds, not MLflow's default minutes of retries.
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                  "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
PARENT_TAG = "mlflow.parentRunId"


def resolve_uri(out: Path, uri: str | None = None) -> str:
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(out).resolve() / 'mlflow.db'}"


class Tracker:
    """Experiment + runs on one MLflow store; every call is guarded (warn once, then no-op)."""

    def __init__(self, out: Path, experiment: str, uri: str | None = None, enabled: bool = True):
        self.uri = resolve_uri(out, uri)
        self.artifact_root = (Path(out).resolve() / "mlartifacts").as_uri()
        self.experiment = experiment
        self.enabled = enabled
        self.experiment_id: str | None = None
        self._client: Any = None
        self._warned = False
        if self.uri.startswith("http"):
            for k, v in _HTTP_DEFAULTS.items():
                os.environ.setdefault(k, v)
        if enabled:
            self._guard(self._connect)

    def _connect(self) -> None:
        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # schema-migration chatter
        self._client = MlflowClient(tracking_uri=self.uri)
        exp = self._client.get_experiment_by_name(self.experiment)
        if exp is None:
            local = self.uri.startswith("sqlite") or self.uri.startswith("file")
            self.experiment_id = self._client.create_experiment(
                self.experiment, artifact_location=self.artifact_root if local else None
            )
        else:
            self.experiment_id = exp.experiment_id

    @property
    def active(self) -> bool:
        return self.enabled and self.experiment_id is not None

    def _guard(self, fn, *args, **kwargs) -> Any:
        if not self.enabled:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # tracking must never take the job down with it
            if not self._warned:
                log.warning("MLflow tracking at %s failed (%s: %s); continuing without tracking",
                            self.uri, type(e).__name__, str(e).splitlines()[0][:200])
                self._warned = True
            self.enabled = False
            return None

    def find_run(self, tag: str, value: str) -> str | None:
        """The id of this experiment's run tagged tag=value (to reuse it when a job is re-run)."""
        if not self.active:
            return None
        runs = self._guard(self._client.search_runs, [self.experiment_id], f"tags.`{tag}` = '{value}'",
                           max_results=1)
        return runs[0].info.run_id if runs else None

    def attach(self, run_id: str | None) -> RunHandle:
        """A handle on an existing run (e.g. opened by the driver, written to by rank 0 of a Train job)."""
        return RunHandle(self, run_id if self.active else None)

    @contextmanager
    def run(self, name: str, parent: RunHandle | None = None, tags: dict[str, str] | None = None,
            run_id: str | None = None) -> Iterator[RunHandle]:
        """Open a run (a child when parent is given; an existing one when run_id is given); it ends FINISHED,
        or FAILED if the body raises."""
        handle = RunHandle(self, None)
        if self.active and run_id is not None:
            handle = RunHandle(self, run_id)
            self._guard(self._client.update_run, run_id, "RUNNING")
        elif self.active:
            # the numbers of a seed depend on the CPU's kernels (fairray.machine): compare runs knowing it (the
            # CPU of the process that opens the run; on a cluster the driver's, not necessarily the workers')
            all_tags = {"mlflow.runName": name, **{f"fairray.{k}": str(v) for k, v in cpu_description().items()},
                        **(tags or {})}
            if parent is not None and parent.run_id:
                all_tags[PARENT_TAG] = parent.run_id
            run = self._guard(self._client.create_run, self.experiment_id, tags=all_tags, run_name=name)
            handle = RunHandle(self, run.info.run_id if run else None)
        status = "FAILED"
        try:
            yield handle
            status = "FINISHED"
        finally:
            handle.flush()
            if handle.run_id:
                self._guard(self._client.set_terminated, handle.run_id, status)


class RunHandle:
    """Buffers metrics and logs them in batches (one round trip per flush, not per value)."""

    def __init__(self, tracker: Tracker, run_id: str | None, batch: int = 500):
        self.tracker, self.run_id, self.batch = tracker, run_id, batch
        self._metrics: list = []

    @property
    def live(self) -> bool:
        return self.run_id is not None and self.tracker.enabled

    def worker_spec(self, out: Path) -> dict[str, str] | None:
        """What a Ray Train worker needs to log into this run (see `fairray.train.loop.rank0_run`); None when
        tracking is off."""
        if not self.live:
            return None
        t = self.tracker
        return {"out": str(Path(out).resolve()), "experiment": t.experiment, "uri": t.uri, "run_id": self.run_id}

    def log_params(self, params: dict[str, Any]) -> None:
        if not self.live:
            return
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in _flatten(params).items()]
        for i in range(0, len(items), 100):
            self.tracker._guard(self.tracker._client.log_batch, self.run_id, params=items[i:i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        if not self.live:
            return
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self._metrics += [Metric(k, float(v), ts, step) for k, v in metrics.items()]
        if len(self._metrics) >= self.batch:
            self.flush()

    def set_tags(self, tags: dict[str, str]) -> None:
        if not self.live:
            return
        from mlflow.entities import RunTag

        self.tracker._guard(self.tracker._client.log_batch, self.run_id,
                            tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def flush(self) -> None:
        if self._metrics and self.live:
            for i in range(0, len(self._metrics), 1000):
                self.tracker._guard(self.tracker._client.log_batch, self.run_id, metrics=self._metrics[i:i + 1000])
        self._metrics = []

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if self.live:
            self.tracker._guard(self.tracker._client.log_artifact, self.run_id, str(path), artifact_path)

    def log_figure(self, fig: Any, name: str) -> None:
        """Save a matplotlib figure as <name> (e.g. 'charts/shares.png') in the run's artifacts."""
        if not self.live:
            return
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / Path(name).name
            fig.savefig(p, dpi=110, bbox_inches="tight")
            self.log_artifact(p, str(Path(name).parent) if Path(name).parent != Path(".") else None)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out
