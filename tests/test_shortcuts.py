"""Shape shortcuts (flopgraph/shortcuts.py) give exactly the tensor the meta run gives.

Each case runs the op for real on meta tensors and through its shortcut, and
compares shape, strides and dtype; cases the shortcut declines (None) must be
ones it was meant to decline, so every case says which it expects.
"""

from __future__ import annotations

import operator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from flopgraph.shortcuts import function_output, method_output, module_output

M = "meta"


def t(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.empty(*shape, device=M, dtype=dtype)


def _flat(value: Any) -> list[Any]:
    return list(value) if isinstance(value, tuple) else [value]


def _same(got: Any, want: Any) -> None:
    for a, b in zip(_flat(got), _flat(want), strict=True):
        if b is None:
            assert a is None
            continue
        assert (tuple(a.shape), a.stride(), a.dtype, a.device.type) == (
            tuple(b.shape), b.stride(), b.dtype, b.device.type
        )  # fmt: skip


def _module(m: nn.Module) -> nn.Module:
    return m.to(M).eval()


MODULE_CASES = [
    # (module, args, kwargs, shortcut expected)
    (nn.Linear(8, 16), (t(8),), {}, True),
    (nn.Linear(8, 16), (t(3, 8),), {}, True),
    (nn.Linear(8, 16), (t(2, 3, 4, 8),), {}, True),
    (nn.Linear(8, 16), (t(3, 2, 8).transpose(0, 1),), {}, True),
    (nn.Linear(8, 16, bias=False), (t(2, 8),), {}, True),
    (nn.Linear(8, 16), (t(2, 7),), {}, False),  # wrong width: the op's own error
    (nn.Linear(8, 16), (t(2, 8, dtype=torch.float64),), {}, False),  # dtype mismatch
    (nn.LayerNorm(8), (t(2, 3, 8),), {}, True),
    (nn.LayerNorm((4, 8)), (t(2, 4, 8),), {}, True),
    (nn.LayerNorm(8), (t(2, 8, 4, 4).permute(0, 2, 3, 1),), {}, True),
    (nn.LayerNorm(8, elementwise_affine=False), (t(5, 8),), {}, True),
    (nn.LayerNorm(8), (t(2, 3, 7),), {}, False),
    (nn.AdaptiveAvgPool2d(1), (t(1, 8, 7, 7),), {}, True),
    (nn.AdaptiveAvgPool2d((2, 3)), (t(2, 8, 7, 7),), {}, True),
    (nn.AdaptiveAvgPool2d((None, 2)), (t(8, 7, 7),), {}, True),
    (nn.AdaptiveAvgPool2d(1), (t(2, 8, 7, 7).to(memory_format=torch.channels_last),), {}, False),
    (nn.AdaptiveAvgPool2d(1), (t(1, 8, 1, 1),), {}, False),  # also channels-last contiguous
    (nn.BatchNorm2d(8), (t(2, 8, 5, 5),), {}, True),
    (nn.BatchNorm1d(8), (t(4, 8),), {}, True),
    (nn.BatchNorm2d(8), (t(2, 7, 5, 5),), {}, False),
    (nn.GELU(), (t(2, 3),), {}, True),
    (nn.ReLU(), (t(2, 3, dtype=torch.int64),), {}, False),
]


@pytest.mark.parametrize("m, args, kwargs, expected", MODULE_CASES)
def test_module_shortcut_matches_meta_run(
    m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], expected: bool
) -> None:
    m = _module(m)
    got = module_output(m, args, kwargs)
    assert (got is not None) is expected
    if got is not None:
        with torch.no_grad():
            _same(got, m(*args, **kwargs))


def _rnn_cases() -> list[Any]:
    cases: list[Any] = []
    settings = [{}, {"batch_first": True}, {"bidirectional": True, "num_layers": 2}]
    for cls in (nn.LSTM, nn.GRU, nn.RNN):
        for kw in [*settings, {"proj_size": 3} if cls is nn.LSTM else {"num_layers": 3}]:
            for x in (t(5, 2, 4), t(5, 4)):
                cases.append((cls(4, 6, **kw), (x,), True))
    lstm = nn.LSTM(4, 6, num_layers=2)  # a given state of the right shapes; then a wrong one
    cases.append((lstm, (t(5, 2, 4), (t(2, 2, 6), t(2, 2, 6))), True))
    cases.append((nn.GRU(4, 6), (t(5, 2, 4), t(1, 2, 6)), True))
    cases.append((nn.GRU(4, 6), (t(5, 2, 4), t(1, 3, 6)), False))  # the op's own error
    cases.append((nn.GRU(4, 6), (t(5, 2, 3),), False))  # wrong input width
    cases.append((nn.GRU(4, 6), (t(5, 2, 4, dtype=torch.float64),), False))
    cases.append((nn.GRU(4, 6), (t(5, 4, 2).transpose(1, 2),), False))  # a strided input
    return cases


@pytest.mark.parametrize("m, args, expected", _rnn_cases())
def test_recurrent_shortcut_matches_meta_run(
    m: nn.Module, args: tuple[Any, ...], expected: bool
) -> None:
    # a recurrent layer's meta run steps through torch's reference cells: seconds on a
    # vision model's LSTM blocks, where the shortcut takes microseconds
    m = _module(m)
    got = module_output(m, args, {})
    assert (got is not None) is expected
    if got is not None:
        with torch.no_grad():
            want = m(*args)
        out, state = got
        _same(out, want[0])
        _same(state, want[1])


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"need_weights": False}, {"need_weights": True, "average_attn_weights": False}],
)
@pytest.mark.parametrize("cross", [False, True])
def test_multihead_attention_shortcut_matches_meta_run(
    batch_first: bool, kwargs: dict[str, Any], cross: bool
) -> None:
    m = _module(nn.MultiheadAttention(16, 4, batch_first=batch_first))
    q = t(2, 5, 16) if batch_first else t(5, 2, 16)
    kv = (t(2, 7, 16) if batch_first else t(7, 2, 16)) if cross else q
    got = module_output(m, (q, kv, kv), kwargs)
    assert got is not None
    with torch.no_grad():
        _same(got, m(q, kv, kv, **kwargs))


def test_multihead_attention_with_a_mask_runs_for_real() -> None:
    m = _module(nn.MultiheadAttention(16, 4))
    q = t(5, 2, 16)
    assert module_output(m, (q, q, q), {"attn_mask": t(5, 5)}) is None


def test_a_subclass_runs_for_real() -> None:
    class MyLinear(nn.Linear):
        pass

    assert module_output(_module(MyLinear(8, 8)), (t(2, 8),), {}) is None


BINARY_CASES = [
    (t(2, 8, 4, 4), t(2, 8, 4, 4), True),
    (t(2, 8, 4, 4), t(1, 8, 1, 1), True),
    (t(1, 8, 1, 1), t(2, 8, 4, 4), True),
    (t(2, 8, 4, 4), t(4), True),
    (t(3, 1), t(1, 4), False),  # a broadcast shape that is neither input's
    (t(2, 8, 4, 4), 2, True),
    (3.0, t(2, 8), True),
    (t(2, 8), True, False),  # a bool scalar: left to the op
    (t(2, 8), t(2, 8, dtype=torch.float64), False),  # type promotion: left to the op
    (t(2, 8, dtype=torch.int64), 2, False),
    (t(2, 8, 4, 4).to(memory_format=torch.channels_last), t(2, 8, 4, 4), True),
    (t(1, 8, 4, 4).to(memory_format=torch.channels_last), t(1, 8, 4, 4), True),
    (t(1, 8, 1, 1), t(2, 8, 4, 4).to(memory_format=torch.channels_last), True),
    (t(2, 8, 8, 4)[:, :, ::2], t(2, 8, 4, 4), True),  # a strided view: torch's stride rule
    (t(2, 8, 8, 4)[:, :, ::2], 2.0, False),  # with a number: row-major tensors only
    (t(2, 0, 8)[:, :, ::2], t(2, 0, 4), False),  # empty and strided: left to the op
]


@pytest.mark.parametrize("op", [operator.add, operator.mul, operator.sub, operator.truediv,
                                torch.add, torch.mul])  # fmt: skip
@pytest.mark.parametrize("a, b, expected", BINARY_CASES)
def test_binary_shortcut_matches_meta_run(op: Any, a: Any, b: Any, expected: bool) -> None:
    got = function_output(op, (a, b), {})
    assert (got is not None) is expected
    if got is not None:
        _same(got, op(a, b))


@pytest.mark.parametrize("name", ["add", "mul", "__add__"])
def test_binary_method_shortcut_matches_meta_run(name: str) -> None:
    a, b = t(2, 8, 4, 4), t(1, 8, 1, 1)
    got = method_output(name, (a, b), {})
    _same(got, getattr(a, name)(b))


@pytest.mark.parametrize("name", ["__radd__", "__rmul__"])
def test_reflected_method_takes_a_number_only(name: str) -> None:
    a = t(2, 8, 4, 4)
    _same(method_output(name, (a, 2.0), {}), getattr(a, name)(2.0))
    assert method_output(name, (a, t(2, 8, 4, 4)), {}) is None


def _permuted(shape: tuple[int, ...], order: tuple[int, ...]) -> torch.Tensor:
    """A dense tensor of ``shape`` whose memory runs in dimension ``order``."""
    base = t(*(shape[i] for i in order))
    return base.permute(*(order.index(i) for i in range(len(order))))


@pytest.mark.parametrize(
    "a_order, b_order",
    [((0, 2, 3, 1), (0, 1, 2, 3)), ((0, 1, 2, 3), (0, 2, 3, 1)), ((3, 1, 0, 2), (1, 0, 3, 2))],
)
def test_binary_shortcut_on_mixed_layouts_matches_meta_run(
    a_order: tuple[int, ...], b_order: tuple[int, ...]
) -> None:
    a, b = _permuted((2, 3, 4, 5), a_order), _permuted((2, 3, 4, 5), b_order)
    got = function_output(operator.add, (a, b), {})
    assert got is not None
    _same(got, a + b)
    _same(function_output(operator.mul, (b, a), {}), b * a)


@pytest.mark.parametrize("shape", [(1, 3, 4, 5), (2, 1, 4, 1), (1, 1, 1, 5)])
def test_binary_shortcut_with_size_one_dimensions_matches_meta_run(
    shape: tuple[int, ...],
) -> None:
    # where size-1 dimensions leave the order of dimensions open, torch's rule decides
    a, b = _permuted(shape, (0, 2, 3, 1)), _permuted(shape, (3, 1, 0, 2))
    _same(function_output(operator.add, (a, b), {}), a + b)
    _same(function_output(operator.add, (b, a), {}), b + a)


def test_in_place_add_returns_its_left_operand() -> None:
    a, b = t(2, 8), t(2, 8)
    assert function_output(operator.iadd, (a, b), {}) is a
    assert method_output("add_", (a, b), {}) is a
    assert function_output(operator.iadd, (a, t(8)), {}) is None  # broadcast: the op decides


@pytest.mark.parametrize(
    "args, kwargs, expected",
    [
        ((t(2, 3, 8), (8,)), {}, True),
        ((t(2, 8, 4, 4).permute(0, 2, 3, 1), (8,), t(8), t(8), 1e-6), {}, True),
        ((t(2, 3, 8),), {"normalized_shape": [8], "weight": t(8)}, True),
        ((t(2, 3, 8), (8,), t(8, dtype=torch.float64)), {}, False),
        ((t(2, 3, 8), (7,)), {}, False),
    ],
)
def test_functional_layer_norm_shortcut_matches_meta_run(
    args: tuple[Any, ...], kwargs: dict[str, Any], expected: bool
) -> None:
    got = function_output(F.layer_norm, args, kwargs)
    assert (got is not None) is expected
    if got is not None:
        _same(got, F.layer_norm(*args, **kwargs))


@pytest.mark.parametrize(
    "conv, x",
    [
        (nn.Conv2d(4, 8, 3), t(2, 4, 9, 9)),
        (nn.Conv2d(4, 8, 3, stride=2, padding=1, dilation=2), t(1, 4, 9, 7)),
        (nn.Conv2d(8, 8, 3, padding=1, groups=8), t(1, 8, 5, 5)),
        (nn.Conv2d(8, 4, 1, bias=False), t(1, 8, 1, 1)),
        (nn.Conv1d(4, 8, 5, stride=3), t(2, 4, 20)),
        (nn.Conv3d(2, 4, (1, 3, 3), padding=(0, 1, 1)), t(1, 2, 3, 6, 6)),
        (nn.Conv2d(4, 8, 3), t(2, 4, 9, 9).to(memory_format=torch.channels_last)),
        (nn.Conv2d(4, 8, 3), t(2, 4, 9, 18)[..., ::2]),
    ],
)
def test_convolution_shortcut_matches_meta_run(conv: nn.Module, x: torch.Tensor) -> None:
    conv = _module(conv)
    got = module_output(conv, (x,), {})
    assert got is not None
    with torch.no_grad():
        _same(got, conv(x))


@pytest.mark.parametrize(
    "conv, x",
    [
        (nn.Conv2d(4, 8, 3), t(2, 4, 2, 2)),  # smaller than the kernel: the op's error
        (nn.Conv2d(4, 8, 3), t(2, 5, 9, 9)),  # wrong channel count
        (nn.Conv2d(4, 8, 3), t(4, 9, 9)),  # unbatched
        (nn.Conv2d(4, 8, 3, padding="same"), t(1, 4, 9, 9)),
        (nn.Conv2d(4, 8, 3, padding=1, padding_mode="reflect"), t(1, 4, 9, 9)),
        (nn.Conv2d(4, 8, 3), t(1, 4, 9, 9, dtype=torch.float64)),
    ],
)
def test_convolution_shortcut_declines(conv: nn.Module, x: torch.Tensor) -> None:
    assert module_output(_module(conv), (x,), {}) is None


def test_off_meta_only_layout_keeping_shortcuts_apply() -> None:
    # fake tensors on a real device may get other layouts from their kernels
    x = t(2, 8)
    assert module_output(_module(nn.Linear(8, 4)), (x,), {}, meta=False) is None
    assert module_output(_module(nn.GELU()), (x,), {}, meta=False) is not None
