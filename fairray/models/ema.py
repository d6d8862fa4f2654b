"""EMA of a generator's weights, on torch's own AveragedModel.

Parameters are averaged; buffers (BatchNorm running stats, spectral-norm u/v) are copied from the live model at
every update (`use_buffers=False` does exactly that), as StyleGAN does, so the EMA generator's normalisation
matches its training-time statistics. BigGAN/fairgen start averaging late (iteration 1000): before `start`
updates the EMA just copies, so early, bad weights do not linger in it.
"""

from __future__ import annotations

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def ema_model(model: nn.Module, decay: float = 0.999, start: int = 0) -> AveragedModel:
    """An EMA copy of `model`; call `.update_parameters(model)` after each optimizer step, use `.module`."""
    ema, copy = get_ema_multi_avg_fn(decay), get_ema_multi_avg_fn(0.0)

    def avg(ema_params, params, n_averaged) -> None:
        (ema if n_averaged.item() >= start else copy)(ema_params, params, n_averaged)

    return AveragedModel(model, multi_avg_fn=avg if start > 0 else ema, use_buffers=False)
