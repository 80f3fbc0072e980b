"""What a training analysis reports besides its records: the step's make-up and memory."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StepMemory:
    """Bytes of live tensors at the step's peak, measured on the fake tensors.

    ``peak`` is the largest total of live tensor storages at any op of the step
    (forward, backward, optimizer); the four parts say what was live at that moment.
    Views share their base's storage and count once."""

    peak: int
    parameters: int
    """Parameters and buffers of the model."""
    gradients: int
    """``.grad`` of the parameters (and of inputs that require grad)."""
    optimizer_state: int
    """Tensors the optimizer keeps per parameter (momentum, Adam's moments)."""
    activations: int
    """Everything else: activations saved for backward, temporaries, gradients in flight."""
    at: str
    """The op at which the peak was reached (``phase:op``)."""

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StepMemory:
        return cls(
            peak=int(d["peak"]), parameters=int(d["parameters"]), gradients=int(d["gradients"]),
            optimizer_state=int(d["optimizer_state"]), activations=int(d["activations"]),
            at=str(d["at"]),
        )  # fmt: skip


@dataclass(frozen=True)
class StepInfo:
    """How one training step was made up."""

    loss: str
    """What the loss was: ``"output.loss"``, ``"output.sum()"`` or the callable's name."""
    optimizer: str
    """The optimizer class that ran its step (``"AdamW"``), or ``""`` for none."""
    attention: str
    """How causal attention scores were counted: ``"full"`` (the dense L x S matrix
    kernels compute) or ``"causal"`` (the unmasked triangle only)."""
    memory: StepMemory | None = None
    note: str = ""
    """What a reader should know (a model left in eval mode, a checkpointed segment)."""

    def to_dict(self) -> dict[str, Any]:
        d = dict(vars(self))
        d["memory"] = None if self.memory is None else self.memory.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StepInfo:
        memory = d.get("memory")
        return cls(
            str(d["loss"]), str(d["optimizer"]), str(d["attention"]),
            StepMemory.from_dict(memory) if memory else None, str(d.get("note", "")),
        )  # fmt: skip
