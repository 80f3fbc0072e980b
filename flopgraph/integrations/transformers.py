"""A Hugging Face ``Trainer`` callback that logs the exact FLOPs of every optimizer step,
and MFU, in place of the Trainer's estimate.

The Trainer estimates a step as ``6 x tokens x parameters`` (``Trainer.floating_point_ops``,
summed into ``state.total_flos``): attention's products, norms, activations, the loss and
the optimizer are not in it, and the embedding tables are counted as if they multiplied.
:class:`FlopsCallback` counts what the step runs, with flopgraph's training-step analysis
(``analyze(model, kwargs=batch, training=True, optimizer=...)``) on the batches the model
was called with: a forward pre-hook, placed for the length of ``train()``, notes each
training forward's inputs; at the step's end their FLOPs are summed, once per distinct
batch signature (shapes, dtypes, other arguments), and the step is timed from
``on_step_begin`` to ``on_step_end``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from transformers import TrainerCallback

from ..analyze import analyze
from ..mfu import Utilization, flops_utilization, peak_flops

Batch = tuple[tuple[Any, ...], dict[str, Any]]
"""One forward's positional and keyword inputs."""


@dataclass(frozen=True)
class StepFlops:
    """One optimizer step as the callback counted it."""

    step: int
    """``state.global_step`` after the step."""
    model_flops: int
    """Every micro-batch's forward, loss and backward, the gradients they add into the
    ones before them, and one optimizer step; activation checkpointing's recompute
    excluded (what MFU counts)."""
    hardware_flops: int
    """``model_flops`` plus the recompute (what HFU counts)."""
    batches: int
    """Forward calls in the step (micro-batches of gradient accumulation)."""
    seconds: float
    """Wall time from ``on_step_begin`` to ``on_step_end`` (devices synchronized)."""
    utilization: Utilization | None = None
    """MFU and HFU against the callback's peak; None without one."""


@dataclass(frozen=True)
class _Counted:
    """FLOPs of one batch signature: forward + backward, the optimizer step apart."""

    model: int
    hardware: int
    optimizer: int
    accumulate: int
    """Adds of a later micro-batch's gradients into the ones before it: one per element
    of every parameter that gets a gradient (taken as every trainable parameter)."""


class FlopsCallback(TrainerCallback):
    """Logs ``step_flops`` (exact model FLOPs of the last optimizer step),
    ``flops_per_second`` and, given a peak, ``mfu`` over the steps since the last log;
    ``steps`` keeps every step's :class:`StepFlops`.

    ``peak`` is one device's peak FLOP/s, or ``accelerator`` and ``dtype`` name one in
    :data:`flopgraph.PEAK_FLOPS`. ``loss(output)`` is the loss the step differentiates
    when the model's output has no ``loss`` (a custom ``compute_loss``); ``optimizer=False``
    leaves the optimizer step out. Counts are per device (each process counts its own
    batches)."""

    def __init__(
        self,
        *,
        peak: float | None = None,
        accelerator: str | None = None,
        dtype: str = "bfloat16",
        loss: Callable[[Any], torch.Tensor] | None = None,
        optimizer: bool = True,
    ) -> None:
        self.peak = float(peak) if peak is not None else None
        if self.peak is None and accelerator is not None:
            self.peak = float(peak_flops(accelerator, dtype))
        self.loss = loss
        self.optimizer = optimizer
        self.steps: list[StepFlops] = []
        self._seen: list[Batch] = []
        self._counted: dict[Any, _Counted] = {}
        self._hook: Any = None
        self._started = 0.0
        self._logged = 0

    @property
    def total_flops(self) -> int:
        """Model FLOPs of every step so far."""
        return sum(s.model_flops for s in self.steps)

    # --- the Trainer's events ----------------------------------------------------------

    def on_train_begin(
        self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any
    ) -> None:
        self._hook = model.register_forward_pre_hook(self._see, with_kwargs=True)

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def on_step_begin(
        self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any
    ) -> None:
        _synchronize(model)
        self._seen = []
        self._started = time.perf_counter()

    def on_step_end(
        self, args: Any, state: Any, control: Any, model: Any = None, optimizer: Any = None,
        **kw: Any,
    ) -> None:  # fmt: skip
        _synchronize(model)
        seconds = time.perf_counter() - self._started
        batches, self._seen = self._seen, []
        if not batches:
            return
        opt = getattr(optimizer, "optimizer", optimizer) if self.optimizer else None
        counts = [self._count(model, b, opt) for b in batches]
        extra = sum(c.accumulate for c in counts[1:]) + counts[-1].optimizer
        model_flops = sum(c.model for c in counts) + extra
        hardware_flops = sum(c.hardware for c in counts) + extra
        use = None
        if self.peak is not None and seconds > 0:
            use = flops_utilization(model_flops, hardware_flops, seconds, peak=self.peak)
        step = StepFlops(state.global_step, model_flops, hardware_flops, len(batches), seconds, use)
        self.steps.append(step)

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
        new, self._logged = self.steps[self._logged :], len(self.steps)
        if not new or logs is None:
            return
        seconds = sum(s.seconds for s in new)
        added: dict[str, float] = {"step_flops": new[-1].model_flops}
        if seconds > 0:
            added["flops_per_second"] = sum(s.model_flops for s in new) / seconds
            if self.peak is not None:
                added["mfu"] = added["flops_per_second"] / self.peak
        logs.update(added)
        # the Trainer copied the logs into its history before calling back
        history = state.log_history
        if history and history[-1].get("step") == state.global_step:
            history[-1].update(added)

    # --- counting ----------------------------------------------------------------------

    def _see(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """The forward pre-hook: notes a training forward's inputs (not evaluation's)."""
        if module.training and torch.is_grad_enabled():
            self._seen.append((args, dict(kwargs)))

    def _count(self, model: torch.nn.Module, batch: Batch, optimizer: Any) -> _Counted:
        key = (_signature(batch), optimizer is not None)
        if key not in self._counted:
            args, kwargs = batch
            report = analyze(
                model, args, kwargs=kwargs, training=True, loss=self.loss, optimizer=optimizer
            )
            phases = report.by_phase()
            opt = phases["optimizer"].flops if "optimizer" in phases else 0
            self._counted[key] = _Counted(
                report.model_flops - opt, report.hardware_flops - opt, opt,
                report.params.trainable,
            )  # fmt: skip
        return self._counted[key]


def _signature(value: Any) -> Any:
    """What a count depends on: tensors' shapes and dtypes, other values as they are."""
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), value.dtype, value.requires_grad)
    if isinstance(value, (tuple, list)):
        return (type(value).__name__, tuple(_signature(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple((k, _signature(v)) for k, v in value.items()))
    return (type(value).__name__, repr(value))


def _synchronize(model: Any) -> None:
    """Wait for the device's queued work, so that a step's time is its own."""
    p = next(model.parameters(), None) if model is not None else None
    if p is not None and p.device.type == "cuda":
        torch.cuda.synchronize(p.device)


__all__ = ["FlopsCallback", "StepFlops"]
