"""Outputs known from the inputs' shapes: shape propagation without running the op.

Running an op on meta tensors costs from 20 us (a convolution's meta kernel) to
milliseconds where torch goes through its Python reference implementations:
``F.layer_norm`` (about 1 ms), ``F.linear`` on 3-D inputs (0.4 ms),
``nn.MultiheadAttention`` (2 ms), even a plain ``a + b`` (0.13 ms); an empty
tensor costs about 2 us. For the
common, well-formed calls of these ops the output's shape, dtype and strides
are known; a shortcut here builds exactly the tensor the meta run would give.

Every shortcut returns None, and the op runs for real, as soon as anything is
unusual: a dtype mismatch, a shape the op would reject, extra arguments, a
subclass with its own forward, an input whose strides the shortcut does not
model. So a failure, and its message, always come from the op itself.
``tests/test_shortcuts.py`` compares each shortcut with the meta run on a grid
of inputs, strides included.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

_output_strides: Callable[..., tuple[int, ...]] | None
try:  # the rule torch's elementwise meta kernels use for their result's strides
    from torch._prims_common import compute_elementwise_output_strides as _output_strides
except ImportError:  # pragma: no cover - an older or newer torch
    _output_strides = None

Shortcut = Callable[[Any, tuple[Any, ...], dict[str, Any]], Any]
"""(module or call target, args, kwargs) -> the output, or None. Module shortcuts take
``Any``: each reads the settings of its own module class."""


def module_output(
    m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], meta: bool = True
) -> Any:
    """The output of leaf module ``m`` on ``args``, or None: it must run. Reads the
    module's settings and its parameters' shapes and dtypes, never their data.

    ``meta``: the inputs are meta tensors. Otherwise (fake tensors on a real device,
    whose kernels may choose other memory layouts) only the shortcuts that keep the
    input's layout apply: activations and batch norm."""
    shortcut = _MODULES.get(type(m))
    if shortcut is None or not (meta or shortcut in _ANY_DEVICE):
        return None
    return shortcut(m, args, kwargs)


def function_output(target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The output of a ``call_function`` node's target on meta ``args``, or None."""
    try:
        shortcut = _FUNCTIONS.get(target)
    except TypeError:  # an unhashable target
        return None
    return None if shortcut is None else shortcut(target, args, kwargs)


def method_output(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The output of tensor method ``name`` on meta ``args`` (``args[0]`` is the
    tensor), or None."""
    shortcut = _METHODS.get(name)
    return None if shortcut is None else shortcut(name, args, kwargs)


# --- tensors the meta run would make ------------------------------------------------------


def _like(x: torch.Tensor) -> torch.Tensor:
    # empty_strided is a plain factory; empty_like goes through slower reference code on meta
    return torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device=x.device)


def _contiguous(shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    return torch.empty(shape, dtype=like.dtype, device=like.device)


def _default_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


def _plain_layout(x: torch.Tensor) -> bool:
    """Row-major with the default strides: the layout every shortcut here models."""
    return x.stride() == _default_strides(tuple(x.shape))


def _dense(x: torch.Tensor) -> bool:
    """Non-overlapping and dense (row-major, channels-last or any permutation of a
    row-major layout): the layouts an elementwise kernel's result copies. A strided view
    (``x[:, ::2]``) is not: its result gets fresh strides, which the op itself decides."""
    if _plain_layout(x):
        return True
    expected = 1
    for stride, size in sorted(
        (st, sz) for sz, st in zip(x.shape, x.stride(), strict=True) if sz != 1
    ):
        if stride != expected:
            return False
        expected *= size
    return True


def _float(x: Any) -> bool:
    return isinstance(x, torch.Tensor) and x.is_floating_point() and _plain_layout(x)


def _param(m: nn.Module, name: str) -> Any:
    # from the parameter dict, never through an attribute a parametrization could compute
    return m._parameters.get(name)


# --- elementwise modules --------------------------------------------------------------------

_SHAPE_KEEPING = (
    nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh,
    nn.LeakyReLU, nn.Identity, nn.Dropout, nn.ELU, nn.Mish,
)  # fmt: skip


def _same_shape(m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if kwargs or len(args) != 1 or not isinstance(args[0], torch.Tensor):
        return None
    x = args[0]
    return _like(x) if x.is_floating_point() and _dense(x) else None


_BN_DIMS: dict[type, tuple[int, ...]] = {
    nn.BatchNorm1d: (2, 3), nn.BatchNorm2d: (4,), nn.BatchNorm3d: (5,),
}  # fmt: skip


def _batch_norm(m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if kwargs or len(args) != 1 or not isinstance(args[0], torch.Tensor):
        return None
    x = args[0]
    ok = x.is_floating_point() and x.dim() in _BN_DIMS.get(type(m), ()) and _dense(x)
    return _like(x) if ok and x.shape[1] == m.num_features else None


# --- contractions and norms ----------------------------------------------------------------


def _linear(m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # F.linear's output is always a fresh row-major tensor
    if kwargs or len(args) != 1 or not isinstance(args[0], torch.Tensor):
        return None
    x, w, b = args[0], _param(m, "weight"), _param(m, "bias")
    if w is None or x.dim() < 1 or not x.is_floating_point() or x.dtype != w.dtype:
        return None
    if w.dim() != 2 or x.shape[-1] != w.shape[1] or (b is not None and b.dtype != w.dtype):
        return None
    return _contiguous((*x.shape[:-1], w.shape[0]), x)


def _conv(m: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A batched convolution with zero padding given as numbers: with a row-major
    weight the meta kernel gives a row-major output of the usual size, whatever the
    input's layout."""
    if kwargs or len(args) != 1 or not isinstance(args[0], torch.Tensor):
        return None
    if not args[0].is_floating_point():
        return None
    x, w, b = args[0], _param(m, "weight"), _param(m, "bias")
    dims = x.dim() - 2
    if w is None or not _plain_layout(w) or w.dim() != dims + 2 or dims < 1:
        return None
    if m.padding_mode != "zeros" or isinstance(m.padding, str) or x.dtype != w.dtype:
        return None
    if (b is not None and b.dtype != w.dtype) or x.shape[1] != w.shape[1] * m.groups:
        return None
    out = []
    for i in range(dims):
        span = m.dilation[i] * (w.shape[2 + i] - 1) + 1
        size = (x.shape[2 + i] + 2 * m.padding[i] - span) // m.stride[i] + 1
        if size <= 0:
            return None  # the op's own error: the input is smaller than the kernel
        out.append(size)
    return _contiguous((x.shape[0], w.shape[0], *out), x)


def _layer_norm_of(x: Any, shape: Any, w: Any, b: Any) -> Any:
    """F.layer_norm's output (always fresh and row-major), or None."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        return None
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if not shape or x.dim() < len(shape) or tuple(x.shape[-len(shape) :]) != shape:
        return None
    for p in (w, b):
        if p is not None and (not isinstance(p, torch.Tensor) or p.dtype != x.dtype):
            return None
        if p is not None and tuple(p.shape) != shape:
            return None
    return _contiguous(tuple(x.shape), x)


def _layer_norm(m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if kwargs or len(args) != 1:
        return None
    return _layer_norm_of(args[0], m.normalized_shape, _param(m, "weight"), _param(m, "bias"))


def _f_layer_norm(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    names = ("input", "normalized_shape", "weight", "bias", "eps")
    if len(args) > len(names) or any(k not in names[len(args) :] for k in kwargs):
        return None
    bound = dict(zip(names, args, strict=False)) | kwargs
    if "input" not in bound or "normalized_shape" not in bound:
        return None
    return _layer_norm_of(
        bound["input"], bound["normalized_shape"], bound.get("weight"), bound.get("bias")
    )


def _adaptive_avg_pool2d(m: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if kwargs or len(args) != 1 or not _float(args[0]) or args[0].dim() not in (3, 4):
        return None
    x = args[0]
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return None  # the kernel may keep a channels-last layout here
    size = m.output_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    if len(size) != 2 or not all(s is None or (isinstance(s, int) and s > 0) for s in size):
        return None
    out = tuple(x.shape[-2 + i] if s is None else s for i, s in enumerate(size))
    return _contiguous((*x.shape[:-2], *out), x)


def _multihead_attention(m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A batched self- or cross-attention call with no masks and one embedding size.

    The meta run takes the slow path of ``nn.MultiheadAttention.forward``: its output
    is a row-major [L, N, E] tensor, transposed back for ``batch_first``; the weights,
    if asked for, are row-major [N, L, S] (averaged) or [N, H, L, S]."""
    if len(args) != 3 or any(k not in ("need_weights", "average_attn_weights") for k in kwargs):
        return None
    q, k, v = args
    w = _param(m, "in_proj_weight")
    if not all(_float(t) and t.dim() == 3 for t in (q, k, v)) or w is None:
        return None
    if not (m._qkv_same_embed_dim and m.bias_k is None and m.bias_v is None):
        return None
    if m.add_zero_attn or len({q.dtype, k.dtype, v.dtype, w.dtype}) != 1:
        return None
    e = m.embed_dim
    if q.shape[-1] != e or k.shape != v.shape or k.shape[-1] != e:
        return None
    batch_dim = 0 if m.batch_first else 1
    if q.shape[batch_dim] != k.shape[batch_dim]:
        return None
    n, length, source = q.shape[batch_dim], q.shape[1 - batch_dim], k.shape[1 - batch_dim]
    out = _contiguous((length, n, e), q)
    out = out.transpose(1, 0) if m.batch_first else out
    if not kwargs.get("need_weights", True):
        return out, None
    average = kwargs.get("average_attn_weights", True)
    shape = (n, length, source) if average else (n, m.num_heads, length, source)
    return out, _contiguous(shape, q)


_RNNS = (nn.LSTM, nn.GRU, nn.RNN)


def _rnn(m: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A recurrent layer on a dense sequence (not packed), with or without a given state.

    Its meta run steps through the sequence in torch's Python reference code, a cell's
    matmuls and gates per step and layer (seconds for a vision model's LSTM blocks).
    The output is a row-major [L, N, D x H_out] tensor, transposed for ``batch_first``
    ([L, D x H_out] unbatched); each state is a row-major [D x layers, N, H] (H_out for
    h, hidden_size for an LSTM's c)."""
    if kwargs or not 1 <= len(args) <= 2:
        return None
    x, w = args[0], _param(m, "weight_ih_l0")
    if not _float(x) or x.dim() not in (2, 3) or w is None or x.shape[-1] != m.input_size:
        return None
    if any(p.dtype != x.dtype for p in m._parameters.values() if p is not None):
        return None
    batched = x.dim() == 3
    steps = x.shape[1] if batched and m.batch_first else x.shape[0]
    batch: tuple[int, ...] = ((x.shape[0] if m.batch_first else x.shape[1]),) if batched else ()
    d = 2 if m.bidirectional else 1
    h_out = getattr(m, "proj_size", 0) or m.hidden_size
    sizes = [h_out, m.hidden_size] if isinstance(m, nn.LSTM) else [h_out]
    states = [(d * m.num_layers, *batch, h) for h in sizes]
    if steps == 0 or not _states_fit(args[1] if len(args) == 2 else None, states, x):
        return None
    if batched:
        out = _contiguous((steps, *batch, d * h_out), x)
        out = out.transpose(0, 1) if m.batch_first else out
    else:
        out = _contiguous((steps, d * h_out), x)
    made = tuple(_contiguous(shape, x) for shape in states)
    return out, (made if isinstance(m, nn.LSTM) else made[0])


def _states_fit(hx: Any, shapes: list[tuple[int, ...]], x: torch.Tensor) -> bool:
    """No initial state, or one of exactly the expected shapes, dtype and layout."""
    if hx is None:
        return True
    given = hx if isinstance(hx, tuple) else (hx,)
    return len(given) == len(shapes) and all(
        _float(h) and h.dtype == x.dtype and tuple(h.shape) == s
        for h, s in zip(given, shapes, strict=True)
    )


# --- binary elementwise functions ------------------------------------------------------------

_SCALARS = (int, float)


def _binary(target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``a + b``, ``a * b`` ...: two tensors of one floating dtype (one may broadcast
    into the other's shape), the result's strides by torch's own rule for elementwise
    results (row-major operands: row-major); or a row-major tensor and a Python
    number."""
    if kwargs or len(args) != 2:
        return None
    a, b = args
    if isinstance(a, _SCALARS) and not isinstance(a, bool):
        return _like(b) if _float(b) else None
    if isinstance(b, _SCALARS) and not isinstance(b, bool):
        return _like(a) if _float(a) else None
    if not (_floating(a) and _floating(b)) or a.dtype != b.dtype:
        return None
    plain = _plain_layout(a) and _plain_layout(b)
    if a.shape == b.shape or _broadcasts_into(b, a):
        return _like(a) if plain else _elementwise(a, b)
    if _broadcasts_into(a, b):
        return _like(b) if plain else _elementwise(b, a, order=(1, 0))
    return None  # a broadcast shape that is neither operand's, or none: the op decides


def _floating(x: Any) -> bool:
    return isinstance(x, torch.Tensor) and x.is_floating_point()


def _elementwise(
    big: torch.Tensor, small: torch.Tensor, order: tuple[int, int] = (0, 1)
) -> torch.Tensor | None:
    """The result of an elementwise op on two tensors ``big`` and ``small`` (in
    ``order``; ``small`` broadcasts into ``big``'s shape), with the strides torch's
    meta kernels give it."""
    if _output_strides is None or big.numel() == 0:  # torch moved it, or an empty tensor
        return None
    operands = [big, small.expand(big.shape)]
    if order == (1, 0):
        operands.reverse()
    strides = _output_strides(*operands)
    return torch.empty_strided(big.shape, strides, dtype=big.dtype, device=big.device)


def _reflected(target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``b.__radd__(a)``: a Python number only (with two tensors the order of the
    operands, which decides the result's strides, is torch's business)."""
    if len(args) == 2 and isinstance(args[1], torch.Tensor):
        return None
    return _binary(target, args, kwargs)


def _broadcasts_into(small: torch.Tensor, big: torch.Tensor) -> bool:
    if small.dim() > big.dim():
        return False
    tail = big.shape[big.dim() - small.dim() :]
    return all(s in (1, b) for s, b in zip(small.shape, tail, strict=True))


def _inplace_binary(target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``a += b`` with ``b`` of ``a``'s shape and dtype returns ``a`` itself."""
    if kwargs or len(args) != 2:
        return None
    a, b = args
    if _float(a) and _float(b) and a.dtype == b.dtype and a.shape == b.shape:
        return a
    return None


_MODULES: dict[type, Shortcut] = {
    **{cls: _same_shape for cls in _SHAPE_KEEPING},
    **{cls: _batch_norm for cls in _BN_DIMS},
    nn.Linear: _linear,
    **{cls: _conv for cls in (nn.Conv1d, nn.Conv2d, nn.Conv3d)},
    nn.LayerNorm: _layer_norm,
    nn.AdaptiveAvgPool2d: _adaptive_avg_pool2d,
    nn.MultiheadAttention: _multihead_attention,
    **{cls: _rnn for cls in _RNNS},
}
"""Exact module types only: a subclass (or a parametrized module) runs for real."""
_ANY_DEVICE = frozenset({_same_shape, _batch_norm})

_ARITHMETIC = (operator.add, operator.mul, operator.sub, operator.truediv, torch.add, torch.mul,
               torch.sub, torch.div)  # fmt: skip
_FUNCTIONS: dict[Any, Shortcut] = {
    **{fn: _binary for fn in _ARITHMETIC},
    **{fn: _inplace_binary for fn in (operator.iadd, operator.imul)},
    F.layer_norm: _f_layer_norm,
}
_METHODS: dict[str, Shortcut] = {
    **{
        name: _binary
        for name in ("add", "mul", "sub", "div", "__add__", "__mul__", "__sub__", "__truediv__")
    },  # fmt: skip
    "__radd__": _reflected,
    "__rmul__": _reflected,
    **{name: _inplace_binary for name in ("add_", "mul_", "__iadd__", "__imul__")},
}
