"""Alternate conventions: handler tables that reproduce other counters exactly.

A preset changes only the handler table, never the pipeline: both run on the
aten frontend's records, with the formulas of :mod:`flopgraph.formulas` where
the peer's arithmetic agrees with ours. See docs/conventions.md, "Presets".
"""

from .fvcore import FVCORE
from .torch import TORCH

__all__ = ["FVCORE", "TORCH"]
