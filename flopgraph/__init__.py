"""flopgraph: exact, operator-level FLOP and MAC counts for PyTorch models.

The model is traced into an op graph, shapes are propagated on data-less
tensors, and one handler per op counts it, so functional ops that module
hooks never see are included.
"""

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names below, imported on first use (PEP 562): see __getattr__
    from .analyze import analyze, register
    from .compare import Comparison, compare
    from .errors import (
        FlopgraphError,
        HandlerError,
        InputError,
        InternalError,
        PropagationError,
        RegistryError,
        SkippedOpWarning,
        TraceError,
        TrainingModeWarning,
    )
    from .frontends.model_hooks import part_of_model
    from .generation import Generation, Segment, StepFormula, generation
    from .handlers.context import OpContext
    from .inputs import TensorSpec
    from .mfu import PEAK_FLOPS, Utilization, utilization
    from .params import ParamStats
    from .records import Cost, OpRecord, Routing, SkippedOp, Status, TensorMeta
    from .report import FrontendInfo, ModuleInfo, Report
    from .step import StepInfo, StepMemory
    from .units import format

_WHERE: dict[str, str] = {
    "Comparison": ".compare",
    "Cost": ".records",
    "FlopgraphError": ".errors",
    "FrontendInfo": ".report",
    "Generation": ".generation",
    "HandlerError": ".errors",
    "InputError": ".errors",
    "InternalError": ".errors",
    "ModuleInfo": ".report",
    "OpContext": ".handlers.context",
    "OpRecord": ".records",
    "PEAK_FLOPS": ".mfu",
    "ParamStats": ".params",
    "PropagationError": ".errors",
    "RegistryError": ".errors",
    "Report": ".report",
    "Routing": ".records",
    "Segment": ".generation",
    "SkippedOp": ".records",
    "SkippedOpWarning": ".errors",
    "TrainingModeWarning": ".errors",
    "Status": ".records",
    "StepFormula": ".generation",
    "StepInfo": ".step",
    "StepMemory": ".step",
    "TensorMeta": ".records",
    "TensorSpec": ".inputs",
    "TraceError": ".errors",
    "Utilization": ".mfu",
    "analyze": ".analyze",
    "compare": ".compare",
    "format": ".units",
    "generation": ".generation",
    "part_of_model": ".frontends.model_hooks",
    "register": ".analyze",
    "utilization": ".mfu",
}
"""Public name -> the submodule defining it. Importing flopgraph imports none of them
(nor torch), so that ``flopgraph --help`` answers at once; the first use of a name
imports its module."""


_SUBMODULES = frozenset({"compat", "integrations"})
"""Submodules reachable as attributes before they are imported (``flopgraph.compat.
profile``); :mod:`flopgraph.integrations` imports lightning or transformers only when
one of its names is used."""


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)  # sets the attribute too
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'flopgraph' has no attribute {name!r}")
    value = getattr(importlib.import_module(where, __name__), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE, *_SUBMODULES})


_SAME_NAME = frozenset({"analyze", "compare", "generation"})
"""Functions that share their name with the submodule defining them."""


class _Package(types.ModuleType):
    """The package, whose ``analyze`` stays the function: importing the submodule
    ``flopgraph.analyze`` (which Python then sets as the package's attribute) must not
    replace it, as it did not when this file imported every name eagerly."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SAME_NAME and isinstance(value, types.ModuleType):
            value = getattr(value, name, value)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


__version__ = "0.1.0"

__all__ = [
    "Comparison",
    "Cost",
    "FlopgraphError",
    "FrontendInfo",
    "Generation",
    "HandlerError",
    "InputError",
    "InternalError",
    "ModuleInfo",
    "OpContext",
    "OpRecord",
    "PEAK_FLOPS",
    "ParamStats",
    "PropagationError",
    "RegistryError",
    "Report",
    "Routing",
    "Segment",
    "SkippedOp",
    "SkippedOpWarning",
    "TrainingModeWarning",
    "Status",
    "StepInfo",
    "StepFormula",
    "StepMemory",
    "TensorMeta",
    "TensorSpec",
    "TraceError",
    "Utilization",
    "__version__",
    "analyze",
    "compare",
    "format",
    "generation",
    "part_of_model",
    "register",
    "utilization",
]
