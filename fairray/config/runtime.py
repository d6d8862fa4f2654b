"""Sections every Ray + MLflow stage embeds: where it runs and where it logs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fairray.config.base import Cfg


class TrackingConfig(Cfg):
    uri: str | None = Field(None, description="MLflow tracking URI; default $MLFLOW_TRACKING_URI or <out>/mlflow.db")
    experiment: str = "fairray"
    enabled: bool = True


class RayConfig(Cfg):
    address: str | None = Field(None, description="Ray cluster address; default $RAY_ADDRESS or a local Ray")
    workers: int = Field(1, ge=1, description="Ray Train workers (DDP ranks)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    cpus_per_worker: float | None = Field(None, gt=0, description="CPUs each Train worker holds (and its torch "
                                          "threads); default: a share that leaves room for Ray Data, all threads")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="autocast of training and of the labeling actors: auto = bf16 on CUDA and on CPUs with "
                            "native bf16 (AVX512-BF16/AMX), else fp32")
