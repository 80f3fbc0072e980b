"""``convention="torch"``: torch.utils.flop_counter.FlopCounterMode's total, exactly.

FlopCounterMode has formulas for the contractions only (mm, addmm, bmm, baddbmm,
convolution, the fused attention kernels), each counting 2 per multiply-add
and nothing for a bias; every other op counts 0. So this table is the default
convention's aten rules for exactly those ops, keeping their MACs and setting
FLOPs to twice the MACs; everything else is free.

FlopCounterMode counts what runs on the device it sees. This preset follows
its behaviour on meta tensors, where attention and recurrent layers decompose
into bmm/addmm (counted); on real CPU tensors it reports 0 for the fused CPU
attention kernel and for aten.lstm, which docs/conventions.md notes.
"""

from __future__ import annotations

from math import prod

import torch
import torch.nn.functional as F

from ..handlers import DEFAULT
from ..handlers.context import OpContext
from ..records import Cost
from ..registry import Handler, Policy, Registry, Rule

aten = torch.ops.aten

COUNTED = (
    aten.mm, aten.addmm, aten.bmm, aten.baddbmm, aten.convolution, aten._convolution,
    aten._scaled_dot_product_flash_attention_for_cpu, aten._scaled_dot_product_flash_attention,
    aten._scaled_dot_product_efficient_attention, aten._scaled_dot_product_cudnn_attention,
    aten._scaled_dot_product_flash_attention_for_cpu_backward,
    aten._scaled_dot_product_flash_attention_backward,
    aten._scaled_dot_product_efficient_attention_backward,
    aten._scaled_dot_product_cudnn_attention_backward,
)  # fmt: skip
"""Aten ops FlopCounterMode has a formula for (and that the aten frontend sees), forward
and backward; the gradients of linear and matmul are plain mm/bmm ops."""

WHOLE = (
    F.scaled_dot_product_attention, aten.scaled_dot_product_attention, aten.lstm, aten.gru,
    aten.rnn_tanh, aten.rnn_relu, aten.lstm_cell, aten.gru_cell, aten.rnn_tanh_cell,
    aten.rnn_relu_cell,
)  # fmt: skip
"""Calls whose meta decomposition is a set of bmm/addmm ops: 2 x their MACs."""

NOT_COUNTED = Rule("not_counted", None, "FlopCounterMode has no formula for this op")


def twice_the_macs(handler: Handler) -> Handler:
    """The default handler's MACs, with FLOPs = 2 x MACs (FlopCounterMode's arithmetic)."""

    def counted(ctx: OpContext) -> Cost:
        cost = handler(ctx)
        macs = cost.macs if isinstance(cost, Cost) else 0
        return Cost(macs, 2 * macs)

    counted.__name__ = f"twice_the_macs_of_{getattr(handler, '__name__', 'handler')}"
    return counted


def _conv_products(
    x: tuple[int, ...], w: tuple[int, ...], out: tuple[int, ...], transposed: bool
) -> int:
    """FlopCounterMode's convolution arithmetic: 2 x the output's (or, transposed, the
    input's) spatial size x the filter taps x batch x both weight channel dims."""
    return 2 * prod((x if transposed else out)[2:]) * prod(w[2:]) * x[0] * w[0] * w[1]


def _swap(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[1], shape[0], *shape[2:])


def convolution_backward(ctx: OpContext) -> Cost:
    """FlopCounterMode's ``convolution_backward``: grad-input as the transposed
    convolution (the forward's count), grad-weight as a convolution of the input with
    the output gradient, batch and channel dims swapped. That second product uses the
    input's full channel count, so for a grouped convolution it is ``groups`` times the
    multiply-adds that run (the default convention counts those): reproduced as is."""
    grad_out, x, w = (ctx.args[i].shape for i in range(3))
    transposed, mask = bool(ctx.arg(7, "transposed")), ctx.arg(10, "output_mask")
    flops = _conv_products(grad_out, w, x, not transposed) if mask[0] else 0
    if mask[1]:
        if transposed:
            flops += _conv_products(_swap(grad_out), _swap(x), _swap(w), False)
        else:
            flops += _conv_products(_swap(x), _swap(grad_out), _swap(w), False)
    return Cost(flops // 2, flops)


def _build() -> Registry:
    table = Registry(policy=Policy(unknown_aten=NOT_COUNTED, fx=False))
    for op in COUNTED:
        rule = DEFAULT.get(("aten", op))
        assert rule is not None and rule.handler is not None, op
        table.add([op], Rule(rule.name, twice_the_macs(rule.handler)))
    table.add([aten.convolution_backward], Rule("convolution_backward", convolution_backward))
    for target in WHOLE:
        rule = DEFAULT.get(("composite", target))
        assert rule is not None and rule.handler is not None, target
        table.composite([target], Rule(rule.name, twice_the_macs(rule.handler)))
    return table


TORCH = _build()
