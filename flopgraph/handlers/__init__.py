"""Handlers: adapters from one op's metadata to a formula, one file per family.

Importing this package fills :data:`DEFAULT`. To find where an op's rule
lives, look up its family: contractions (einsum and bilinear included),
elementwise, reductions, norms, pooling, attention, transformer (torch.nn's
Transformer modules), recurrent, misc (dropout, interpolation, embedding bags)
or free. Third-party ops live in files named after their library.
"""

import sys
from collections.abc import Callable

from ..registry import Registry
from . import (  # noqa: F401
    aten,
    aten_composite,
    attention,
    backward,
    contractions,
    elementwise,
    fft,
    free,
    misc,
    norms,
    pooling,
    quantized,
    recurrent,
    reductions,
    sampling,
    transformer,
)
from .context import OpContext
from .table import DEFAULT, forms

# built from the forward rules above: after all of them
backward.install(DEFAULT, lambda: DEFAULT)


def _torchvision(registry: Registry) -> None:
    from . import torchvision_ops

    torchvision_ops.install(registry)


# library name -> installer of its handlers, run once that library has been imported
_EXTENSIONS: dict[str, Callable[[Registry], None]] = {"torchvision": _torchvision}
_installed: set[str] = set()


def install_extensions() -> None:
    """Add handlers for third-party ops whose library the user has imported."""
    for name, installer in _EXTENSIONS.items():
        if name not in _installed and name in sys.modules:
            installer(DEFAULT)
            _installed.add(name)


__all__ = ["DEFAULT", "OpContext", "forms", "install_extensions"]
