"""flopgraph.compat: thop's profile / clever_format and fvcore's FlopCountAnalysis, each
checked against the peer itself on tiny models, and the differences derived by hand."""

import pytest
import torch
from conftest import assert_untouched, snapshot
from torch import nn

from flopgraph import compat

thop = pytest.importorskip("thop")
fvcore_nn = pytest.importorskip("fvcore.nn")


def tiny_cnn() -> nn.Module:
    """Modules only, each one thop has a rule for (or that does no arithmetic)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(128, 10)
    )  # fmt: skip


X = torch.randn(1, 3, 8, 8)
# conv: out [1, 8, 8, 8] = 512 elements x (3 x 3 x 3) taps = 13_824 MACs
# linear: [1, 128] -> [1, 10]: 128 x 10 = 1_280 MACs
CNN_MACS = 13_824 + 1_280
CNN_PARAMS = (8 * 3 * 3 * 3 + 8) + (128 * 10 + 10)  # 224 + 1_290


def test_profile_equals_thop_on_a_cnn_of_modules():
    model = tiny_cnn()
    got = compat.profile(model, (X,))
    want = thop.profile(tiny_cnn(), (X,), verbose=False)
    assert got == want == (CNN_MACS, CNN_PARAMS)
    assert all(type(v) is float for v in got) and all(type(v) is float for v in want)


def test_profile_layer_info_equals_thops():
    _, _, layers = compat.profile(tiny_cnn(), (X,), ret_layer_info=True)
    _, _, want = thop.profile(tiny_cnn(), (X,), verbose=False, ret_layer_info=True)
    assert layers == want
    assert layers["0"] == (13_824, 224, {}) and layers["4"] == (1_280, 1_290, {})


class Residual(nn.Module):
    """A residual add, a functional matmul on a parameter of the root, a batch norm."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.w = nn.Parameter(torch.randn(6, 4))
        self.bn = nn.BatchNorm1d(4)

    def forward(self, x):  # x [3, 6]
        h = self.fc(x) + x
        return self.bn(h @ self.w)


def test_profile_differs_from_thop_by_the_ops_thop_cannot_see():
    model = Residual().train()
    model.bn.eval()  # a frozen batch norm: its flag must survive thop's eval mode
    before = snapshot(model)
    macs, params = compat.profile(model, (torch.randn(3, 6),))
    assert_untouched(model, before)
    thop_macs, thop_params = thop.profile(Residual(), (torch.randn(3, 6),), verbose=False)
    # thop: fc 6 x 18 outputs = 108; bn, affine: 2 x 2 x 12 elements = 48
    assert thop_macs == 108 + 48
    # flopgraph: fc 108; the matmul [3, 6] @ [6, 4]: 3 x 4 x 6 = 72 (no hook sees it);
    # the residual add (18 elements) and the batch norm have FLOPs but no MACs
    assert macs == 108 + 72
    assert macs - thop_macs == 72 - 48
    # thop counts the parameters of hooked modules only, not the root's own w
    assert thop_params == (36 + 6) + (4 + 4)
    assert params - thop_params == 6 * 4


class Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        return self.lin(x) * 2


def thop_rule(m, x, y):
    """A thop custom rule: reads the module, the input and the output."""
    m.total_ops += torch.DoubleTensor([int(3 * y.numel() + m.lin.in_features * x[0].shape[0])])


def test_profile_runs_thop_custom_rules_on_shapes():
    model = nn.Sequential(Scaled(), nn.Linear(4, 2))
    x = torch.randn(5, 4)
    before = snapshot(model)
    got = compat.profile(model, (x,), custom_ops={Scaled: thop_rule})
    assert_untouched(model, before)
    want = thop.profile(nn.Sequential(Scaled(), nn.Linear(4, 2)), (x,), {Scaled: thop_rule}, False)
    # the rule: 3 x 20 output elements + 4 x 5 rows = 80, in place of Scaled's insides;
    # then the linear 4 -> 2 on 5 rows: 40
    assert got == want == (80 + 40, (16 + 4) + (8 + 2))


@pytest.mark.parametrize(
    "nums, fmt",
    [(999, "%.2f"), (1000, "%.2f"), (1001, "%.3f"), (10**6, "%.2f"), (123_456_789, "%.1f"),
     (4.1e9, "%.2f"), (10**12 + 1, "%.2f"), ([15104.0, 1514.0], "%.3f"), ((0, 2e3), "%.2f")],
)  # fmt: skip
def test_clever_format_is_thops(nums, fmt):
    assert compat.clever_format(nums, fmt) == thop.clever_format(nums, fmt)


class Net(nn.Module):
    """fvcore has a handle for every op that computes here (relu and flatten it ignores)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 6 * 6, 5)
        self.unused = nn.Linear(2, 2)

    def forward(self, x):  # x [2, 3, 8, 8]
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def fvcore_of(model, x):
    a = fvcore_nn.FlopCountAnalysis(model, (x,))
    return a.unsupported_ops_warnings(False).uncalled_modules_warnings(False)


def test_flop_count_analysis_equals_fvcores():
    torch.manual_seed(0)
    model, x = Net().eval(), torch.randn(2, 3, 8, 8)
    ours, theirs = compat.FlopCountAnalysis(model, (x,)), fvcore_of(model, x)
    # fvcore's units, one per multiply-add: conv out [2, 4, 6, 6] = 288 x 27 taps = 7_776;
    # batch norm in eval with a weight, 2 per element: 576; fc 2 x 5 x 144 = 1_440
    assert ours.total() == theirs.total() == 7_776 + 576 + 1_440
    assert ours.by_module() == theirs.by_module()
    assert ours.by_module()["unused"] == 0 and ours.total("fc") == 1_440
    assert ours.by_operator() == theirs.by_operator()
    assert dict(ours.by_operator()) == {"conv": 7_776, "batch_norm": 576, "linear": 1_440}
    assert ours.by_operator("bn") == theirs.by_operator("bn")
    assert ours.by_module_and_operator() == theirs.by_module_and_operator()
    assert ours.uncalled_modules() == theirs.uncalled_modules() == {"unused"}
    assert ours.report.convention == "fvcore"
    with pytest.raises(KeyError, match="'nope' is not the name of a module of Net"):
        ours.total("nope")


class Softmaxed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return torch.cat([torch.relu(self.fc(x)).softmax(-1) * 2, x], 1)


def test_unsupported_ops_list_arithmetic_left_at_zero():
    model, x = Softmaxed().eval(), torch.randn(2, 4)
    ours = compat.FlopCountAnalysis(model, (x,)).unsupported_ops()
    theirs = fvcore_of(model, x)
    theirs.total()
    assert theirs.unsupported_ops() == {"aten::softmax": 1, "aten::mul": 1}
    # relu is on fvcore's silent ignore list; cat moves data and is listed by neither
    assert ours == {"softmax": 1, "mul": 1, "relu": 1}
