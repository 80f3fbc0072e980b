"""Run the installed peer counters on the same model and input.

Peers need real tensors and run real arithmetic: each one gets its own deep
copy of the model (thop adds ``total_ops``/``total_params`` buffers to modules,
ptflops adds attributes and, on its aten backend, hooks it never removes), with
the user's hooks dropped from the copy, and a model on the meta device
materialised on the CPU with zeroed parameters. Inputs given as shapes become
CPU tensors (seeded normal values; integer inputs are zeros, valid indices).
Counts never depend on the values. A peer that is not installed, cannot take
the inputs, or crashes is reported with the reason; nothing is raised.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import inspect
import io
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import chain
from typing import Any

import torch
from torch import nn
from torch.fx.node import map_aggregate

from ..frontends.isolation import isolated
from ..report import Report
from .conventions import MODELS
from .results import Gap, GapKind, PeerResult, Unit, explain


@dataclass(frozen=True)
class PeerSpec:
    """How to run one peer and what its number means."""

    name: str
    package: str
    """The import that must be available."""
    unit: Unit
    mechanism: str
    run: Callable[[nn.Module, tuple[Any, ...], dict[str, Any]], int]


def _thop(model: nn.Module, args: tuple[Any, ...], kw: dict[str, Any]) -> int:
    import thop

    if kw:
        raise TypeError("thop.profile passes positional inputs only")
    ops, _ = thop.profile(model, inputs=args, verbose=False)
    return int(round(float(ops)))  # thop sums in float64: exact below 2**53


def _ptflops(backend: str) -> Callable[[nn.Module, tuple[Any, ...], dict[str, Any]], int]:
    def run(model: nn.Module, args: tuple[Any, ...], kw: dict[str, Any]) -> int:
        from ptflops import get_model_complexity_info

        # a dict of keyword inputs: ptflops calls model(**batch), and its batch
        # counter (which divides by the batch size) sees no positional input
        batch = _keywords(model, args, kw)
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            macs, _ = get_model_complexity_info(
                model, (1,), input_constructor=lambda _: batch, as_strings=False,
                print_per_layer_stat=False, backend=backend, ost=out,
            )  # fmt: skip
        if macs is None:  # ptflops prints its failure and returns None
            raise RuntimeError(f"ptflops returned no count: {_last_line(out.getvalue())}")
        return int(macs)

    return run


def _fvcore(model: nn.Module, args: tuple[Any, ...], kw: dict[str, Any]) -> int:
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(model, _positional(model, args, kw))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    return int(analysis.total())


def _flop_counter_mode(model: nn.Module, args: tuple[Any, ...], kw: dict[str, Any]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*args, **kw)
    return int(counter.get_total_flops())


PEERS: tuple[PeerSpec, ...] = (
    PeerSpec("thop", "thop", "MAC", "forward hooks, one rule per exact module type", _thop),
    PeerSpec(
        "ptflops (pytorch)", "ptflops", "MAC",
        "forward hooks plus patched torch.nn.functional and tensor functions",
        _ptflops("pytorch"),
    ),
    PeerSpec(
        "ptflops (aten)", "ptflops", "MAC",
        "aten ops under a dispatch mode: mm, bmm, addmm, convolution", _ptflops("aten"),
    ),
    PeerSpec("fvcore", "fvcore", "MAC", "torch.jit trace, handles for some aten ops", _fvcore),
    PeerSpec(
        "FlopCounterMode", "torch", "FLOP",
        "aten ops under a dispatch mode (torch.utils.flop_counter)", _flop_counter_mode,
    ),
)  # fmt: skip


def run_peers(
    model: nn.Module, args: tuple[Any, ...], kw: Mapping[str, Any], report: Report
) -> tuple[PeerResult, ...]:
    """Every peer's total and its labelled gaps to ``report`` (never raises). The
    user's global module hooks do not see the peers' copies (see frontends.isolation)."""
    with isolated():
        return tuple(run_peer(spec, model, args, kw, report) for spec in PEERS)


def run_peer(
    spec: PeerSpec, model: nn.Module, args: tuple[Any, ...], kw: Mapping[str, Any], report: Report
) -> PeerResult:
    base = PeerResult(spec.name, "ok", spec.mechanism, spec.unit, graph_flops=report.flops)
    if importlib.util.find_spec(spec.package) is None:
        return _with(base, status="missing", reason=f"{spec.package} is not installed")
    start = time.perf_counter()
    try:
        gen = torch.Generator().manual_seed(0)
        real_args = tuple(_real(a, gen) for a in args)
        real_kw = {k: _real(v, gen) for k, v in kw.items()}
        with _quiet():
            raw = spec.run(_copy(model), real_args, real_kw)
    except Exception as e:  # a peer's own failure on this model: reported, not raised
        return _with(base, status="failed", reason=f"{type(e).__name__}: {_first_line(str(e))}",
                     seconds=time.perf_counter() - start)  # fmt: skip
    seconds = time.perf_counter() - start
    try:
        gaps = explain(report.records, MODELS[spec.name](model), spec.unit, raw)
    except Exception as e:  # a rule flopgraph's model of the peer does not handle
        note = f"no breakdown ({type(e).__name__}: {_first_line(str(e))})"
        gaps = (Gap(GapKind.UNEXPLAINED, "", 0, report.flops, raw, note),)
    return _with(base, raw=raw, gaps=gaps, seconds=seconds)


def _with(result: PeerResult, **changes: Any) -> PeerResult:
    from dataclasses import replace

    return replace(result, **changes)


def _copy(model: nn.Module) -> nn.Module:
    """A deep copy a peer may change at will: no user hooks of any kind (forward,
    backward, state_dict, load_state_dict: the copies of the user's hook functions would
    still act on the user's objects), real (CPU) tensors."""
    clone = copy.deepcopy(model)
    for m in clone.modules():
        for name, value in list(vars(m).items()):
            if "hook" in name and isinstance(value, dict):
                setattr(m, name, OrderedDict())
    tensors = list(chain(clone.parameters(), clone.buffers()))
    if any(t.is_meta for t in tensors):
        clone.to_empty(device="cpu")
        with torch.no_grad():
            for t in chain(clone.parameters(), clone.buffers()):
                t.zero_()
    return clone


def _real(value: Any, gen: torch.Generator) -> Any:
    def one(v: Any) -> Any:
        if not isinstance(v, torch.Tensor):
            return v
        if v.device.type != "meta":
            return v.detach().clone()
        if v.dtype.is_floating_point or v.dtype.is_complex:
            return torch.randn(v.shape, dtype=v.dtype, generator=gen)
        return torch.zeros(v.shape, dtype=v.dtype)

    return map_aggregate(value, one)


def _keywords(model: nn.Module, args: tuple[Any, ...], kw: Mapping[str, Any]) -> dict[str, Any]:
    bound = inspect.signature(model.forward).bind(*args, **kw)
    return dict(bound.arguments)


def _positional(model: nn.Module, args: tuple[Any, ...], kw: Mapping[str, Any]) -> tuple[Any, ...]:
    if not kw:
        return args
    bound = inspect.signature(model.forward).bind(*args, **kw)
    bound.apply_defaults()
    return tuple(bound.arguments.values())


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Peers print and warn freely; keep that off the user's terminal."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[0] if lines else ""


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""
