"""flopgraph: exact, operator-level FLOP and MAC counts for PyTorch models.

The model is traced into an op graph, shapes are propagated on data-less
tensors, and one handler per op counts it, so functional ops that module
hooks never see are included.
"""

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
    "generation",
    "part_of_model",
    "register",
    "utilization",
]
