"""flopgraph inside training frameworks: Lightning's throughput monitor and the Hugging
Face Trainer. Each name imports its framework on first use only, so importing flopgraph
(or this package) never imports lightning or transformers."""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .lightning import flops_per_batch
    from .transformers import FlopsCallback, StepFlops

_WHERE = {
    "FlopsCallback": ".transformers",
    "StepFlops": ".transformers",
    "flops_per_batch": ".lightning",
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'flopgraph.integrations' has no attribute {name!r}")
    value = getattr(importlib.import_module(where, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})


__all__ = ["FlopsCallback", "StepFlops", "flops_per_batch"]
