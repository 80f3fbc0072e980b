"""The one orchestrator: trace -> propagate shapes -> count -> Report."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

import torch

from .count import module_path
from .errors import InputError, SkippedOpWarning, TrainingModeWarning
from .frontends.capacity import ROUTING, ROUTINGS, RoutingPolicy
from .frontends.isolation import isolated
from .frontends.reuse import REUSE
from .handlers import DEFAULT, install_extensions
from .inputs import TensorSpec, normalize_inputs
from .moe import ExpertGroup, find_experts, routing_of
from .options import ATTENTIONS, Attention, counting, setting
from .params import ParamStats, module_param_counts
from .pipeline import Counted, Frontend, run, run_step, run_symbolic
from .presets import FVCORE, TORCH
from .progress import ProgressFn, no_progress
from .records import OpRecord, TensorMeta, changed
from .registry import Registry, Rule, Target, default_name
from .report import ModuleInfo, Report
from .symbolic import Sizes, symbolic_specs
from .tree import named_modules, walked

if TYPE_CHECKING:  # the training frontend is imported by the first training step
    from .frontends.training import OptimizerSpec

Convention = Literal["default", "fvcore", "torch"]

CONVENTIONS: dict[str, Registry] = {"default": DEFAULT, "fvcore": FVCORE, "torch": TORCH}


@walked
def analyze(
    model: torch.nn.Module,
    inputs: Any = None,
    *,
    kwargs: Mapping[str, Any] | None = None,
    convention: Convention = "default",
    frontend: Frontend = "auto",
    handlers: Mapping[Target, Callable[..., Any]] | None = None,
    progress: ProgressFn | None = None,
    training: bool = False,
    loss: Callable[[Any], torch.Tensor] | None = None,
    optimizer: OptimizerSpec | None = None,
    attention: Attention = "full",
    hints: Mapping[str, int] | None = None,
    reuse: bool = True,
    routing: RoutingPolicy = "bound",
) -> Report:
    """Count the exact MACs and FLOPs of ``model`` on ``inputs``, op by op.

    ``inputs`` is a tensor, a :class:`TensorSpec`, a shape tuple, or a tuple of
    positional inputs; ``kwargs`` holds keyword inputs. Only shapes and dtypes
    are used: no real arithmetic runs and the model is left exactly as it was
    (one exception: on the aten frontend, a forward whose control flow depends on
    tensor values runs for real on copies, if the inputs are real tensors; the
    report's ``frontend.real_run`` says so). ``frontend``: ``"auto"`` (fx, else
    aten), ``"fx"`` or ``"aten"``; ``convention``: ``"default"``, or ``"torch"`` /
    ``"fvcore"`` to reproduce FlopCounterMode's or fvcore's total.
    ``handlers`` maps call targets (module types, functions, tensor method
    names) to handlers for this call only. ``progress(stage, done, total)`` is
    told where a long analysis is (see :mod:`flopgraph.progress`).

    ``training=True`` counts one training step (spec section G): the forward, the
    loss (``loss(output)``; by default ``output.loss`` or the sum of a tensor output),
    its backward (gradients only for what requires grad; activation checkpointing's
    reruns as phase ``recompute``) and, with ``optimizer`` (``"sgd"``, ``"adam"``,
    ``"adamw"``, a callable building one from parameters, or an optimizer to copy),
    one optimizer step. Records carry their phase; see ``Report.by_phase``.

    ``attention="causal"`` counts a causal attention call (``is_causal=True``) over the
    unmasked triangle of its scores only, forward and backward (model FLOPs as MFU
    reports them); ``"full"`` (the default) counts the L x S square kernels compute.

    A TensorSpec size given as a name (``TensorSpec(("B", "T"), torch.int64)``) makes
    the analysis symbolic (spec section H): counts are exact formulas in the names,
    ``report.assumptions`` lists what the trace assumed, ``report.subs(B=8, T=512)``
    gives the concrete report. ``hints`` maps names to the values the trace follows
    where the code branches on a size (default 65, 67, ...).

    ``reuse``: on fake tensors, a block structurally identical to a sibling (the
    layers of a transformer) runs its forward once per distinct call and the other
    calls replay its records (see :mod:`flopgraph.frontends.reuse`); False runs every
    call. The counts are the same either way.

    ``routing``: a router with an expert capacity (Switch Transformers, NLLB-MoE) drops
    tokens depending on the routing, so by default (``"bound"``) the real run counts
    the most any routing can make the experts do, its choices spread evenly (see
    :mod:`flopgraph.frontends.capacity`); ``"taken"`` counts the routing the run
    chooses. Models without such a router count the same either way.
    """
    progress = progress or no_progress
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    registry = _registry(convention, handlers)
    args, kw = normalize_inputs(inputs, kwargs)
    if not training and (loss is not None or optimizer is not None):
        raise InputError("loss and optimizer describe a training step: pass training=True")
    if attention not in ATTENTIONS:
        raise InputError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
    if routing not in ROUTINGS:
        raise InputError(f"routing must be one of {ROUTINGS}, got {routing!r}")
    if symbolic_specs(args, kw):
        if training:
            raise InputError("symbolic sizes count a forward: training=True needs concrete sizes")
        return _symbolic(model, args, kw, registry, convention, frontend, attention, hints)
    if hints:
        raise InputError("hints are for symbolic sizes: name a size in a TensorSpec")
    _check_positions(model, args, kw)
    # isolated(): one analysis at a time
    with (
        isolated(),
        _gc_paused(),
        counting(attention),
        setting(REUSE, reuse),
        setting(ROUTING, routing),
    ):
        if training:
            counted = run_step(model, args, kw, registry, frontend, loss, optimizer)
        else:
            counted = run(model, args, kw, registry, frontend, progress)
    report = _report(
        model, convention, counted, tuple(_input_metas(args, kw)), attention,
        step=None if counted.step is None else replace(counted.step, attention=attention),
    )  # fmt: skip
    _warn_skipped(report)
    if not training:
        _warn_training_mode(model)
    return report


def _symbolic(
    model: torch.nn.Module,
    args: tuple[Any, ...],
    kw: dict[str, Any],
    registry: Registry,
    convention: str,
    frontend: Frontend,
    attention: Attention,
    hints: Mapping[str, int] | None,
) -> Report:
    from .frontends.aten import _device_of

    sizes = Sizes(hints)
    device, _ = _device_of(model)
    specs = [v for v in (*args, *kw.values()) if isinstance(v, TensorSpec)]

    def made(v: Any) -> Any:
        return sizes.tensor(v, device) if isinstance(v, TensorSpec) else v

    args = tuple(made(a) for a in args)
    kw = {k: made(v) for k, v in kw.items()}
    with isolated(), _gc_paused(), counting(attention):
        counted = run_symbolic(model, args, kw, registry, frontend, sizes.mode)
    counted = replace(
        counted,
        records=tuple(sizes.record(r) for r in counted.records),
        module_outputs={p: tuple(map(sizes.meta, o)) for p, o in counted.module_outputs.items()},
    )
    report = _report(
        model, convention, counted, tuple(sizes.meta(m) for m in _input_metas(args, kw)),
        attention, symbols=tuple(str(s) for s in sizes.names.values()),
        assumptions=sizes.assumptions() + _position_limits(model, specs),
    )  # fmt: skip
    _warn_skipped(report)
    _warn_training_mode(model)
    return report


_POSITION_TABLES = ("max_position_embeddings", "n_positions", "max_seq_len")


def _position_table(model: torch.nn.Module) -> tuple[str, int] | None:
    """(path, rows) of the model's position table: an embedding with as many rows as
    its config's position count (GPT-2's ``transformer.wpe``); None for rotary or
    relative positions, where the config's length is no table."""
    config = getattr(model, "config", None)
    limit = next(
        (v for k in _POSITION_TABLES if isinstance(v := getattr(config, k, None), int)), None
    )
    if limit is None:
        return None
    for path, m in named_modules(model).items():
        if isinstance(m, torch.nn.Embedding) and m.num_embeddings == limit:
            return path, limit
    return None


def _token_lengths(values: Iterable[Any]) -> list[Any]:
    """The lengths of the token sequences among the inputs (int tensors or specs of 2
    dims: [batch, tokens])."""
    out = []
    for v in values:
        if isinstance(v, (torch.Tensor, TensorSpec)) and not v.dtype.is_floating_point:
            if len(v.shape) == 2:
                out.append(v.shape[-1])
    return out


def _position_limits(model: torch.nn.Module, specs: list[TensorSpec]) -> tuple[str, ...]:
    """``T <= 1024`` for a token sequence whose length is a symbol, when the model has
    a position table: positions past it are not in the table (a lookup the trace cannot
    check on fake tensors)."""
    table = _position_table(model)
    if table is None:
        return ()
    names = {t for t in _token_lengths(specs) if isinstance(t, str)}
    return tuple(f"{t} <= {table[1]}" for t in sorted(names))


def _check_positions(model: torch.nn.Module, args: tuple[Any, ...], kw: Mapping[str, Any]) -> None:
    """An InputError for token sequences longer than the model's position table (a real
    forward fails on the lookup; fake tensors cannot see it)."""
    table = _position_table(model)
    if table is None:
        return
    for length in _token_lengths((*args, *kw.values())):
        if isinstance(length, int) and length > table[1]:
            raise InputError(
                f"{type(model).__name__}: a sequence of {length:,} tokens is longer than its "
                f"position table {table[0]!r} ({table[1]:,} positions); a real forward would "
                "fail on the lookup"
            )


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a model is traced and counted.

    An analysis allocates tens of thousands of small objects (nodes, fake tensors,
    records); each allocation burst triggers a collection that walks every live
    object, the model's included, which cost 15-20% of the time on a 70B-shaped
    model. Reference counting still frees everything that is not in a cycle; the
    collector runs again as usual once the analysis returns (or fails).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _registry(convention: str, handlers: Mapping[Target, Callable[..., Any]] | None) -> Registry:
    install_extensions()
    base = CONVENTIONS.get(convention)
    if base is None:
        raise InputError(f"unknown convention {convention!r}; known: {', '.join(CONVENTIONS)}")
    reg = base.copy()
    if handlers:
        if not isinstance(handlers, Mapping):
            raise InputError(
                f"handlers must map targets to handlers, got {type(handlers).__name__}"
            )
        for target, fn in handlers.items():
            if not callable(fn):
                raise InputError(f"handler for {target!r} is not callable: {fn!r}")
            reg.override([target], Rule(default_name(target), fn, user=True))
    return reg


def register(*targets: Target, name: str | None = None) -> Callable[[Any], Any]:
    """Decorator: count ``targets`` with the decorated handler in every later analysis
    (default convention). For a single call use ``analyze(..., handlers=...)``."""

    def deco(fn: Any) -> Any:
        DEFAULT.override(targets, Rule(name or default_name(targets[0]), fn, user=True))
        return fn

    if not targets:
        raise InputError("register() needs at least one target")
    return deco


def _report(
    model: torch.nn.Module,
    convention: str,
    counted: Counted,
    inputs: tuple[TensorMeta, ...],
    attention: Attention,
    **extra: Any,
) -> Report:
    """The Report of a count: what every analysis reports, and ``extra`` fields."""
    experts = find_experts(model)
    return Report(
        model=type(model).__name__,
        convention=convention,
        frontend=counted.frontend,
        inputs=inputs,
        records=_mark_routed(counted.records, experts),
        params=ParamStats.of(model, experts),
        modules=_modules(model, counted.module_calls, counted.module_outputs),
        attention=attention,
        mode="train" if model.training else "eval",
        **extra,
    )


def _mark_routed(
    records: tuple[OpRecord, ...], experts: tuple[ExpertGroup, ...]
) -> tuple[OpRecord, ...]:
    """Records of ops inside routed-expert containers, marked with their routing."""
    if not experts:
        return records
    table = {g.path: g.routing for g in experts}
    out = []
    for r in records:
        routing = routing_of(r.module, table)
        out.append(r if routing is None else changed(r, routing=routing))
    return tuple(out)


def _input_metas(args: tuple[Any, ...], kw: Mapping[str, Any]) -> list[TensorMeta]:
    return [TensorMeta.of(v) for v in (*args, *kw.values()) if isinstance(v, torch.Tensor)]


def _modules(
    model: torch.nn.Module,
    calls: Mapping[str, int],
    outputs: Mapping[str, tuple[TensorMeta, ...]],
) -> tuple[ModuleInfo, ...]:
    counts = module_param_counts(model)
    return tuple(
        ModuleInfo(
            path,
            type(m).__name__,
            counts[path],
            calls.get(path, 0) or int(not path),
            outputs.get(path, ()),
        )
        for path, m in named_modules(model).items()
    )


_MODE_DEPENDENT = (torch.nn.modules.dropout._DropoutNd, torch.nn.modules.batchnorm._BatchNorm)


def _warn_training_mode(model: torch.nn.Module) -> None:
    """Once per call: a forward counted in training mode, with modules that count
    differently there (dropout's mask, batch norm's batch statistics)."""
    if not model.training:
        return
    kinds = sorted(
        {
            type(m).__name__
            for m in named_modules(model).values()
            if m.training and isinstance(m, _MODE_DEPENDENT)
        }
    )
    if kinds:
        warnings.warn(
            TrainingModeWarning(
                f"{type(model).__name__} is in training mode: {', '.join(kinds[:3])} count as in "
                "training (dropout masks, batch statistics). Call model.eval() for an inference "
                "count, or pass training=True to count a whole training step."
            ),
            stacklevel=3,
        )


def _warn_skipped(report: Report) -> None:
    for op, info in report.skipped.items():
        places = sorted({w or "<root>" for w in info.where})
        shown = ", ".join(places[:3]) + (", ..." if len(places) > 3 else "")
        warnings.warn(
            SkippedOpWarning(
                f"Skipped operation {op} {info.count} time(s) (no handler; counted as 0) in {shown}"
            ),
            stacklevel=3,
        )


__all__ = ["analyze", "register", "CONVENTIONS", "module_path", "OpRecord"]
