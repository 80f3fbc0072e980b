"""Handlers: adapters from one op's metadata to a formula, one file per family.

Importing this package fills :data:`DEFAULT`. To find where an op's rule
lives, look up its family: contractions, elementwise, reductions, norms,
pooling, misc (dropout, interpolation, embedding bags) or free.
"""

from . import contractions, elementwise, free, misc, norms, pooling, reductions  # noqa: F401
from .context import OpContext
from .table import DEFAULT, forms

__all__ = ["DEFAULT", "OpContext", "forms"]
