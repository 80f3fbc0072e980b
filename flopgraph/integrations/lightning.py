"""``flops_per_batch`` for Lightning's throughput monitor, counted by flopgraph.

``lightning.pytorch.callbacks.ThroughputMonitor`` reads a ``flops_per_batch`` attribute
of the LightningModule on every batch (``lightning.fabric.utilities.throughput.
Throughput.update(flops=...)`` takes the same number) and divides it by the measured
time and the device's peak for MFU. Lightning suggests ``measure_flops``, which runs
the model under torch's FlopCounterMode: contractions only, so a model's norms,
activations, softmax, loss and optimizer step are missing from its MFU. This counts
every op of the step, exactly, from shapes (nothing runs), and needs no import of
lightning.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from ..analyze import Convention, analyze
from ..errors import InputError
from ..frontends.training import OptimizerSpec
from ..options import Attention


def flops_per_batch(
    model: torch.nn.Module,
    inputs: Any = None,
    *,
    kwargs: Mapping[str, Any] | None = None,
    training: bool = True,
    loss: Callable[[Any], torch.Tensor] | None = None,
    optimizer: OptimizerSpec | None = None,
    convention: Convention = "default",
    attention: Attention = "full",
) -> int:
    """Model FLOPs of one batch on one device: by default a whole training step (the
    forward, ``loss(output)`` or the default loss of :func:`flopgraph.analyze`, its
    backward and, with ``optimizer``, one optimizer step); ``training=False`` counts
    the forward alone. ``inputs``/``kwargs`` are one device's batch as the model's
    forward takes it (tensors, shapes or TensorSpecs). ``convention="torch"`` gives
    what ``measure_flops`` (FlopCounterMode) gives. Activation checkpointing's
    recompute is left out, as MFU counts (``Report.model_flops``)."""
    report = analyze(
        model, inputs, kwargs=kwargs, training=training, loss=loss, optimizer=optimizer,
        convention=convention, attention=attention,
    )  # fmt: skip
    if report.symbols:
        raise InputError("flops_per_batch needs concrete sizes: the batch is one number")
    return int(report.model_flops)


__all__ = ["flops_per_batch"]
