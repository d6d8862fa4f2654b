"""The training core every fairray Ray Train loop runs on (GAN, distillation, attribute classifier, classifier).

A loop file says what is trained and with which loss; this module does the rest the same way for all of them:

* `Session`: one rank's view of a job — rank/world/device, autocast from `ray.precision`, the all-ranks NaN skip,
  rows dropped by the decoder, resume from the newest complete checkpoint, the tick line, rank-0 MLflow metrics and
  the atomic snapshot reported to Ray Train.
* `TickClock`: progress in images (kimg), a tick every `tick_kimg`, sec/kimg and img/s per tick.
* `Phase` + a loss object: stylegan2-ada's phases. Each phase has an optimizer and an interval (lazy
  regularisation is a phase with interval > 1); the loss object's `accumulate_gradients(phase, batch)` returns the
  phase's scalar loss and stats, and the session checks, back-propagates and steps it. A new objective or
  regulariser is a new loss class, not a new loop.

Ray touch points are marked `# Ray:`. Everything else also runs without Ray (world 1), which is how Tune trials
and `backend=local` run the classifier loop in-process.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from fairray.ray_env import autocast_kwargs, train_worker
from fairray.train.checkpoint import load_state, newest_complete, rng_state, save_state, set_rng_state

log = logging.getLogger("fairray.train")


def say(line: str) -> None:
    """A worker's console line, written to stdout directly: Ray Train V2 patches print() to also log it, and on a
    cluster whose workers keep the patch each tick would reach the driver twice."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------------------------------------------------------
# Small pieces


def unwrap(m: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DDP wrapper (or the object itself: an EMA's `.module` is not a wrapper)."""
    return m.module if isinstance(m, torch.nn.parallel.DistributedDataParallel) else m


def distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def all_finite(t: torch.Tensor) -> bool:
    """Every rank agrees to skip a step, or none does (a rank skipping alone would hang DDP's allreduce)."""
    ok = torch.tensor([float(torch.isfinite(t.detach()).all())], device=t.device)
    if distributed():
        torch.distributed.all_reduce(ok, op=torch.distributed.ReduceOp.MIN)
    return bool(ok.item() > 0)


def all_sum(n: int, device: torch.device) -> int:
    t = torch.tensor([float(n)], device=device)
    if distributed():
        torch.distributed.all_reduce(t)
    return int(t.item())


def gather_rng(world: int) -> list:
    """RNG state of every rank (rank 0 saves them all so each rank resumes its own stream)."""
    state = rng_state()
    if world > 1 and distributed():
        out: list = [None] * world
        torch.distributed.all_gather_object(out, state)
        return out
    return [state]


def peak_mem_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def resume_state(run_dir: Path | None) -> dict | None:
    """The newest complete checkpoint of a run. Ray's own latest can lag one snapshot behind when a worker dies
    while the controller is still registering it, so the run directory is scanned first."""
    newest = newest_complete(run_dir) if run_dir is not None else None
    if newest is not None:
        return load_state(newest)
    import ray.train  # Ray: remote storage (S3/NFS paths Ray knows, not this filesystem)

    ckpt = ray.train.get_checkpoint()
    if ckpt is None:
        return None
    with ckpt.as_directory() as d:
        return load_state(Path(d))


def to_unit(batch_uint8_nhwc: torch.Tensor, device: torch.device, signed: bool) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [-1, 1] (signed, generator space) or [0, 1] (classifiers). The permute is a view:
    the batch stays channels_last in memory, the layout the convs here run fastest in."""
    x = batch_uint8_nhwc.to(device).permute(0, 3, 1, 2).float()
    return x.div_(127.5).sub_(1) if signed else x.div_(255)


# ---------------------------------------------------------------------------------------------------------------
# Progress in images


class TickClock:
    """kimg progress: `advance(n)` after each step, True when a tick ends (every tick_kimg, and at the end)."""

    def __init__(self, total_img: int, tick_img: int, nimg: int = 0):
        self.total, self.tick_img, self.nimg = int(total_img), max(1, int(tick_img)), int(nimg)
        self.tick = self.nimg // self.tick_img
        self.next = (self.tick + 1) * self.tick_img
        self._t0, self._start = time.perf_counter(), self.nimg

    @property
    def done(self) -> bool:
        return self.nimg >= self.total

    @property
    def progress(self) -> float:
        return self.nimg / max(self.total, 1)

    def advance(self, n: int) -> bool:
        self.nimg += n
        if self.nimg < self.next and not self.done:
            return False
        self.tick += 1
        self.next += self.tick_img
        return True

    def lap(self) -> dict[str, float]:
        """kimg, sec/kimg and img/s of the tick that just ended; starts the next one."""
        dt, kimg = time.perf_counter() - self._t0, (self.nimg - self._start) / 1000
        self._t0, self._start = time.perf_counter(), self.nimg
        return {"kimg": self.nimg / 1000, "sec_per_kimg": dt / max(kimg, 1e-9), "img_per_s": kimg * 1000 / max(dt, 1e-9)}


class Means:
    """Running means of a tick's loss terms."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, stats: dict[str, torch.Tensor | float]) -> None:
        for k, v in stats.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v.detach() if isinstance(v, torch.Tensor) else v)
            self.counts[k] = self.counts.get(k, 0) + 1

    def pop(self) -> dict[str, float]:
        out = {k: s / self.counts[k] for k, s in self.sums.items()}
        self.sums, self.counts = {}, {}
        return out


# ---------------------------------------------------------------------------------------------------------------
# Phases and losses


class Loss(Protocol):
    """A training objective: the scalar loss of one phase on one batch, plus the stats to log (loss_* names)."""

    def accumulate_gradients(self, phase: str, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]: ...


@dataclass
class Phase:
    """One optimizer's update, run every `interval` steps (stylegan2-ada: Gmain, Greg, Dmain, Dreg)."""

    name: str
    opt: torch.optim.Optimizer
    interval: int = 1
    after: Callable[[], None] | None = None  # e.g. the EMA update after G's step
    sched: Any = None


# ---------------------------------------------------------------------------------------------------------------
# One rank of a job


@dataclass
class Session:
    """One rank's shared machinery. Build with `Session.ray(config, precision, name)` inside a Ray Train worker or
    `Session.local(device, precision, name)` in-process."""

    rank: int
    world: int
    device: torch.device
    precision: str = "auto"
    run_dir: Path | None = None
    mlflow: Any = None
    name: str = "train"
    nan_skips: int = 0
    bad_rows: int = 0
    history: list[dict] = field(default_factory=list)
    resumes: list[int] = field(default_factory=list)
    step: int = 0
    in_ray: bool = False
    quiet: bool = False  # no tick lines (experiments running many short trainings)

    def __post_init__(self) -> None:
        if self.device.type == "cuda":
            # cuDNN's autotuner picks kernels by timing, so two runs can pick different ones and differ (two fp32
            # runs on the H200 did, benchmarks/results/loop_overhead_cuda_fp32.json); with the autotuner off the
            # recipe study's runs came out identical on two machines (experiments/gan_recipes.py)
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True

    @classmethod
    def ray(cls, config: dict, precision: str, name: str) -> Session:
        rank, world, device = train_worker(config)  # Ray: rank, world size and device of this Train worker
        run_dir = Path(config["run_dir"]) if config.get("run_dir") else None
        return cls(rank, world, device, precision, run_dir, rank0_run(config) if rank == 0 else None, name,
                   in_ray=True)

    @classmethod
    def local(cls, device: torch.device, precision: str, name: str, quiet: bool = False) -> Session:
        return cls(0, 1, device, precision, name=name, quiet=quiet)

    # -- numerics ------------------------------------------------------------------------------------------------
    def autocast(self) -> torch.autocast:
        return torch.autocast(**autocast_kwargs(self.device, self.precision))

    def optimize(self, loss: torch.Tensor, phase: Phase) -> bool:
        """Back-propagate and step one phase, unless the loss is not finite on some rank (then every rank skips)."""
        if not all_finite(loss):
            self.nan_skips += 1
            return False
        phase.opt.zero_grad(set_to_none=True)
        loss.backward()
        phase.opt.step()
        if phase.sched is not None:
            phase.sched.step()
        if phase.after is not None:
            phase.after()
        return True

    def run_phases(self, loss: Loss, phases: Iterable[Phase], batch: dict[str, Any], means: Means) -> None:
        """One training step: every phase due at this step, in order."""
        for phase in phases:
            if self.step % phase.interval:
                continue
            with self.autocast():
                value, stats = loss.accumulate_gradients(phase.name, batch)
            self.optimize(value, phase)
            means.add(stats)
        self.step += 1

    def count_dropped(self, mine: int) -> int:
        """Rows the decoder dropped, summed over ranks (load_split records a shard's count in df.attrs)."""
        self.bad_rows = all_sum(mine, self.device)
        if self.bad_rows and self.rank == 0:
            say(f"{self.name}: {self.bad_rows} row(s) could not be decoded and were left out")
        return self.bad_rows

    # -- checkpoints ---------------------------------------------------------------------------------------------
    def resume(self, stateful: dict[str, Any]) -> dict | None:
        """Load the newest complete checkpoint into `stateful` (name -> object with load_state_dict); restores
        step, nan skips, history and this rank's RNG. Returns the state (None on a fresh start)."""
        return self.restore(resume_state(self.run_dir) if self.in_ray else None, stateful)

    def restore(self, state: dict | None, stateful: dict[str, Any]) -> dict | None:
        """Load a given state (see `resume`); None is a fresh start."""
        if state is None:
            return None
        for key, obj in stateful.items():
            obj.load_state_dict(state[key])
        if rngs := state.get("rng"):
            set_rng_state(rngs[self.rank] if self.rank < len(rngs) else rngs[0])
        self.step, self.nan_skips = state["step"], state.get("nan_skips", 0)
        self.history = state.get("history", [])
        self.resumes = state.get("resumes", []) + [state.get("nimg", 0)]
        if self.rank == 0 and self.in_ray:
            say(f"{self.name}: resumed from step {self.step} ({state.get('nimg', 0) / 1000:.1f} kimg)")
        return state

    def state(self, stateful: dict[str, Any], nimg: int, **extra: Any) -> dict:
        """A full resumable state: every stateful object, progress, every rank's RNG, history (+ extra)."""
        return {**{k: unwrap(v).state_dict() for k, v in stateful.items()}, "step": self.step, "nimg": nimg,
                "nan_skips": self.nan_skips, "rng": gather_rng(self.world), "history": self.history,
                "resumes": self.resumes, **extra}

    # -- the end of a tick ---------------------------------------------------------------------------------------
    def end_tick(self, clock: TickClock, metrics: dict[str, float], line: str, state: Callable[[], dict] | None,
                 snapshot: bool, files: Callable[[Path], None] | None = None) -> dict[str, float]:
        """Tick metrics -> history, MLflow (rank 0), the tick line, and Ray Train's report — with an atomic
        checkpoint (state.pt + marker, plus `files(dir)` such as a sample grid) when `snapshot`."""
        return self.publish(clock.tick, {**clock.lap(), **metrics}, line, state, snapshot, files)

    def publish(self, tick: int, metrics: dict[str, float], line: str, state: Callable[[], dict] | None,
                snapshot: bool, files: Callable[[Path], None] | None = None) -> dict[str, float]:
        """`end_tick` for metrics that already carry kimg, sec/kimg and img/s."""
        metrics = {"step": self.step, **metrics, "peak_mem_gb": peak_mem_gb(self.device),
                   "nan_skips": self.nan_skips, "bad_rows": self.bad_rows}
        self.history.append(metrics)
        if self.mlflow is not None:
            self.mlflow.log_metrics(metrics, step=int(metrics["kimg"] * 1000))
            self.mlflow.flush()
        if self.rank == 0 and not self.quiet:
            say(f"{self.name} tick {tick:<4d} kimg {metrics['kimg']:<7.1f} sec/kimg "
                f"{metrics['sec_per_kimg']:<6.2f} img/s {metrics['img_per_s']:<6.0f} {line}  "
                f"mem {metrics['peak_mem_gb']:.2f} GB  nan-skips {self.nan_skips}"
                + (f"  bad-rows {self.bad_rows}" if self.bad_rows else ""))
        if self.in_ray:  # in-process runs keep their own snapshots (see train/gan.py: train_local)
            full = state() if snapshot and state is not None else None  # every rank joins the RNG gather
            report(metrics, full if self.rank == 0 else None, files)
        return metrics


def report(metrics: dict[str, float], state: dict | None, files: Callable[[Path], None] | None = None) -> None:
    """Ray Train's report, with a checkpoint directory when a state is given (rank 0 only)."""
    import ray.train  # Ray: metrics (and the checkpoint) to the Train controller

    if state is None:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as d:
        save_state(state, Path(d))
        if files is not None:
            files(Path(d))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))


def rank0_run(config: dict) -> Any:
    """Rank 0 writes tick metrics into the MLflow run the driver opened (never fatal)."""
    t = config.get("tracking")
    if not t or not t.get("run_id"):
        return None
    from fairray.tracking import Tracker

    return Tracker(Path(t["out"]), t["experiment"], t["uri"]).attach(t["run_id"])


def prepare(model: torch.nn.Module, twice_per_step: bool = False) -> torch.nn.Module:
    """DDP-wrap a model already on its device. A model called twice per step (D on real, then on fake) must not
    re-broadcast its BatchNorm buffers between the calls."""
    import ray.train.torch  # Ray: DDP over the worker group

    kwargs = {"parallel_strategy_kwargs": {"broadcast_buffers": False}} if twice_per_step else {}
    return ray.train.torch.prepare_model(model, move_to_device=False, **kwargs)


def grid_writer(ema: torch.nn.Module, grid_z: torch.Tensor, title: str) -> Callable[[Path], None]:
    """Writes the fixed-latent sample grid of an EMA generator beside a checkpoint (grid.png)."""
    def write(d: Path) -> None:
        from fairray.models.generator_io import to_images
        from fairray.report import fig_png, grid_figure

        with torch.no_grad():
            ema.train()  # batch statistics, like generator_io.sample
            grid = to_images(ema.module(grid_z))
        fig_png(grid_figure(grid, 8, title), d / "grid.png")

    return write
