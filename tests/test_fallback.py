"""The one fallback policy (issue #11) and the usage patterns it covers.

Under ``frontend="auto"`` whatever fx cannot do (trace, propagate shapes, see a call
completely) goes to aten, with the reason in ``frontend.note``; only when both fail is
it an error, the user's cause first; a bug of flopgraph's own is an InternalError.
Every count is derived by hand from the spec (docs/conventions.md); every pattern
also checks that the user's model comes back untouched, after success and failure.
"""

from __future__ import annotations

from typing import TypedDict, Unpack

import pytest
import torch
import torch.fx
import torch.nn.functional as F
from conftest import assert_untouched, snapshot
from helpers import Fn
from torch import nn

import flopgraph
from flopgraph import (
    Cost,
    InputError,
    InternalError,
    PropagationError,
    TensorSpec,
    TraceError,
    shortcuts,
)
from flopgraph.records import TensorMeta


def _analyze(model: nn.Module, inputs, **kw) -> flopgraph.Report:
    """analyze(), asserting the model is untouched afterwards."""
    before = snapshot(model)
    try:
        return flopgraph.analyze(model, inputs, **kw)
    finally:
        assert_untouched(model, before)


def _fails(model: nn.Module, inputs, error: type[Exception], **kw) -> str:
    """The message of the ``error`` analyze() raises; the model is untouched after it."""
    before = snapshot(model)
    with pytest.raises(error) as info:
        flopgraph.analyze(model, inputs, **kw)
    assert_untouched(model, before)
    return str(info.value)


# --- item 1: contractions called with keyword arguments --------------------------------------


class KwLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 4))
        self.b = nn.Parameter(torch.randn(3))

    def forward(self, x):
        return F.linear(input=x, weight=self.w, bias=self.b)


class KwConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 2, 3, 3))
        self.b = nn.Parameter(torch.randn(3))

    def forward(self, x):
        return F.conv2d(input=x, weight=self.w, bias=self.b, padding=1)


class KwMatmul(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 5))

    def forward(self, x):
        return torch.matmul(input=x, other=self.w)


class KwModule(nn.Module):
    """A contraction module called with its input by keyword."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(input=x)


# linear x[2, 4], W[3, 4]: macs 2*4*3 = 24; flops 2*24 + 6 (bias, numel(out) = 2*3) = 54
# conv x[1, 2, 5, 5], W[3, 2, 3, 3], padding 1 -> out [1, 3, 5, 5]:
#   macs 1*3*25 * 2*9 = 1350; flops 2*1350 + 75 (bias) = 2775
# matmul [2, 3] @ [3, 5]: macs 2*3*5 = 30; flops 60
KEYWORD_CASES = [
    (KwLinear, (2, 4), Cost(24, 54)),
    (KwConv, (1, 2, 5, 5), Cost(1350, 2775)),
    (KwMatmul, (2, 3), Cost(30, 60)),
    (KwModule, (2, 4), Cost(24, 54)),
]


@pytest.mark.parametrize("frontend", ["fx", "aten", "auto"])
@pytest.mark.parametrize("build, shape, cost", KEYWORD_CASES)
def test_keyword_contractions_count_exactly(build, shape, cost, frontend):
    report = _analyze(build(), shape, frontend=frontend)
    assert report.frontend.name == ("aten" if frontend == "aten" else "fx")
    assert report.cost == cost and not report.skipped


def test_keyword_contraction_still_checks_dtypes():
    class Mixed(KwLinear):
        def forward(self, x):
            return F.linear(input=x, weight=self.w.double(), bias=None)

    msg = _fails(Mixed(), (2, 4), PropagationError, frontend="fx")
    assert "needs operands of one dtype" in msg and "float32" in msg and "float64" in msg


# --- item 2: shape shortcuts on strided views --------------------------------------------


class StridedAct(nn.Module):
    def __init__(self, act: nn.Module) -> None:
        super().__init__()
        self.act = act

    def forward(self, x):
        return self.act(x[:, ::2]).view(2, -1)


# x[:, ::2] of [2, 8, 4] is [2, 4, 4]: 32 elements
# relu: 1 flop per element = 32; eval batch norm with affine: (2 + 2) * 32 = 128
@pytest.mark.parametrize(
    "act, flops", [(nn.ReLU(), 32), (nn.GELU(), 32), (nn.BatchNorm1d(4).eval(), 4 * 32)]
)
@pytest.mark.parametrize("frontend", ["auto", "fx"])
def test_activation_on_strided_view_then_view(act, flops, frontend):
    report = _analyze(StridedAct(act), (2, 8, 4), frontend=frontend)
    assert report.frontend.name == "fx"  # the shortcut no longer breaks fx
    assert report.cost == Cost(0, flops)


@pytest.mark.parametrize("module", [nn.ReLU(), nn.Identity(), nn.BatchNorm1d(4).eval()])
@pytest.mark.parametrize(
    "view",
    [lambda x: x[:, ::2], lambda x: x.transpose(1, 2)[:, :4], lambda x: x.permute(0, 2, 1)],
)
def test_layout_shortcut_gives_the_kernels_strides(module, view):
    x = view(torch.empty(2, 8, 4, device="meta"))
    if isinstance(module, nn.BatchNorm1d) and x.shape[1] != 4:
        x = x.transpose(1, 2)
    quick = shortcuts.module_output(module, (x,), {})
    real = module.to("meta")(x)
    if quick is not None:  # a shortcut must give exactly what the op gives
        assert (quick.shape, quick.stride()) == (real.shape, real.stride())
    if not x.is_contiguous() and x.stride() != real.stride():
        assert quick is None or quick.stride() == real.stride()


# --- item 3: state reassigned in forward ---------------------------------------------------


class KeepsState(nn.Module):
    """A KV-cache-like buffer reassigned in forward."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.register_buffer("state", torch.zeros(2, 4))

    def forward(self, x):
        y = self.fc(x + self.state)
        self.state = y.detach()
        return y


class GruState(nn.Module):
    """A GRU holding its hidden state in a buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(4, 4, batch_first=True)
        self.register_buffer("h", torch.zeros(1, 2, 4))

    def forward(self, x):
        y, self.h = self.gru(x, self.h)
        return y


# KeepsState on x[2, 4]: add 8; linear 2*4*4 = 32 macs, 2*32 + 8 (bias) = 72 flops -> 80
# GruState, GRU(4, 4), x[2, 3, 4]: per step and row (I = H = 4, G = 3)
#   macs 3*4*(4 + 4) = 96; flops 2*96 + 3*4 + 2*3*4 (bias) + 8*4 (cell) = 260;
#   2 rows * 3 steps: macs 576, flops 1560
@pytest.mark.parametrize(
    "build, shape, cost, name",
    [(KeepsState, (2, 4), Cost(32, 80), "'state'"), (GruState, (2, 3, 4), Cost(576, 1560), "'h'")],
)
def test_state_reassigned_in_forward_counts_on_aten(build, shape, cost, name):
    model = build()
    report = _analyze(model, torch.randn(shape))
    assert report.frontend.name == "aten" and report.cost == cost
    assert report.frontend.note.startswith("fx was not used:") and name in report.frontend.note
    msg = _fails(model, torch.randn(shape), TraceError, frontend="fx")
    assert "assigns the tensor" in msg and name in msg


def test_state_model_left_as_it_was():
    model = KeepsState()
    state = model.state
    _analyze(model, torch.randn(2, 4))
    assert model.state is state and torch.equal(state, torch.zeros(2, 4))


# --- item 5: values a forward reads (.item(), .tolist()) and sparse inputs ------------------


class UsesItem(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x) * x.sum().item()


class UsesTolist(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x) * torch.tensor(x.sum(0).tolist())


# x[2, 4]: linear 32 macs, 2*32 + 8 = 72 flops; sum over 8 elements: 8 - 1 = 7 flops
# .item(): mul by a number, 8 -> 72 + 7 + 8 = 87
# .tolist(): sum over dim 0, 8 - 4 = 4 flops; mul by a [4] tensor, 8 -> 72 + 4 + 8 = 84
@pytest.mark.parametrize("build, cost", [(UsesItem, Cost(32, 87)), (UsesTolist, Cost(32, 84))])
def test_values_read_in_forward_count_on_aten_real_run(build, cost):
    report = _analyze(build(), torch.randn(2, 4))
    assert report.frontend.name == "aten" and report.frontend.real_run
    assert report.cost == cost


def test_item_propagation_failure_goes_to_aten():
    model = UsesItem()
    msg = _fails(model, torch.randn(2, 4), PropagationError, frontend="fx")
    assert "node 'item'" in msg  # fx alone: its own error, naming the node
    note = _analyze(model, torch.randn(2, 4)).frontend.note
    assert note.startswith("fx was not used: shape propagation failed at node 'item'")


def test_sparse_csr_input_counts_on_aten():
    class Sparse(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(4, 3))

        def forward(self, x):
            return x @ self.w

    x = torch.randn(2, 4).to_sparse_csr()
    report = _analyze(Sparse(), x)
    # [2, 4] @ [4, 3], counted dense: macs 2*4*3 = 24, flops 48
    assert report.frontend.name == "aten" and report.cost == Cost(24, 48)
    assert "sparse_csr" in report.frontend.note
    assert "strided tensors only" in _fails(Sparse(), x, TraceError, frontend="fx")


# --- seeing completely: fx.wrap'd helpers and exported graphs -------------------------------


@torch.fx.wrap
def _hidden_matmul(a, b):
    return a @ b


class WrapsHelper(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 4))

    def forward(self, x):
        return _hidden_matmul(x, self.w).relu()


def test_wrapped_helper_is_counted_on_aten():
    model = WrapsHelper()
    # fx alone keeps the helper whole: it is skipped, only the relu (2*4 = 8) counts
    fx = _analyze(model, (2, 3), frontend="fx")
    assert fx.cost == Cost(0, 8) and "_hidden_matmul" in fx.skipped
    # auto sees inside on aten: [2, 3] @ [3, 4] is 24 macs, 48 flops; + relu 8
    report = _analyze(model, (2, 3))
    assert report.frontend.name == "aten" and report.cost == Cost(24, 56)
    assert not report.skipped and "_hidden_matmul" in report.frontend.note


class _Options(TypedDict, total=False):
    scale: float


class TakesKwargs(nn.Module):
    """``forward(x, bias=0.0, **kwargs: Unpack[_Options])``, the annotation evaluated as
    in transformers' models (this file's annotations are strings)."""

    def forward(self, x, bias=0.0, **kwargs):
        return x.relu() + bias


TakesKwargs.forward.__annotations__ = {"x": torch.Tensor, "kwargs": Unpack[_Options]}


def test_fallback_note_and_input_errors_show_parameters_plainly():
    # str() of the parameter writes Unpack[...] as "**kwargs: *<class '..._Options'>"
    report = _analyze(TakesKwargs(), (2, 3))
    assert report.frontend.note == (
        "fx was not used: TakesKwargs.forward takes **kwargs: the fx frontend needs named "
        "arguments (pass them by name)"
    )
    assert report.cost == Cost(0, 2 * 3 + 2 * 3)  # relu, then the add: 6 elements each
    msg = _fails(TakesKwargs(), ((2, 3), (2, 3), (2, 3)), InputError, frontend="aten")
    assert msg == (
        "inputs do not match TakesKwargs.forward(x, bias=0.0, **kwargs): too many "
        "positional arguments"
    )


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


# the MLP on x[2, 4]: linear 2*4*8 = 64 macs, 128 + 16 (bias) = 144 flops; relu 16;
# linear 2*8*2 = 32 macs, 64 + 4 = 68 flops -> macs 96, flops 228
MLP_COST = Cost(96, 228)


def test_exported_module_counts_on_aten():
    exported = torch.export.export(_mlp().eval(), (torch.randn(2, 4),)).module()
    report = _analyze(exported, torch.randn(2, 4))
    assert report.frontend.name == "aten" and report.cost == MLP_COST and not report.skipped
    # torch.export's module checks its inputs with hooks of its own (part of the model),
    # and its graph calls aten ops: either sends it to aten, and the note says why
    note = report.frontend.note
    assert note.startswith("fx was not used") and ("hooks" in note or "aten.linear" in note)


@pytest.mark.parametrize(
    "make", [torch.jit.script, lambda m: torch.jit.trace(m, torch.randn(2, 4))]
)
@pytest.mark.parametrize("frontend", ["auto", "fx", "aten"])
def test_torchscript_modules_are_refused_clearly(make, frontend):
    scripted = make(_mlp().train())
    msg = _fails(scripted, torch.randn(2, 4), InputError, frontend=frontend)
    assert "TorchScript" in msg and "pass the original nn.Module" in msg
    assert int(scripted.training)  # nothing ran: the module is as it came


# --- item 10: exceptions that are not FlopgraphError ---------------------------------------


def test_nested_tensor_input_is_an_input_error():
    nt = torch.nested.nested_tensor([torch.randn(3, 4), torch.randn(5, 4)], layout=torch.jagged)
    for frontend in ("auto", "aten"):
        msg = _fails(nn.Linear(4, 2), nt, InputError, frontend=frontend)
        assert "nested tensor" in msg and "input 0" in msg and "to_padded_tensor" in msg


@pytest.mark.parametrize("rows", [2**62, 2**63])
def test_impossible_shape_is_an_input_error(rows):
    # 2**62 * 4 float32 = 2**66 bytes, past torch's 2**63 - 1
    msg = _fails(nn.Linear(4, 2), (rows, 4), InputError)
    assert f"({rows}, 4)" in msg and "\n" not in msg and "frame" not in msg
    with pytest.raises(InputError):
        TensorSpec((rows, 4))


def test_biggest_addressable_shape_is_accepted():
    TensorSpec((2**59 - 1, 4))  # (2**59 - 1) * 4 * 4 bytes < 2**63


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("printing failed")


class RaisesUnprintable(nn.Module):
    def forward(self, x):
        raise Unprintable()


@pytest.mark.parametrize("frontend", ["auto", "fx", "aten"])
def test_exception_whose_str_raises_does_not_mask_the_users(frontend):
    with pytest.raises(TraceError) as info:
        flopgraph.analyze(RaisesUnprintable(), (2, 4), frontend=frontend)
    msg = str(info.value)
    # the user's exception type and where it was raised, not the error from printing it
    assert "Unprintable: <Unprintable object: str() failed>" in msg
    assert "test_fallback.py:" in msg and "printing failed" not in msg


# --- both frontends fail: the user's mistake, or flopgraph's bug --------------------------


def test_wrong_shape_names_node_op_and_shapes_after_both_frontends():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    msg = _fails(model, (2, 5), PropagationError)
    assert msg.startswith("shape propagation failed at node '_0' (call_module 0: Linear)")
    assert "float32[2, 5]" in msg and "the aten frontend failed too" in msg
    assert "internal error" not in msg


def test_flopgraph_bug_on_fx_is_internal_and_auto_still_counts(monkeypatch):
    monkeypatch.setattr(shortcuts, "_like", None)  # a bug in the ReLU shortcut
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    msg = _fails(model, (2, 4), InternalError, frontend="fx")
    assert msg.startswith("internal error of flopgraph") and "node '_1'" in msg
    assert f"torch {torch.__version__}" in msg and f"flopgraph {flopgraph.__version__}" in msg
    report = _analyze(model, (2, 4))
    # linear 2*4*3 = 24 macs, 48 + 6 = 54 flops; relu 6
    assert report.frontend.name == "aten" and report.cost == Cost(24, 60)
    assert "internal error of flopgraph" in report.frontend.note


def test_flopgraph_bug_on_both_frontends_is_an_internal_error(monkeypatch):
    monkeypatch.setattr(TensorMeta, "of", None)  # every frontend records through it
    msg = _fails(nn.Sequential(nn.Linear(4, 3)), (2, 4), InternalError)
    assert msg.startswith("internal error of flopgraph")
    assert "not a problem with your model" in msg


def test_users_error_is_not_internal():
    class Broken(nn.Module):
        def forward(self, x):
            raise ValueError("the user's own bug")

    msg = _fails(Broken(), (2, 4), TraceError)
    assert "the user's own bug" in msg and "internal error" not in msg


def test_a_module_outside_the_model_tree_is_fx_s_limit_not_an_internal_error():
    # the forward calls a module through a closure: fx traces a copy of the model's tree,
    # where that object is not found; auto counts it on aten, and the note does not call
    # it a bug of flopgraph's. 3 x 4 rows of 8 into Linear(8, 2): 96 x 2 = 192 MACs
    lin = nn.Linear(8, 2)
    model = Fn(lambda x: lin(x))
    model.lin = lin
    report = flopgraph.analyze(model, (3, 4, 8))
    assert report.frontend.name == "aten" and report.cost == Cost(192, 2 * 192 + 3 * 4 * 2)
    assert "internal error" not in report.frontend.note
