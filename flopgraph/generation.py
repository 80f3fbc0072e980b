"""Prefill and decode: what generating K tokens after a P-token prompt costs.

Spec section H: prefill of P tokens is the forward of P tokens; a decode step with c
tokens already in the key/value cache is the forward of the new token with attention
over c + 1 positions; a generation is the prefill plus its K decode steps, exactly.

Each analysis runs the model's own cache code on fake tensors: a small wrapper runs
the forward of c tokens (which fills the cache the model itself creates, sliding
windows and latent attention included), one marker op, then the forward of the new
token with that cache. The records after the marker are the decode step.

A decode step's cost is a function of c: every op but attention's reads of the cache
is the same at every c, and a layer with a sliding window of W reads at most W
positions. So the cost is affine in c between the points where a window fills
(c = W - 1, where transformers also starts passing the window's mask): one segment
``constant + per_token * c`` from c = 1 and one from each window's cap. Each segment
is fitted from analyses at its first two lengths and checked at three others
(:func:`_checks`); a model whose cost does not follow it (chunked attention, whose
span is periodic in c) is refused with the length where it differs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from typing import Any

import torch

from .errors import FlopgraphError, InputError
from .frontends.reuse import WHOLE_CACHE
from .inputs import TensorSpec
from .moe import find_experts
from .options import setting
from .params import ParamStats
from .records import Cost, OpRecord, TensorMeta, changed
from .report import FrontendInfo, ModuleInfo, Report

_WRAPPED = "model"
"""The user's model's attribute name in the wrapper: its module paths start with it."""


@dataclass(frozen=True)
class Segment:
    """``constant + per_token * c`` for cache lengths c from ``start`` on (until the
    next segment's start)."""

    start: int
    constant: Cost
    """What the step costs apart from reading the cache: the weights, norms, the new
    token's own position, and what a window's full cache reads."""
    per_token: Cost
    """Attention over the cache: the cost of one more cached position."""

    def at(self, c: int) -> Cost:
        return Cost(
            self.constant.macs + self.per_token.macs * c,
            self.constant.flops + self.per_token.flops * c,
        )


@dataclass(frozen=True)
class StepFormula:
    """An exact function of the cache length c (c >= 1), affine between the points
    where a sliding window fills."""

    segments: tuple[Segment, ...]

    def segment(self, c: int) -> Segment:
        return next(s for s in reversed(self.segments) if c >= s.start)

    def __call__(self, c: int) -> Cost:
        return self.segment(c).at(c)

    def sum(self, first: int, steps: int) -> Cost:
        """The exact sum of the values at c = first, first + 1, ..., first + steps - 1."""
        macs = flops = 0
        end = first + steps
        for i, s in enumerate(self.segments):
            stop = self.segments[i + 1].start if i + 1 < len(self.segments) else end
            lo, hi = max(first, s.start), min(end, stop)
            if lo >= hi:
                continue
            n, cs = hi - lo, (lo + hi - 1) * (hi - lo) // 2  # count and sum of c
            macs += s.constant.macs * n + s.per_token.macs * cs
            flops += s.constant.flops * n + s.per_token.flops * cs
        return Cost(macs, flops)

    def describe(self, what: str = "flops") -> str:
        """The formula in words, e.g. ``1,234 + 96*c (c < 4095); 394,354 (c >= 4095)``."""
        parts = []
        for i, s in enumerate(self.segments):
            k, a = getattr(s.per_token, what), getattr(s.constant, what)
            text = f"{a:,}" + (f" + {k:,}*c" if k else "")
            if len(self.segments) > 1:
                nxt = self.segments[i + 1].start if i + 1 < len(self.segments) else None
                text += f" ({s.start:,} <= c < {nxt:,})" if nxt else f" (c >= {s.start:,})"
            parts.append(text)
        return "; ".join(parts)


@dataclass(frozen=True)
class Generation:
    """The cost of a generation: prefill, each decode step, and their exact total."""

    model: str
    prompt: int
    """P: prompt tokens per sequence."""
    new_tokens: int
    """K: decode steps (one generated token per sequence each)."""
    batch: int
    prefill: Report
    """The forward of the P-token prompt (which fills the cache)."""
    formula: StepFormula
    """A decode step's cost as a function of the cache length c."""
    cache_bytes: StepFormula
    """Bytes the model's cache holds with c tokens in it, as ``flops`` of a formula
    in c of the same form (``macs`` 0)."""
    _decode: Callable[[int], Report] = field(repr=False, compare=False)

    def decode(self, c: int) -> Report:
        """The Report of one decode step with ``c`` tokens already in the cache."""
        if not isinstance(c, int) or isinstance(c, bool) or c < 1:
            raise InputError(f"the cache length c must be an int >= 1, got {c!r}")
        return self._decode(c)

    @property
    def decode_total(self) -> Cost:
        """The K decode steps, at c = P, P + 1, ..., P + K - 1."""
        return self.formula.sum(self.prompt, self.new_tokens)

    @property
    def total(self) -> Cost:
        """Prefill plus the K decode steps, exact."""
        return self.prefill.cost + self.decode_total

    @property
    def per_token(self) -> Fraction:
        """FLOPs per generated token (the total over batch x K tokens), exact."""
        return Fraction(self.total.flops, self.batch * self.new_tokens)

    def to_dict(self) -> dict[str, Any]:
        """Plain data: the sizes, prefill and total costs, both formulas by segment."""

        def segments(f: StepFormula, key: str) -> list[dict[str, int]]:
            return [
                {"start": s.start, f"constant_{key}": getattr(s.constant, key),
                 f"per_token_{key}": getattr(s.per_token, key)}
                for s in f.segments
            ]  # fmt: skip

        first, last = self.prompt, self.prompt + self.new_tokens - 1
        return {
            "model": self.model,
            "prompt": self.prompt,
            "new_tokens": self.new_tokens,
            "batch": self.batch,
            "prefill": {"macs": self.prefill.macs, "flops": self.prefill.flops},
            "decode": {"macs": self.decode_total.macs, "flops": self.decode_total.flops},
            "total": {"macs": self.total.macs, "flops": self.total.flops},
            "per_token_flops": str(self.per_token),
            "decode_step_flops": segments(self.formula, "flops"),
            "decode_step_macs": segments(self.formula, "macs"),
            "kv_cache_bytes": segments(self.cache_bytes, "flops"),
            "kv_cache_bytes_at": {str(first): self.kv_cache_bytes(first),
                                  str(last): self.kv_cache_bytes(last)},
        }  # fmt: skip

    def kv_cache_bytes(self, c: int) -> int:
        """Bytes of the model's cache holding ``c`` tokens per sequence (all layers,
        keys and values, at the model's dtype; a sliding window keeps W - 1)."""
        if not isinstance(c, int) or isinstance(c, bool) or c < 1:
            raise InputError(f"the cache length c must be an int >= 1, got {c!r}")
        return self.cache_bytes(c).flops


def generation(
    model: torch.nn.Module,
    prompt: int,
    new_tokens: int = 1,
    batch: int = 1,
    *,
    convention: str = "default",
    reuse: bool = True,
) -> Generation:
    """Count prefill and decode of a causal language model with its own cache code.

    ``model`` is a transformers causal LM (any device, ``meta`` included; never run
    for real). ``prompt`` P, ``new_tokens`` K and ``batch`` B are ints >= 1. Returns a
    :class:`Generation`: ``.prefill`` (Report), ``.decode(c)`` (Report), ``.formula``
    (the decode step in c), ``.total`` (prefill + K steps), ``.per_token``,
    ``.kv_cache_bytes(c)``. ``reuse``: as :func:`flopgraph.analyze`'s (repeated
    layers traced once, their cache writes replayed); False runs every layer.
    """
    from .analyze import CONVENTIONS  # the orchestrator imports this module's users

    for name, v in (("prompt", prompt), ("new_tokens", new_tokens), ("batch", batch)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise InputError(f"{name} must be an int >= 1, got {v!r}")
    if convention not in CONVENTIONS:
        raise InputError(f"unknown convention {convention!r}; known: {', '.join(CONVENTIONS)}")
    key = _cache_argument(model)
    steps = _Steps(model, key, batch, convention, reuse)
    prefill, _, _ = steps.at(prompt)
    formula, cache = _fit(steps, _caps(model))
    return Generation(
        type(model).__name__, prompt, new_tokens, batch, prefill, formula, cache,
        lambda c: steps.at(c)[1],
    )  # fmt: skip


class _Decode(torch.nn.Module):
    """Runs the wrapped model on c tokens (filling its cache), a marker, then on the
    new token with that cache. ``seen`` receives the cache's bytes after the c tokens."""

    def __init__(self, model: torch.nn.Module, key: str, seen: list[int]) -> None:
        super().__init__()
        self.model = model
        self.key = key
        self.seen = seen

    def forward(self, context: torch.Tensor, new: torch.Tensor) -> Any:
        out = self.model(input_ids=context, use_cache=True)
        cache = _cache_of(out)
        if cache is None:
            raise InputError(f"{type(self.model).__name__} returned no cache with use_cache=True")
        self.seen.append(_nbytes(cache))
        torch.empty(0)  # the marker: the wrapper's only op, between the two forwards
        return self.model(input_ids=new, use_cache=True, **{self.key: cache})


class _Steps:
    """Analyses of (prefill of c tokens, decode step at c), each c once."""

    def __init__(
        self, model: torch.nn.Module, key: str, batch: int, convention: str, reuse: bool = True
    ) -> None:
        self.model, self.key, self.batch, self.convention = model, key, batch, convention
        self.reuse = reuse
        self.params = ParamStats.of(model, find_experts(model))  # the same at every c
        self.at = lru_cache(maxsize=None)(self._at)

    def _at(self, c: int) -> tuple[Report, Report, int]:
        from .analyze import analyze

        seen: list[int] = []
        wrapper = _Decode(self.model, self.key, seen)
        ids = (TensorSpec((self.batch, c), torch.int64), TensorSpec((self.batch, 1), torch.int64))
        try:
            with setting(WHOLE_CACHE, True):  # the step reads every layer the prefill wrote
                whole = analyze(
                    wrapper,  # type: ignore[arg-type]
                    ids,
                    frontend="aten",
                    convention=self.convention,  # type: ignore[arg-type]
                    reuse=self.reuse,
                )
        except FlopgraphError as e:
            text = str(e).replace(f"{_Decode.__name__}.forward", f"{type(self.model).__name__}")
            message = f"generation() with {c:,} tokens in the cache: " + text.replace(
                _WRAPPED + ".", ""
            )
            try:
                error = type(e)(message)
            except TypeError:  # an error class with other arguments
                error = FlopgraphError(message)
            raise error from e
        marker = max(i for i, r in enumerate(whole.records) if r.module == "")
        return (
            self._report(whole, whole.records[:marker], ids[0], decode=False),
            self._report(whole, whole.records[marker + 1 :], ids[1], decode=True),
            seen[-1],
        )

    def _report(
        self, whole: Report, records: Iterable[OpRecord], spec: TensorSpec, decode: bool
    ) -> Report:
        """The prefill's or the decode step's part of ``whole``. Module outputs are
        those of each module's last call, the decode step's: the prefill's are unknown."""
        mine = tuple(changed(r, module=_unwrap(r.module)) for r in records)
        ran = {r.module for r in mine}
        modules = tuple(
            ModuleInfo(
                _unwrap(m.path),
                m.type,
                m.params,
                int(_unwrap(m.path) in ran),
                m.outputs if decode else (),
            )
            for m in whole.modules
            if m.path == _WRAPPED or m.path.startswith(_WRAPPED + ".")
        )
        return Report(
            model=type(self.model).__name__,
            convention=whole.convention,
            frontend=FrontendInfo("aten", "prefill and decode on the model's own cache"),
            inputs=(TensorMeta(tuple(int(s) for s in spec.shape), "int64"),),
            records=mine,
            params=self.params,
            modules=modules,
        )


def _fit(steps: _Steps, caps: list[int]) -> tuple[StepFormula, StepFormula]:
    """The decode formula and the cache-bytes formula: one affine segment from 1 and
    from each window's cap on, fitted at the segment's first two lengths and checked
    at others (see :func:`_checks`). A window longer than the model's positions never
    fills: it adds no segment."""
    limit = _longest(steps.model)
    bounds = [1, *(cap for cap in caps if limit is None or cap + 1 <= limit)]
    values: dict[int, tuple[Cost, int]] = {}

    def f(c: int) -> tuple[Cost, int]:
        if c not in values:
            _, dec, nbytes = steps.at(c)
            values[c] = (dec.cost, nbytes)
        return values[c]

    costs, sizes = [], []
    for lo in bounds:
        (a, na), (b, nb) = f(lo), f(lo + 1)
        slope = _sub(b, a)
        costs.append(Segment(lo, _sub(a, Cost(slope.macs * lo, slope.flops * lo)), slope))
        sizes.append(Segment(lo, Cost(0, na - (nb - na) * lo), Cost(0, nb - na)))
    formula, cache = StepFormula(_merged(costs)), StepFormula(_merged(sizes))
    for c in _checks(bounds, limit):
        got, nbytes = f(c)
        if got != formula(c) or nbytes != cache(c).flops:
            raise InputError(
                f"{type(steps.model).__name__}: a decode step's cost is not affine in the "
                f"cache length c between its windows' caps {caps} (at c = {c}: counted "
                f"{got.flops:,} FLOPs and {nbytes:,} cache bytes, the form fitted at "
                f"{sorted(values)} gives {formula(c).flops:,} and {cache(c).flops:,}); "
                "chunked attention is not supported"
            )
    return formula, cache


def _merged(segments: list[Segment]) -> tuple[Segment, ...]:
    """The segments without those that continue the one before unchanged (a window
    that is only a mask, not a shorter cache: GPT-Neo's local attention)."""
    out = [segments[0]]
    for s in segments[1:]:
        if (s.constant, s.per_token) != (out[-1].constant, out[-1].per_token):
            out.append(s)
    return tuple(out)


def _checks(bounds: list[int], limit: int | None = None) -> list[int]:
    """Cache lengths that test the fitted form: past each segment's two fitted points,
    up to 3 x the last bound + 9, and never past ``limit`` (the longest cache the
    model's positions allow)."""
    out = []
    for lo, hi in zip(bounds, [*bounds[1:], 3 * bounds[-1] + 9], strict=True):
        for c in (lo + 2, (lo + hi) // 2, hi - 1):
            if lo + 2 <= c < hi and c not in out and (limit is None or c <= limit):
                out.append(c)
    return out


def _longest(model: torch.nn.Module) -> int | None:
    """The longest cache a decode step can see: max_position_embeddings - 1 (the new
    token takes the last position), if the config has it."""
    n = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return n - 1 if isinstance(n, int) and not isinstance(n, bool) and n > 1 else None


def _caps(model: torch.nn.Module) -> list[int]:
    """Where the formula may bend: W - 1 for each sliding window W of the config (a
    sliding-window cache keeps W - 1 tokens; the new token makes W)."""
    config = getattr(model, "config", None)
    if config is None:
        raise InputError(
            f"{type(model).__name__} has no .config: generation() needs a transformers causal LM"
        )
    if getattr(config, "attention_chunk_size", None):
        raise InputError(
            f"{type(model).__name__}: chunked attention (attention_chunk_size) spans c mod the "
            "chunk: its decode cost is not a formula of min(c, window) terms"
        )
    windows = set()
    for name in ("sliding_window", "attention_window", "window_size"):
        w = getattr(config, name, None)
        if isinstance(w, int) and not isinstance(w, bool) and w > 2:
            windows.add(w - 1)
    return sorted(windows)


def _cache_argument(model: torch.nn.Module) -> str:
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    for key in ("cache", "past_key_values"):
        if key in params:
            return key
    raise InputError(
        f"{type(model).__name__}.forward takes no cache (no 'cache' or 'past_key_values' "
        "argument): generation() needs a causal language model with a key/value cache"
    )


def _cache_of(out: Any) -> Any:
    """The cache a forward returned (``cache`` in transformers 5, ``past_key_values``
    before; the first name is read first, so the deprecated one is never touched)."""
    for name in ("cache", "past_key_values"):
        v = out.get(name) if isinstance(out, dict) else getattr(out, name, None)
        if v is not None:
            return v
    return None


def _nbytes(cache: Any) -> int:
    """Bytes of every tensor the cache object holds (its layers' keys and values, a
    recurrent layer's conv and state tensors), each tensor once, found through the
    attributes, lists and dicts of transformers' cache objects."""
    seen: set[int] = set()
    total = 0
    stack: list[tuple[Any, int]] = [(cache, 0)]
    visited = {id(cache)}
    while stack:
        obj, depth = stack.pop()
        if isinstance(obj, dict):
            items: Iterable[Any] = obj.values()
        elif isinstance(obj, (list, tuple)):
            items = obj
        else:
            items = vars(obj).values()
        for v in items:
            if isinstance(v, torch.Tensor):
                if id(v) not in seen:
                    seen.add(id(v))
                    total += v.numel() * v.element_size()
            elif depth < 5 and id(v) not in visited and _container(v):
                visited.add(id(v))
                stack.append((v, depth + 1))
    return total


def _container(v: Any) -> bool:
    return isinstance(v, (list, tuple, dict)) or (
        hasattr(v, "__dict__") and type(v).__module__.startswith("transformers")
    )


def _unwrap(path: str) -> str:
    return "" if path == _WRAPPED else path.removeprefix(_WRAPPED + ".")


def _sub(a: Cost, b: Cost) -> Cost:
    return Cost(a.macs - b.macs, a.flops - b.flops)
