"""fx sees the whole forward or steps aside; inference mode and other threads change nothing.

- A forward that computes on tensors fx does not trace (its own parameters or
  buffers, constants it builds) runs that arithmetic outside the graph: fx fails
  with IncompleteGraphError and ``auto`` counts the model on aten, and the
  arithmetic never runs on the user's weights (fx traces data-less twins).
- ``torch.inference_mode()`` around ``analyze``, a model built under it and
  inference-tensor inputs give the counts of the ordinary case.
- Another thread's module calls are untouched while fx traces in this one.

Every expected count is derived in the test from docs/conventions.md (the spec).
"""

import threading

import pytest
import torch
from conftest import assert_untouched, snapshot
from torch import nn
from torch._subclasses.fake_tensor import is_fake

import flopgraph
from flopgraph.errors import IncompleteGraphError, TraceError

# Linear(100, 100) on 2 rows: 2*100*100 = 20,000 macs; 2*20,000 + 200 bias = 40,200 flops
LINEAR_FLOPS = 2 * (2 * 100 * 100) + 2 * 100


class SumsItsParameters(nn.Module):
    """An L1-style term over its own parameters, as regularised models compute it."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(100, 100)
        self.seen: list[bool] = []  # shared with copies: what the sum ran on

    def forward(self, x):
        self.seen.extend(p.device.type == "meta" or is_fake(p) for p in self.parameters())
        reg = sum(p.sum() for p in self.parameters())
        return self.fc(x) + reg


class Blocks(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([SumsItsParameters()])

    def forward(self, x):
        return self.blocks[0](x)


class ScaledFunctionalCall(nn.Module):
    """torch.func.functional_call with weights computed in forward."""

    def __init__(self, scale: float = 2.0):
        super().__init__()
        self.inner = nn.Linear(100, 100)
        self.scale = scale

    def forward(self, x):
        params = {k: v * self.scale for k, v in self.inner.named_parameters()}
        return torch.func.functional_call(self.inner, params, (x,))


class PlainFunctionalCall(nn.Module):
    """functional_call with the module's own weights: no arithmetic outside the graph."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(100, 100)

    def forward(self, x):
        return torch.func.functional_call(self.inner, dict(self.inner.named_parameters()), (x,))


def test_sum_over_parameters_counts_on_aten_and_names_the_op_and_module():
    model = Blocks()
    before = snapshot(model)
    r = flopgraph.analyze(model, torch.randn(2, 100))
    # weight.sum: 10,000 - 1 adds; bias.sum: 100 - 1; Python's sum: 0 + w, then + b (1 each);
    # fc(x) + reg: 2 * 100
    assert r.flops == LINEAR_FLOPS + 9_999 + 99 + 1 + 1 + 200 == 50_500
    assert r.frontend.name == "aten"
    assert "Tensor.sum on real tensors in module 'blocks.0'" in r.frontend.note
    assert "arithmetic outside the graph" in r.frontend.note
    assert_untouched(model, before)
    with pytest.raises(IncompleteGraphError, match=r"Tensor\.sum .* module 'blocks\.0' of Blocks"):
        flopgraph.analyze(model, torch.randn(2, 100), frontend="fx")
    assert issubclass(IncompleteGraphError, TraceError)
    assert_untouched(model, before)


def test_the_arithmetic_never_runs_on_the_users_weights():
    """While fx traces, ``self.parameters()`` yields data-less twins (and fake ones on
    aten): the sum runs on no real weight."""
    model = SumsItsParameters()
    with pytest.raises(IncompleteGraphError):
        flopgraph.analyze(model, torch.randn(2, 100), frontend="fx")
    flopgraph.analyze(model, torch.randn(2, 100))
    assert model.seen and all(model.seen), model.seen


def test_scaled_functional_call_counts_the_scaling():
    model = ScaledFunctionalCall()
    before = snapshot(model)
    r = flopgraph.analyze(model, torch.randn(2, 100))
    # v * 2 on the weight (10,000) and the bias (100), then the linear
    assert r.flops == 10_000 + 100 + LINEAR_FLOPS == 50_300
    assert r.frontend.name == "aten" and "Tensor.mul" in r.frontend.note
    assert_untouched(model, before)


def test_functional_call_with_the_modules_own_weights_stays_on_fx():
    model = PlainFunctionalCall()
    before = snapshot(model)
    r = flopgraph.analyze(model, torch.randn(2, 100))
    assert (r.frontend.name, r.flops) == ("fx", LINEAR_FLOPS)
    assert_untouched(model, before)


class CountsInABuffer(nn.Module):
    """A float buffer updated in place in forward (a running statistic)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("calls", torch.zeros(3))

    def forward(self, x):
        self.calls.add_(1.0)
        return x * 2


def test_in_place_float_update_of_a_buffer_is_seen_and_never_reaches_the_user():
    model = CountsInABuffer()
    before = snapshot(model)
    r = flopgraph.analyze(model, (2, 4))
    # calls + 1 on 3 elements, x * 2 on 8
    assert (r.frontend.name, r.flops) == ("aten", 3 + 8)
    assert "Tensor.add_" in r.frontend.note
    assert_untouched(model, before)
    assert torch.equal(model.calls, torch.zeros(3)) and model.calls._version == 0


class ComputedConstant(nn.Module):
    """A constant computed from a factory inside forward: real arithmetic fx never records."""

    def forward(self, x):
        return x * (torch.arange(4.0) / 4)


def test_a_constant_computed_in_forward_is_counted_as_aten_counts_it():
    r = flopgraph.analyze(ComputedConstant(), (2, 4))
    # arange is a factory (free); / 4 on 4 elements; x * c on 2 * 4
    assert (r.frontend.name, r.flops) == ("aten", 4 + 8)
    assert "torch.div" in r.frontend.note or "Tensor.div" in r.frontend.note


class SwallowsErrors(nn.Module):
    """A forward that catches every exception must not hide the arithmetic from fx."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(4))

    def forward(self, x):
        try:
            w = [p * 3 for p in self.parameters()][0]
        except Exception:
            w = self.w
        return x * w


def test_arithmetic_is_found_even_when_the_forward_catches_the_error():
    with pytest.raises(IncompleteGraphError, match="Tensor.mul"):
        flopgraph.analyze(SwallowsErrors(), (2, 4), frontend="fx")
    r = flopgraph.analyze(SwallowsErrors(), (2, 4))
    assert (r.frontend.name, r.flops) == ("aten", 4 + 8)  # p * 3, then x * w


class NoArithmeticOutside(nn.Module):
    """What a forward legitimately does on tensors fx does not proxy: slice and cast a
    float buffer, index with an integer buffer, build integer positions, read shapes
    and attributes of a buffer. None of it computes floating-point values."""

    def __init__(self):
        super().__init__()
        self.register_buffer("pe", torch.randn(1, 16, 8))
        self.register_buffer("index", torch.tensor([3, 1, 0, 2]))
        self.table = nn.Parameter(torch.randn(4, 8))
        self.emb = nn.Embedding(16, 8)

    def forward(self, x):
        pe = self.pe[:, :4].to(x.dtype).detach()
        positions = torch.arange(4)
        assert self.pe.mT.shape == (1, 8, 16)
        return x + pe + self.emb(positions) + self.table[self.index]


def test_legitimate_work_on_real_tensors_stays_on_fx():
    model = NoArithmeticOutside()
    before = snapshot(model)
    r = flopgraph.analyze(model, (2, 4, 8))
    # three adds of [2, 4, 8] (broadcast): 3 * 64
    assert (r.frontend.name, r.flops) == ("fx", 3 * 64)
    assert_untouched(model, before)


# --- torch.inference_mode ------------------------------------------------------------------


class Small(nn.Module):
    """linear, layer norm, matmul and a convolution: what inference mode used to hide."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 6)
        self.norm = nn.LayerNorm(6)
        self.conv = nn.Conv1d(2, 3, 3)

    def forward(self, x):
        y = self.norm(self.fc(x))
        return y @ y.transpose(-1, -2), self.conv(x)


# x [1, 2, 4]: fc 2*4*6 = 48 macs, 96 + 12 bias flops; norm (6 + 2 affine) * 12;
# y @ y^T [1,2,6] x [1,6,2]: 2*2*6 = 24 macs; conv 3 out ch * 2 positions * 2 in ch * 3 taps
# = 36 macs, 72 + 6 bias flops
SMALL_FLOPS = (96 + 12) + 8 * 12 + 2 * 24 + (72 + 6)


def _small_inputs():
    with torch.inference_mode():
        built_inside, x_inside = Small(), torch.randn(1, 2, 4)
    return [
        ("plain", Small(), torch.randn(1, 2, 4)),
        ("inference-tensor input", Small(), x_inside),
        ("model built in inference mode", built_inside, x_inside),
    ]


@pytest.mark.parametrize("frontend", ["fx", "aten", "auto"])
@pytest.mark.parametrize("case", range(3))
@pytest.mark.parametrize("inside", [False, True])
def test_inference_mode_changes_no_count(frontend, case, inside):
    name, model, x = _small_inputs()[case]
    # inference tensors have no version counter: their values are the check
    built_inside = next(model.parameters()).is_inference()
    before = _values(model) if built_inside else snapshot(model)
    if inside:
        with torch.inference_mode():
            r = flopgraph.analyze(model, x, frontend=frontend)
        assert torch.is_inference_mode_enabled() is False  # the caller's mode came back
    else:
        r = flopgraph.analyze(model, x, frontend=frontend)
    assert r.flops == SMALL_FLOPS == 330, name
    assert r.skipped == {}, name
    if built_inside:
        assert _values(model).keys() == before.keys()
        assert all(torch.equal(v, before[k]) for k, v in _values(model).items())
    else:
        assert_untouched(model, before)


def _values(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_inference_mode_is_the_callers_again_inside_and_after():
    with torch.inference_mode():
        flopgraph.analyze(Small(), (1, 2, 4))
        assert torch.is_inference_mode_enabled()


def test_tiny_gpt2_counts_the_same_under_inference_mode():
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=32)
    model = transformers.GPT2Model(config).eval()
    ids = torch.zeros(1, 8, dtype=torch.long)
    plain = flopgraph.analyze(model, ids)
    with torch.inference_mode():
        inside = flopgraph.analyze(model, ids)
        with torch.inference_mode():
            built_inside = transformers.GPT2Model(config).eval()
        ids_inside = torch.zeros(1, 8, dtype=torch.long)
        built = flopgraph.analyze(built_inside, ids_inside)
    assert plain.skipped == {} and plain.flops > 0
    for r in (inside, built):
        assert (r.flops, r.macs, r.skipped) == (plain.flops, plain.macs, plain.skipped)
    # and under the torch preset (aten ops only, as FlopCounterMode)
    torch_preset = flopgraph.analyze(model, ids, convention="torch")
    with torch.inference_mode():
        assert flopgraph.analyze(model, ids, convention="torch").flops == torch_preset.flops


# --- other threads -------------------------------------------------------------------------


def _worker_model():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()


def test_other_threads_module_calls_run_normally_while_fx_traces():
    """Deterministic: the fx trace stops in the middle of the forward (nn.Module.__call__
    and __getattr__ patched by torch.fx) until another thread has run its own model 200
    times; every call must give the reference output."""
    worker, x = _worker_model(), torch.randn(3, 8)
    with torch.no_grad():
        reference = worker(x)
    started, finished = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    class Waits(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            started.set()
            assert finished.wait(30)
            return self.fc(x)

    def run_worker() -> None:
        started.wait(30)
        try:
            with torch.no_grad():
                for _ in range(200):
                    assert torch.equal(worker(x), reference)
                    assert isinstance(worker[0].weight, nn.Parameter)  # __getattr__
        except BaseException as e:  # collected: an exception in a thread would be lost
            errors.append(e)
        finally:
            finished.set()

    t = threading.Thread(target=run_worker)
    t.start()
    r = flopgraph.analyze(Waits(), (2, 4), frontend="fx")
    t.join()
    assert errors == []
    assert r.frontend.name == "fx" and r.flops == 2 * (2 * 4 * 4) + 8  # Linear(4, 4), 2 rows


def test_a_thread_in_a_loop_sees_no_error_during_many_analyses():
    worker, x = _worker_model(), torch.randn(3, 8)
    with torch.no_grad():
        reference = worker(x)
    stop = threading.Event()
    calls, errors = [0], []

    def loop() -> None:
        while not stop.is_set():
            try:
                with torch.no_grad():
                    assert torch.equal(worker(x), reference)
            except BaseException as e:  # collected for the assertion below
                errors.append(e)
            calls[0] += 1

    from flopgraph.examples import LeNet

    t = threading.Thread(target=loop)
    t.start()
    try:
        alone = None
        for _ in range(5):
            r = flopgraph.analyze(LeNet(), (1, 1, 28, 28), frontend="fx")
            alone = alone or r.flops
            assert r.flops == alone
    finally:
        stop.set()
        t.join()
    assert calls[0] > 0 and errors == []


def test_fx_patcher_is_torchs_own_again_after_an_analysis():
    from torch.fx import _symbolic_trace

    original = _symbolic_trace._new_patcher
    call, getattr_ = nn.Module.__call__, nn.Module.__getattr__
    flopgraph.analyze(Blocks(), torch.randn(2, 100))
    with pytest.raises(IncompleteGraphError):
        flopgraph.analyze(Blocks(), torch.randn(2, 100), frontend="fx")
    assert _symbolic_trace._new_patcher is original
    assert (nn.Module.__call__, nn.Module.__getattr__) == (call, getattr_)
