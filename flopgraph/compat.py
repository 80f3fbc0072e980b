"""thop's ``profile`` and ``clever_format`` and fvcore's ``FlopCountAnalysis``, counted
by flopgraph: code written for either switches with one import.

``profile`` returns thop's pair, ``(macs, params)`` as floats, with flopgraph's exact
MACs. The numbers can differ from thop's, and flopgraph's are the spec's: thop hooks
modules, so a contraction written functionally (``x @ w``, ``F.linear``, ``torch.bmm``,
attention's two products) is missing from thop's count and present here, while thop
adds to its "MACs" work that multiplies nothing into an accumulator (``2 x numel``
per batch norm, ``4 x numel`` with an affine one, softmax, average pooling,
upsampling), which has no MACs here. Elementwise ops such as a residual add have no
MACs in either. ``FlopCountAnalysis`` counts with flopgraph's ``fvcore`` convention,
which reproduces fvcore's total exactly (one multiply-add is one "flop"). See
docs/integrations.md.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch

from .analyze import analyze
from .errors import SkippedOpWarning
from .handlers import DEFAULT
from .handlers.context import OpContext
from .presets.fvcore import NOT_COUNTED
from .records import Cost, OpRecord, Status, TensorMeta, dtype_from_name
from .registry import Target
from .report import Report

ThopHook = Callable[[Any, tuple[Any, ...], Any], None]
"""A thop rule: ``hook(module, inputs, output)`` adding to ``module.total_ops``."""
LayerInfo = dict[str, tuple[float, float, "LayerInfo"]]
"""thop's ``ret_layer_info``: child name -> (MACs, params, its own children)."""


# --- thop ----------------------------------------------------------------------------------


def profile(
    model: torch.nn.Module,
    inputs: Any,
    custom_ops: Mapping[type[torch.nn.Module], ThopHook] | None = None,
    verbose: bool = True,
    ret_layer_info: bool = False,
    report_missing: bool = False,
) -> tuple[float, float] | tuple[float, float, LayerInfo]:
    """``thop.profile``: ``(macs, params)`` of ``model`` on ``inputs`` (a tuple of
    positional inputs), as floats, in eval mode, as thop counts.

    ``custom_ops`` maps module classes to thop rules; each rule runs once per call of
    such a module on meta tensors of the call's shapes (no values) and a stand-in
    module whose ``total_ops`` it adds to, read as MACs (rounded to an integer); the
    module's insides are then not counted, as in thop. ``verbose`` and
    ``report_missing`` are accepted for thop's signature: flopgraph prints nothing, and
    warns of every op it has no rule for (``SkippedOpWarning``) either way. The model
    is left as it came, per-module training flags included."""
    del verbose, report_missing  # thop's printing options; see the docstring
    handlers: dict[Target, Callable[..., Any]] = {
        cls: _thop_handler(hook) for cls, hook in (custom_ops or {}).items()
    }
    with _eval_mode(model):
        report = analyze(model, inputs, handlers=handlers)
    macs, params = float(report.macs), float(report.params.total)
    if ret_layer_info:
        return macs, params, _layers(model, report, set(custom_ops or {}))
    return macs, params


def clever_format(nums: float | Iterable[float], format: str = "%.2f") -> str | tuple[str, ...]:
    """``thop.clever_format``: each number scaled to T, G, M or K (above 1e12, 1e9, 1e6,
    1e3) or suffixed B, formatted with ``format``; one string for one number, else a
    tuple. The same strings as thop's."""
    values = list(nums) if isinstance(nums, Iterable) else [nums]
    out = tuple(_clever(v, format) for v in values)
    return out[0] if len(out) == 1 else out


_SCALES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K"))


def _clever(num: float, fmt: str) -> str:
    for scale, suffix in _SCALES:
        if num > scale:
            return fmt % (num / scale) + suffix
    return fmt % num + "B"


@contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """The model in eval mode, as thop counts it, then every module's flag as it was
    (thop's ``model.train(previous)`` would reset a frozen batch norm's)."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in flags:
            m.training = training


class _HookTarget:
    """What a thop rule sees as its module: the user's module to read, with counters
    of its own, so that the rule's ``m.total_ops += ...`` never touches the module."""

    def __init__(self, module: torch.nn.Module) -> None:
        self._module = module
        self.total_ops: Any = torch.zeros(1, dtype=torch.float64)
        self.total_params: Any = torch.zeros(1, dtype=torch.float64)

    def __getattr__(self, name: str) -> Any:  # only for names not set above
        return getattr(self._module, name)


def _meta(value: Any) -> Any:
    """TensorMetas as meta tensors of their shape and dtype, in the value's structure."""
    if isinstance(value, TensorMeta):
        return torch.empty(value.shape, dtype=dtype_from_name(value.dtype), device="meta")
    if isinstance(value, (tuple, list)):
        return type(value)(_meta(v) for v in value)
    if isinstance(value, dict):
        return {k: _meta(v) for k, v in value.items()}
    return value


def _thop_handler(hook: ThopHook) -> Callable[[OpContext], Cost]:
    def handler(ctx: OpContext) -> Cost:
        target = _HookTarget(ctx.module) if ctx.module is not None else None
        hook(target, tuple(_meta(a) for a in ctx.args), _meta(ctx.out))
        total = target.total_ops if target is not None else 0
        macs = round(float(total.sum() if isinstance(total, torch.Tensor) else total))
        return Cost(macs, 2 * macs)  # a thop count is MACs: 2 FLOPs each

    handler.__qualname__ = getattr(hook, "__qualname__", "thop_rule")
    return handler


def _layers(model: torch.nn.Module, report: Report, custom: set[type]) -> LayerInfo:
    """thop's per-child tree from the report: MACs and parameters of each module and
    below; a module counted by a custom rule has no children listed, as in thop."""
    costs = report.by_module()
    params = {m.path: m.params for m in report.modules}

    def children(module: torch.nn.Module, path: str) -> LayerInfo:
        out: LayerInfo = {}
        for name, child in module.named_children():
            p = f"{path}.{name}" if path else name
            below = {} if type(child) in custom else children(child, p)
            out[name] = (float(costs.get(p, Cost()).macs), float(params.get(p, 0)), below)
        return out

    return children(model, "")


# --- fvcore --------------------------------------------------------------------------------

_NO_FORWARD = (torch.nn.ModuleList, torch.nn.ModuleDict, torch.nn.Module, torch.nn.Identity)
"""Module classes whose forward fvcore does not expect to be called (nor do we)."""


class FlopCountAnalysis:
    """fvcore's ``FlopCountAnalysis(model, inputs)``, counted by flopgraph's ``fvcore``
    convention: the same totals, per module and per operator, in fvcore's unit (one
    multiply-add is one "flop"; most non-contraction ops count 0). The model is traced
    on fake tensors, not with torch.jit, on the first query; ``report`` is the whole
    flopgraph report. Operator names are flopgraph's (``"softmax"``, not
    ``"aten::softmax"``); ``set_op_handle`` is not offered (flopgraph's handlers see
    shapes, not jit values: pass ``handlers=`` to :func:`flopgraph.analyze`)."""

    def __init__(self, model: torch.nn.Module, inputs: Any) -> None:
        self._model = model
        self._inputs = inputs
        self._report: Report | None = None
        self._warn_unsupported = True
        names = dict(model.named_modules(remove_duplicate=False))
        canonical = {id(m): path for path, m in model.named_modules()}
        self._aliases = {path: canonical[id(m)] for path, m in names.items()}

    @property
    def report(self) -> Report:
        """The flopgraph report the views are read from (made on first use)."""
        if self._report is None:
            with warnings.catch_warnings():
                if not self._warn_unsupported:
                    warnings.simplefilter("ignore", SkippedOpWarning)
                self._report = analyze(self._model, self._inputs, convention="fvcore")
        return self._report

    def total(self, module_name: str = "") -> int:
        """Flops of ``module_name`` and below ("": the model)."""
        return sum(r.flops for r in self._records(module_name))

    def by_operator(self, module_name: str = "") -> Counter[str]:
        """Operator -> flops in ``module_name`` and below; ops that count 0 are left
        out, as in fvcore."""
        out: Counter[str] = Counter()
        for r in self._records(module_name):
            if r.flops:
                out[r.op] += r.flops
        return out

    def by_module(self) -> Counter[str]:
        """Module name -> flops of it and below, for every module, called or not."""
        return Counter({path: cost.flops for path, cost in self.report.by_module().items()})

    def by_module_and_operator(self) -> dict[str, Counter[str]]:
        return {path: self.by_operator(path) for path in self.report.by_module()}

    def unsupported_ops(self, module_name: str = "") -> Counter[str]:
        """Operator -> calls in ``module_name`` and below that do arithmetic but count 0:
        ops fvcore has no handle for, and ops no flopgraph rule knows. Unlike fvcore,
        the ops on fvcore's silent ignore list (relu, clamp, max, ...) are listed too;
        ops that only move data (view, cat, ...) are not."""
        return Counter(r.op for r in self._records(module_name) if _unsupported(r))

    def uncalled_modules(self) -> set[str]:
        """Modules with a forward of their own that the traced call never ran."""
        modules = dict(self._model.named_modules())
        return {
            m.path
            for m in self.report.modules
            if m.calls == 0 and _has_forward(modules.get(m.path))
        }

    def unsupported_ops_warnings(self, enabled: bool) -> FlopCountAnalysis:
        """Whether the analysis warns of ops no rule knows (``SkippedOpWarning``)."""
        self._warn_unsupported = bool(enabled)
        return self

    def uncalled_modules_warnings(self, enabled: bool) -> FlopCountAnalysis:
        """Accepted for fvcore's chain: flopgraph never warns of uncalled modules."""
        del enabled
        return self

    def canonical_module_name(self, name: str) -> str:
        """The name a shared module is reported under (its first name)."""
        if not isinstance(name, str) or name not in self._aliases:
            raise KeyError(f"{name!r} is not the name of a module of {type(self._model).__name__}")
        return self._aliases[name]

    def _records(self, module_name: str) -> Iterator[OpRecord]:
        path = self.canonical_module_name(module_name)
        for r in self.report.records:
            if not path or r.module == path or r.module.startswith(path + "."):
                yield r


def _has_forward(module: torch.nn.Module | None) -> bool:
    return module is not None and all(type(module).forward is not c.forward for c in _NO_FORWARD)


_MOVES_DATA = frozenset(rule.name for _, rule in DEFAULT.items() if rule.is_free)
"""Op names the default convention counts as free (data movement, metadata)."""


def _unsupported(r: OpRecord) -> bool:
    if r.status is Status.SKIPPED:
        return True
    return r.reason == NOT_COUNTED.reason and r.op not in _MOVES_DATA


__all__ = ["FlopCountAnalysis", "clever_format", "profile"]
