"""One way to start or join Ray, with settings measured to work on small machines (ray-stack.md)."""

from __future__ import annotations

import logging
import os
import socket

import torch

# Set before Ray is imported anywhere in this process: no usage prompt, quiet output, working loggers.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "1")
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

import ray  # noqa: E402

log = logging.getLogger("fairray.ray")


def init_ray(address: str | None = None, num_cpus: int | None = None, object_store_mb: int = 512,
             dashboard: bool = True) -> None:
    """Join `address` (or $RAY_ADDRESS) when given, else start a local Ray; a no-op if already connected.

    The dashboard stays on by default: Train V2 polls the State API through it (without it, every run logs
    dozens of "State API may be temporarily unavailable" lines)."""
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
                 object_store_memory=object_store_mb * 2**20, **quiet)
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


def worker_resources(workers: int, use_gpu: bool) -> dict[str, float]:
    """CPU share per Train worker: leave room for Ray Data tasks on small clusters (1-CPU actors that fill
    the cluster deadlock the pipeline)."""
    cpus = cluster_cpus()
    per = 1.0 if cpus >= 2 * workers + 1 else max(0.25, round(cpus / (workers + 1), 2))
    return {"CPU": per} | ({"GPU": 1.0} if use_gpu else {})


def train_run_config(name: str, storage: str, keep: int = 1, max_failures: int = 1, callbacks: list | None = None):
    """RunConfig for fairray's Train jobs: same (storage, name) resumes; one worker-group restart on failure;
    Ray Train's own INFO chatter off (our rank-0 tick lines say what matters)."""
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig

    return RunConfig(name=name, storage_path=storage, checkpoint_config=CheckpointConfig(num_to_keep=keep),
                     failure_config=FailureConfig(max_failures=max_failures), callbacks=callbacks,
                     logging_config=LoggingConfig(log_level="WARNING"))


def quiet_train_worker() -> None:
    """Ray Train V2 logs every report and checkpoint at INFO through loggers named by file path, which
    LoggingConfig does not reach; call at the top of a train loop."""
    for name in list(logging.root.manager.loggerDict):
        if "ray/train" in name or name.startswith("ray.train"):
            logging.getLogger(name).setLevel(logging.WARNING)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
