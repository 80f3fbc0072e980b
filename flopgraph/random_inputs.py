"""Random real tensors for the command line's ``--real``.

A model whose control flow or output shapes depend on tensor values (a detection
model's box filtering, a loop that runs until a value converges) cannot be
counted from shapes alone: the aten frontend then runs its forward for real, on
copies of the weights, which needs real inputs (see :mod:`.frontends.aten`). The
command line has only shapes, so ``--real`` makes tensors of those shapes, the
same on every run:

- made on the CPU from one generator seeded with :data:`SEED`, in the order the
  inputs were given (positional, then named), then moved to the model's device;
- floating and complex dtypes: standard normal values; ``bool``: random bits;
- integers are token ids or indices, so they stay valid: the first integer input
  (the token ids) draws below the vocabulary size, the ``num_embeddings`` of the
  model's first ``nn.Embedding``; every other integer input (an attention mask,
  token type ids, positions), and every integer input of a model without an
  embedding, draws 0 or 1, valid as a mask, a type id, a position or an index.

The counts are those of the branch these values take (the report says ``real
run``); a model that needs no values counts as from its shapes.
"""

from __future__ import annotations

import torch

from .errors import UsageError
from .inputs import TensorSpec
from .loading import Inputs

SEED = 0
"""The seed of the generator every ``--real`` input is drawn from."""
_SMALL = 2
"""Integer inputs other than the token ids draw from ``range(_SMALL)``: 0 or 1."""


def random_inputs(model: torch.nn.Module, inputs: Inputs) -> Inputs:
    """``inputs`` with each TensorSpec replaced by a random real tensor of its shape
    and dtype (see the module's docstring for the values)."""
    device = _device_of(model)
    generator = torch.Generator().manual_seed(SEED)
    vocab = _vocabulary(model)
    first_int = True

    def make(label: str, spec: TensorSpec | torch.Tensor) -> torch.Tensor:
        nonlocal first_int
        if isinstance(spec, torch.Tensor):  # already real
            return spec
        high = _SMALL
        if _is_integer(spec.dtype):
            high = vocab if first_int and vocab else _SMALL
            first_int = False
        return _tensor(label, spec, generator, high).to(device)

    args = tuple(make(f"input {i + 1}", s) for i, s in enumerate(inputs.args))
    kwargs = {name: make(f"input {name!r}", s) for name, s in inputs.kwargs.items()}
    return Inputs(args, kwargs)


def _device_of(model: torch.nn.Module) -> torch.device:
    """Where the model's weights are; a model without data cannot run for real."""
    for t in (*model.parameters(), *model.buffers()):
        if t.device.type == "meta":
            raise UsageError(
                "--real runs the forward for real, which needs the model's weights: "
                "build it without --device meta"
            )
        return t.device
    return torch.device("cpu")


def _vocabulary(model: torch.nn.Module) -> int | None:
    """The first ``nn.Embedding``'s ``num_embeddings``: the token ids' range."""
    for m in model.modules():
        if isinstance(m, torch.nn.Embedding):
            return int(m.num_embeddings)
    return None


def _is_integer(dtype: torch.dtype) -> bool:
    return not (dtype.is_floating_point or dtype.is_complex or dtype is torch.bool)


def _tensor(label: str, spec: TensorSpec, generator: torch.Generator, high: int) -> torch.Tensor:
    if spec.symbolic:
        raise UsageError(
            f"--real makes tensors of given sizes: {label} has named sizes "
            f"({'x'.join(map(str, spec.shape))})"
        )
    shape: tuple[int, ...] = spec.shape  # type: ignore[assignment]
    dtype = spec.dtype
    try:
        if dtype is torch.bool:
            return torch.randint(0, 2, shape, generator=generator).bool()
        if _is_integer(dtype):
            return torch.randint(0, high, shape, generator=generator).to(dtype)
        if dtype.is_complex:
            return torch.randn(shape, generator=generator, dtype=torch.complex64).to(dtype)
        return torch.randn(shape, generator=generator).to(dtype)
    except (RuntimeError, MemoryError, OverflowError) as e:  # too large for this machine
        lines = str(e).strip().splitlines()
        raise UsageError(
            f"--real could not make {label} ({str(dtype).removeprefix('torch.')} "
            f"{'x'.join(map(str, shape))}): {type(e).__name__}: {lines[0] if lines else ''}"
        ) from e
