"""One way to start or join Ray, with settings measured to work on small machines (ray-stack.md)."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch

from fairray.machine import compute_setup, resolve_precision

# Set before Ray is imported anywhere in this process: no usage prompt, quiet output, working loggers.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "1")
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
# The Train controller polls its workers every 2 s by default; 0.5 s saves about 1.3 s per fit here
# (benchmarks/train_overhead.py), and the demo makes seven fits.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
# Train V2 re-routes a worker's print() into the root logger and also tees it to the (wrapped) stdout, so every
# tick line reached the console twice; workers of a local Ray inherit this and print once.
os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
# Ray Data's V2 Parquet reader lists files in a task whose completion thread can lose a race with the task's own
# shutdown and print an InterruptedError traceback from a successful read (2 reads in 10 on a loaded 2-core box,
# benchmarks/listfiles_race.py); the V1 reader has no listing task. RAY_DATA_USE_DATASOURCE_V2=1 brings V2 back.
os.environ.setdefault("RAY_DATA_USE_DATASOURCE_V2", "0")

import ray  # noqa: E402

log = logging.getLogger("fairray.ray")


def init_ray(address: str | None = None, num_cpus: int | None = None, object_store_mb: int | None = None,
             dashboard: bool = True) -> None:
    """Join `address` (or $RAY_ADDRESS) when given, else start a local Ray; if already connected, only picks this
    process's Ray Data Parquet reader.

    object_store_mb None: Ray's default (30% of memory, allocated as used). With 512 MB, Ray Data's share (half)
    could not hold a 5,000-row block of images per labeling actor, so a second actor sat idle (measured).
    The dashboard stays on by default: Train V2 polls the State API through it (without it, every run logs
    dozens of "State API may be temporarily unavailable" lines)."""
    # the env default above is read when ray.data is first imported, which may have happened before this module
    v2 = os.environ.get("RAY_DATA_USE_DATASOURCE_V2", "0").lower() in ("1", "true")
    ray.data.DataContext.get_current().use_datasource_v2 = v2
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    quiet = {"log_to_driver": True, "logging_level": logging.WARNING, "configure_logging": True}
    if address:
        ray.init(address=address, **quiet)
    else:
        # A private local cluster on loopback: no token file written to ~/.ray (clusters you join keep theirs).
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        # Ray Train's internal actors find the State API by "auto" address discovery, which fails when another
        # local Ray runs on this machine; pinning the dashboard port and naming it keeps them on ours.
        port = _free_port() if dashboard else None
        if port is not None:
            os.environ["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"
        ray.init(num_cpus=num_cpus, include_dashboard=dashboard, dashboard_host="127.0.0.1", dashboard_port=port,
                 object_store_memory=object_store_mb and object_store_mb * 2**20, **quiet)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = True
    ctx.enable_operator_progress_bars = False  # one bar per dataset, not one per operator


def cluster_gpus() -> int:
    return int(ray.cluster_resources().get("GPU", 0))


def cluster_cpus() -> float:
    return float(ray.cluster_resources().get("CPU", 1))


def resolve_device(device: str) -> str:
    """'auto' -> cuda when the cluster (or this machine) has a GPU, else cpu."""
    if device != "auto":
        return device
    has_gpu = cluster_gpus() > 0 if ray.is_initialized() else torch.cuda.is_available()
    return "cuda" if has_gpu else "cpu"


MAX_CPU_ACTORS = 8  # each CPU actor holds its own torch runtime and model copy (~0.5-1 GB resident)
ROWS_PER_CPU_ACTOR = 50_000  # a second actor from 100k rows: at 10k and 30k its start-up cost more than it added


def actor_pool(device: str, actors: int | None = None, rows: int | None = None) -> tuple[int, float, int | None]:
    """(actors, CPUs per actor, torch threads per actor) for a Ray Data model stage of `rows` rows, from the
    cluster's resources.

    GPU: one actor per GPU. CPU: one-thread actors, one per CPU and per full ROWS_PER_CPU_ACTOR rows (at least one,
    at most MAX_CPU_ACTORS; the CPUs' threads are shared out among them), each asking for a quarter CPU: a stage's
    actors then hold at most a quarter of the cluster, so its Parquet read and write tasks, and those of a second
    stage running beside it (the demo labels while the density-ratio pass runs), always find a free CPU. The
    request is a scheduling token, not a thread budget. On 2 cores, 100k rows, two one-thread actors labeled
    16-31% faster in steady state than one two-thread actor (with one, 6% of the cores sat idle while it decoded
    or serialised on one thread); at 10k and 30k rows the second actor's start-up made the run slower
    (benchmarks/RESULTS.md, "One-thread actors")."""
    if device == "cuda":
        return actors or max(1, cluster_gpus()), 0.5, None
    cpus = max(1, int(cluster_cpus()))
    n = cpu_actors(cpus, actors, rows)
    return n, 0.25, max(1, cpus // n)


def cpu_actors(cpus: int, actors: int | None = None, rows: int | None = None) -> int:
    """How many CPU actors a model stage of `rows` rows gets on `cpus` CPUs (the rule of actor_pool)."""
    by_rows = MAX_CPU_ACTORS if rows is None else max(1, rows // ROWS_PER_CPU_ACTOR)
    return actors or min(cpus, MAX_CPU_ACTORS, by_rows)


def local_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def runs_in_process(engine: str, address: str | None, device: str, actors: int | None, rows: int) -> bool:
    """Whether a model stage runs in the calling process instead of a Ray Data actor pool. engine "process" /
    "ray" decide; "auto": when no Ray is running or given (the command would start a local one for this stage
    alone) and the pool would be one actor.

    Such a pool is the same stage code in one other process, behind `ray.init` and a fresh actor process importing
    torch: 8-16 s to the first labeled batch on a 2-core VM, where the command's process labels 10k images in 2.7-4.5 s
    (benchmarks/RESULTS.md, "In the command's process")."""
    if engine != "auto":
        return engine == "process"
    if address or os.environ.get("RAY_ADDRESS") or ray.is_initialized():
        return False
    if device == "cuda":
        return (actors or torch.cuda.device_count()) == 1
    return cpu_actors(local_cpus(), actors, rows) == 1


def model_actors(n: int) -> ray.data.ActorPoolStrategy:
    """The ActorPoolStrategy of a Ray Data model stage: n actors, each running its UDF on the actor's own task
    thread. By default Ray Data wraps an actor's UDF in a one-thread executor (to overlap batching with it); torch
    runs 25-40% slower on that second thread than on the thread it was set up on (the attrclf's forward pass on 256
    images: 35 -> 49 ms; conv, batch norm and copies alike; benchmarks/RESULTS.md), which cost the labeling
    pipeline more than the overlap gained. At one call per actor (Ray's default concurrency) this is still one UDF
    call at a time."""
    return ray.data.ActorPoolStrategy(size=n, enable_true_multi_threading=True)


def worker_resources(workers: int, use_gpu: bool, cpus_per_worker: float | None = None) -> dict[str, float]:
    """CPU share per Train worker: leave room for Ray Data tasks on small clusters (1-CPU actors that fill
    the cluster deadlock the pipeline)."""
    if cpus_per_worker is not None:
        per = cpus_per_worker
    else:
        cpus = cluster_cpus()
        per = 1.0 if cpus >= 2 * workers + 1 else max(0.25, round(cpus / (workers + 1), 2))
    return {"CPU": per} | ({"GPU": 1.0} if use_gpu else {})


def worker_threads(workers: int, cpus_per_worker: float | None = None) -> int:
    """torch threads per Train worker: Ray pins workers to 1 thread; a job uses the CPUs it owns (all of them
    unless it was given a share, e.g. to run beside other trials)."""
    if cpus_per_worker is not None:
        return max(1, round(cpus_per_worker))
    return max(1, int(cluster_cpus() // workers))


def train_run_config(name: str, storage: str, keep: int = 1, max_failures: int = 1, callbacks: list | None = None):
    """RunConfig for fairray's Train jobs: same (storage, name) resumes; one worker-group restart on failure;
    Ray Train's own INFO chatter off (our rank-0 tick lines say what matters)."""
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig

    return RunConfig(name=name, storage_path=storage, checkpoint_config=CheckpointConfig(num_to_keep=keep),
                     failure_config=FailureConfig(max_failures=max_failures), callbacks=callbacks,
                     logging_config=LoggingConfig(log_level="WARNING"))


def autocast_kwargs(device: torch.device, precision: str = "auto") -> dict:
    """torch.autocast arguments for a training step. auto = bf16 on CUDA, and on CPUs with native bf16, where the
    DCGAN-32 step at one thread runs 1.6x the fp32 img/s (`benchmarks/gan_throughput.py --threads 1`); fp32
    elsewhere."""
    return {"device_type": device.type, "dtype": torch.bfloat16,
            "enabled": resolve_precision(device.type, precision) == "bf16"}


class TrainWorker(NamedTuple):
    rank: int
    world: int
    device: torch.device


def train_worker(config: dict) -> TrainWorker:
    """The top of every fairray train loop: Ray Train's INFO chatter off, torch threads set, rank/world/device."""
    import ray.train
    import ray.train.torch

    # Ray Train V2 logs every report and checkpoint at INFO through loggers named by file path, which
    # LoggingConfig does not reach.
    for name in list(logging.root.manager.loggerDict):
        if "ray/train" in name or name.startswith("ray.train"):
            logging.getLogger(name).setLevel(logging.WARNING)
    compute_setup(config["threads"])
    ctx = ray.train.get_context()
    return TrainWorker(ctx.get_world_rank(), ctx.get_world_size(), ray.train.torch.get_device())


def fit_torch(train_loop: Callable[[dict], None], config: dict, ray_cfg: Any, name: str, storage: Path,
              keep: int = 1, what: str = "training") -> Path:
    """Run (or, same name + storage, continue) fairray's Ray Train job; returns its last checkpoint directory.

    ray_cfg is a fairray RayConfig: address, workers (DDP ranks), device, cpus_per_worker."""
    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer

    from fairray.errors import FairrayError

    init_ray(ray_cfg.address)
    use_gpu = resolve_device(ray_cfg.device) == "cuda"
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={**config, "threads": worker_threads(ray_cfg.workers, ray_cfg.cpus_per_worker)},
        scaling_config=ScalingConfig(num_workers=ray_cfg.workers, use_gpu=use_gpu,
                                     resources_per_worker=worker_resources(ray_cfg.workers, use_gpu,
                                                                           ray_cfg.cpus_per_worker)),
        run_config=train_run_config(name, str(Path(storage).resolve()), keep=keep),
    )
    result = trainer.fit()
    if result.error is not None or result.checkpoint is None:
        raise FairrayError(f"{what} failed: {result.error}")
    return Path(result.checkpoint.path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
