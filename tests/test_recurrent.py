"""nn.RNN / nn.GRU / nn.LSTM and their cells against the spec's recurrent formula."""

import pytest
import torch
from helpers import cost_of
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import flopgraph
from flopgraph import Cost

GATES = {nn.RNN: 1, nn.GRU: 3, nn.LSTM: 4}
CELL = {nn.RNN: 1, nn.GRU: 8, nn.LSTM: 9}  # per hidden unit, from the spec


def spec_step(cls, i, h, bias, proj=0):
    """The spec's per-step, per-row, per-direction cost, written out from its text."""
    g = GATES[cls]
    macs = g * h * (i + proj) + h * proj if proj else g * h * (i + h)
    return macs, 2 * macs + g * h + (2 * g * h if bias else 0) + CELL[cls] * h


def test_lstm_two_layers_bidirectional_batch_first():
    lstm = nn.LSTM(128, 256, num_layers=2, bidirectional=True, batch_first=True)
    # layer 1, per step and direction: 4 * 256 * (128 + 256)          = 393_216 macs
    #   flops 2 * 393_216 + 4*256 (sum) + 2*4*256 (biases) + 9*256    = 791_808
    # layer 2 reads both directions, I = 512: 4 * 256 * (512 + 256)   = 786_432 macs
    #   flops 2 * 786_432 + 1_024 + 2_048 + 2_304                     = 1_578_240
    # 32 steps x 1 row x 2 directions = 64 runs of each layer
    assert (
        cost_of(lstm, (1, 32, 128))
        == Cost(64 * (393_216 + 786_432), 64 * (791_808 + 1_578_240))
        == Cost(75_497_472, 151_683_072)
    )


def test_gru_sequence_first():
    gru = nn.GRU(20, 30)
    # per step: 3 * 30 * (20 + 30) = 4_500 macs;
    # flops 9_000 + 90 (sum) + 180 (biases) + 8 * 30 (cell)          = 9_510
    # input [7, 3, 20]: 7 steps x 3 rows                              = 21 runs
    assert cost_of(gru, (7, 3, 20)) == Cost(21 * 4_500, 21 * 9_510) == Cost(94_500, 199_710)


def test_rnn_relu_no_bias_unbatched():
    rnn = nn.RNN(6, 5, nonlinearity="relu", bias=False)
    # per step: 5 * (6 + 5) = 55 macs; flops 110 + 5 (sum) + 5 (relu) = 120; 9 steps
    assert cost_of(rnn, (9, 6)) == Cost(9 * 55, 9 * 120)


def test_lstm_projection():
    lstm = nn.LSTM(10, 16, num_layers=2, proj_size=4, bidirectional=True)
    # layer 0: 4*16*(10 + 4) + 16*4 = 960 macs; layer 1 reads 2 * 4 = 8: 4*16*(8+4) + 64 = 832
    # flops per step: 2*macs + 64 + 128 + 9*16 (= 336 extra)
    runs = 5 * 2 * 2  # 5 steps x 2 rows x 2 directions
    assert cost_of(lstm, (5, 2, 10)) == Cost(runs * (960 + 832), runs * (2 * 1792 + 2 * 336))


@pytest.mark.parametrize("cls", [nn.RNN, nn.GRU, nn.LSTM])
@pytest.mark.parametrize(
    "layers, bidir, batch_first, bias, shape",
    [(1, False, False, True, (3, 2, 7)), (3, True, True, False, (2, 5, 7)),
     (2, False, True, True, (1, 1, 7)), (2, True, False, True, (11, 3, 7))],
)  # fmt: skip
def test_stacked_configurations(cls, layers, bidir, batch_first, bias, shape):
    m = cls(7, 9, num_layers=layers, bidirectional=bidir, batch_first=batch_first, bias=bias)
    dirs = 2 if bidir else 1
    row_steps = shape[0] * shape[1]
    macs = flops = 0
    for layer in range(layers):
        step = spec_step(cls, 7 if layer == 0 else 9 * dirs, 9, bias)
        macs += step[0] * row_steps * dirs
        flops += step[1] * row_steps * dirs
    assert cost_of(m, shape) == Cost(macs, flops)


@pytest.mark.parametrize(
    "cell, cls, shape, rows",
    [(nn.RNNCell(10, 20), nn.RNN, (3, 10), 3), (nn.GRUCell(10, 20), nn.GRU, (10,), 1),
     (nn.LSTMCell(10, 20, bias=False), nn.LSTM, (4, 10), 4),
     (nn.RNNCell(10, 20, nonlinearity="relu"), nn.RNN, (2, 10), 2)],
)  # fmt: skip
def test_cells_are_one_step(cell, cls, shape, rows):
    macs, flops = spec_step(cls, 10, 20, cell.bias)
    assert cost_of(cell, shape) == Cost(rows * macs, rows * flops)


def test_lstm_cell_by_hand():
    # 4 * 20 * (10 + 20) = 2_400 macs per row; flops 4_800 + 80 + 160 + 9*20 = 5_220
    assert cost_of(nn.LSTMCell(10, 20), (3, 10)) == Cost(3 * 2_400, 3 * 5_220)


@pytest.mark.parametrize("cls", [nn.GRU, nn.LSTM])
def test_packed_sequence_counts_real_steps(cls):
    packed = pack_padded_sequence(torch.randn(3, 6, 5), [6, 4, 2], batch_first=True)
    # batch_sizes [3, 3, 2, 2, 1, 1]: 12 (row, step) pairs, not 3 * 6 = 18
    macs, flops = spec_step(cls, 5, 7, True)
    report = flopgraph.analyze(cls(5, 7, batch_first=True), (packed,))
    assert report.cost == Cost(12 * macs, 12 * flops)
    assert not report.skipped
    # GRU by hand: 3 * 7 * 12 = 252 macs per step; 504 + 21 + 42 + 56 = 623 flops
    if cls is nn.GRU:
        assert report.cost == Cost(3_024, 7_476)


def test_lstm_inside_a_model_with_meta_weights():
    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(100, 16)
            self.rnn = nn.LSTM(16, 8, batch_first=True)
            self.out = nn.Linear(8, 5)

        def forward(self, tokens):
            h, _ = self.rnn(self.emb(tokens))
            return self.out(h)

    with torch.device("meta"):
        model = Tagger()
    report = flopgraph.analyze(model, torch.zeros(2, 9, dtype=torch.long, device="meta"))
    macs, flops = spec_step(nn.LSTM, 16, 8, True)
    rows = 2 * 9
    assert report.cost == Cost(rows * macs + rows * 8 * 5, rows * flops + rows * (2 * 40 + 5))
    assert not report.skipped
