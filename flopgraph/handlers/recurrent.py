"""Recurrent layers: nn.RNN, nn.GRU, nn.LSTM and their *Cell modules.

The counts come from the module's configuration and the input's width: every
input layout (batch_first or not, unbatched, a PackedSequence whose data is
[sum(batch_sizes), I]) holds numel(input) / input_size (row, step) pairs, which
is exactly the number of cell steps the layer runs per direction.
"""

from __future__ import annotations

from torch import nn

from .. import formulas as f
from ..records import Cost
from ..registry import Rule
from .context import OpContext
from .table import DEFAULT

_KIND = {"RNN_TANH": "rnn", "RNN_RELU": "rnn", "GRU": "gru", "LSTM": "lstm"}
_CELLS: dict[type[nn.Module], str] = {nn.RNNCell: "rnn", nn.GRUCell: "gru", nn.LSTMCell: "lstm"}


def _row_steps(ctx: OpContext, input_size: int) -> int:
    # ctx.x is the input, or a PackedSequence's data (its first field)
    return ctx.x.numel // input_size if input_size else 0


def recurrent_module(ctx: OpContext) -> Cost:
    m = ctx.module
    assert isinstance(m, nn.RNNBase)
    return f.recurrent(
        _KIND[m.mode], m.input_size, m.hidden_size, m.num_layers,
        2 if m.bidirectional else 1, m.bias, m.proj_size, _row_steps(ctx, m.input_size),
    )  # fmt: skip


def cell_module(ctx: OpContext) -> Cost:
    m = ctx.module
    assert isinstance(m, nn.RNNCellBase)
    step = f.recurrent_step(_CELLS[type(m)], m.input_size, m.hidden_size, m.bias)
    rows = _row_steps(ctx, m.input_size)
    return Cost(step.macs * rows, step.flops * rows)


DEFAULT.add([nn.RNN], Rule("rnn", recurrent_module))
DEFAULT.add([nn.GRU], Rule("gru", recurrent_module))
DEFAULT.add([nn.LSTM], Rule("lstm", recurrent_module))
for _cls, _kind in _CELLS.items():
    DEFAULT.add([_cls], Rule(f"{_kind}_cell", cell_module))
