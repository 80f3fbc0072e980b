"""Bad input gets a message that names what and where, on both frontends; exact counts
at any scale; models on devices this machine lacks; nothing leaks between analyses
(handlers, threads, global hooks, torch's modes). docs/reliability.md is the matrix."""

import threading

import pytest
import torch
import torch.nn.functional as F
from conftest import GLOBAL_HOOK_DICTS, assert_untouched, flop_counter_total, snapshot
from helpers import Fn
from torch import nn

import flopgraph
from flopgraph import Cost, Status, TensorSpec
from flopgraph.examples import BasicBlock, LeNet, TinyTransformerBlock

FRONTENDS = ["fx", "aten"]
aten = torch.ops.aten


class OneLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x)


# --- wrong rank, size or dtype: the failing node, its op and the shapes it saw ---------------


@pytest.mark.parametrize(
    "model, shape, fx_node, aten_op, seen, cause",
    [
        # 32 x 32 digits flatten to 576 features; fc1 takes 400
        (LeNet(), (1, 1, 32, 32), "node 'fc1' (call_module fc1: Linear)",
         "aten.addmm.default in module 'fc1'", "float32[1, 576]",
         "must have same reduction dim"),
        # a 4-d input into a Conv1d: the wrong rank
        (nn.Sequential(nn.Conv1d(3, 4, 3)), (1, 3, 8, 8), "node '_0' (call_module 0: Conv1d)",
         "Conv1d in module '0'", "float32[1, 3, 8, 8]", "Expected 2D (unbatched) or 3D"),
        # LayerNorm(5) after a Linear(4, 3): the wrong size of the last dim
        (nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(5)), (2, 4),
         "node '_1' (call_module 1: LayerNorm)",
         "aten.native_layer_norm.default in module '1'",
         "float32[2, 3]", "normalized_shape=[5]"),
        # BatchNorm2d's own Python check (no op ran): the module is named instead
        (nn.Sequential(nn.BatchNorm2d(3)), (2, 3, 4), "node '_0' (call_module 0: BatchNorm2d)",
         "BatchNorm2d in module '0'", "float32[2, 3, 4]", "expected 4D input (got 3D input)"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("frontend", FRONTENDS)
def test_wrong_rank_or_size_names_node_op_and_shapes(
    frontend, model, shape, fx_node, aten_op, seen, cause
):
    error = flopgraph.PropagationError if frontend == "fx" else flopgraph.TraceError
    with pytest.raises(error) as info:
        flopgraph.analyze(model.eval(), shape, frontend=frontend)
    msg = str(info.value)
    assert "\n" not in msg and seen in msg and cause in msg
    assert (fx_node if frontend == "fx" else aten_op) in msg
    if frontend == "aten":
        assert msg.startswith(f"the aten frontend could not run {type(model).__name__}.forward")


@pytest.mark.parametrize("dtype", [torch.int64, torch.float64, torch.complex64])
@pytest.mark.parametrize("frontend", FRONTENDS)
def test_wrong_dtype_names_node_and_dtypes(frontend, dtype):
    # fake kernels accept two dtypes in one contraction; real ones, and flopgraph, do not
    error = flopgraph.PropagationError if frontend == "fx" else flopgraph.TraceError
    with pytest.raises(error) as info:
        flopgraph.analyze(OneLinear(), TensorSpec((2, 4), dtype), frontend=frontend)
    msg = str(info.value)
    name = str(dtype).removeprefix("torch.")
    # a module with a rule is one call on aten, as on fx: the op inside it is named
    aten_op = "aten.addmm.default in module 'fc'"
    where = "node 'fc'" if frontend == "fx" else aten_op
    assert where in msg and f"{name}[2, 4]" in msg and f"input {name} and float32" in msg


@pytest.mark.parametrize(
    "bias, match",
    [
        (True, r"Input type \(double\) and bias type \(float\) should be the same"),  # torch's
        (False, "aten.convolution.default needs operands of one dtype, got input float64 and"),
    ],
)
def test_wrong_dtype_in_a_convolution_on_aten(bias, match):
    x = TensorSpec((1, 3, 8, 8), torch.float64)
    with pytest.raises(flopgraph.TraceError, match=match) as info:
        flopgraph.analyze(nn.Conv2d(3, 4, 3, bias=bias), x, frontend="aten")
    # the op that rejects the input names both operands; a check in the module's Python
    # code (the bias case) names the module and its input
    assert "failed on inputs float64[1, 3, 8, 8]" in str(info.value)


# --- inputs that do not fit forward: InputError on both frontends ---------------------------


class Two(nn.Module):
    def forward(self, x, y, *, scale):
        return (x + y) * scale


@pytest.mark.parametrize(
    "inputs, kwargs, match",
    [
        ((2, 3), {"scale": 2.0}, r"Two.forward\(x, y, \*, scale\).*missing a required arg.*'y'"),
        (((2, 3), (2, 3)), None, "missing a required argument: 'scale'"),
        (((2, 3),) * 2, {"scale": 1.0, "z": TensorSpec((1,))}, "unexpected keyword argument 'z'"),
        (((2, 3), (2, 3), (2, 3)), {"scale": 1.0}, "too many positional arguments"),
    ],
)
@pytest.mark.parametrize("frontend", ["auto", *FRONTENDS])
def test_inputs_that_do_not_fit_forward(frontend, inputs, kwargs, match):
    with pytest.raises(flopgraph.InputError, match=match):
        flopgraph.analyze(Two(), inputs, kwargs=kwargs, frontend=frontend)


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_unknown_keyword_input(frontend):
    with pytest.raises(flopgraph.InputError, match="unexpected keyword argument 'z'"):
        flopgraph.analyze(OneLinear(), (2, 4), kwargs={"z": TensorSpec((1,))}, frontend=frontend)


@pytest.mark.parametrize(
    "call",
    [
        lambda: flopgraph.analyze(lambda x: x, (1,)),
        lambda: flopgraph.analyze(nn.Linear, (1, 2)),  # the class, not a model
        lambda: flopgraph.compare(torch.zeros(2), (1,)),
        lambda: flopgraph.analyze(OneLinear(), (2, 4), kwargs=[("x", 1)]),
    ],
)
def test_not_a_module_or_not_inputs(call):
    with pytest.raises(
        flopgraph.InputError, match=r"must be a torch.nn.Module, got|must be a dict"
    ):
        call()


class Boom(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        x = self.fc(x)
        raise RuntimeError("boom in user code")


@pytest.mark.parametrize("frontend", ["auto", *FRONTENDS])
def test_forward_that_raises_names_the_line(frontend):
    with pytest.raises(flopgraph.TraceError) as info:
        flopgraph.analyze(Boom(), (2, 3), frontend=frontend)
    msg = str(info.value)
    assert "Boom" in msg and "boom in user code" in msg
    assert "test_reliability.py" in msg and 'raise RuntimeError("boom in user code")' in msg
    if frontend != "fx":  # the aten side names the module the error came out of
        assert "Boom failed on inputs float32[2, 3]" in msg


def test_registering_a_bad_target_is_refused():
    with pytest.raises(flopgraph.RegistryError, match="torch.nn.Module subclass, got int"):
        flopgraph.analyze(OneLinear(), (2, 4), handlers={int: lambda ctx: 0})


# --- custom handlers on the aten frontend and in presets: validated, handler and node named --

ADDMM_FC1 = "float32[120], float32[1, 400], float32[400, 120]"  # bias, flat input, weight.T
LINEAR_FC1 = "float32[1, 400], float32[120, 400], float32[120]"  # input, weight, bias


@pytest.mark.parametrize(
    "bad, match",
    [
        (lambda ctx: -1, "negative flops=-1"),
        (lambda ctx: Cost(-2, 0), "negative macs=-2"),
        (lambda ctx: 1.5, "returned float 1.5"),
        (lambda ctx: "many", "returned str 'many'"),
        (lambda ctx: None, "returned NoneType None"),
        (lambda ctx: True, "returned bool True"),
        (lambda ctx: Cost(0.5, 1), "macs=0.5"),
        (lambda ctx: 1 / 0, "raised ZeroDivisionError: division by zero"),
    ],
)
@pytest.mark.parametrize(
    "convention, target, where",
    [
        # one table: the default convention counts an nn.Linear by its module rule on
        # aten too, so a user's rule for the module class is the one that runs
        ("default", nn.Linear, "for fc1 at node 'Linear' (inputs float32[1, 400];"),
        ("torch", aten.addmm, f"for aten.addmm.default at node 'addmm' (inputs {ADDMM_FC1}"),
        # fvcore counts F.linear whole, as one composite
        ("fvcore", aten.linear, f"for torch._C._nn.linear at node 'linear' (inputs {LINEAR_FC1}"),
    ],
)
def test_bad_aten_handlers_are_named(convention, target, where, bad, match):
    with pytest.raises(flopgraph.HandlerError, match=match) as info:
        flopgraph.analyze(LeNet(), (1, 1, 28, 28), frontend="aten", convention=convention,
                          handlers={target: bad})  # fmt: skip
    msg = str(info.value)
    assert msg.startswith("handler '<lambda>' ") and where in msg


# --- sizes and dtypes at the edges ---------------------------------------------------------


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(4, 2),
    ).eval()  # fmt: skip


@pytest.mark.parametrize("frontend", FRONTENDS)
@pytest.mark.parametrize("model, shape", [(OneLinear(), (0, 4)), (small_cnn(), (0, 3, 8, 8))])
def test_zero_size_batch_counts_zero(frontend, model, shape):
    r = flopgraph.analyze(model, shape, frontend=frontend)
    assert (r.macs, r.flops) == (0, 0) and r.skipped == {}
    assert Status.COUNTED in {rec.status for rec in r.records}


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_zero_features_count_zero(frontend):
    # Linear(0, 3): every output is an empty sum plus the bias, 2 * 3 = 6 bias adds
    r = flopgraph.analyze(nn.Linear(0, 3), (2, 0), frontend=frontend)
    assert (r.macs, r.flops) == (0, 6)


class Sq(nn.Module):
    def forward(self, x):
        return x * x + 1


@pytest.mark.parametrize("frontend", FRONTENDS)
@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_complex_elementwise_counts(frontend, dtype):
    # one multiply and one add per element; complex results count like floats
    r = flopgraph.analyze(Sq(), TensorSpec((2, 3), dtype), frontend=frontend)
    assert r.flops == 2 * 6 and r.skipped == {}


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_complex_matmul_counts(frontend):
    # [2, 3] @ [3, 5]: 2 * 5 * 3 = 30 macs
    r = flopgraph.analyze(Fn(torch.matmul), (TensorSpec((2, 3), torch.complex64),
                                             TensorSpec((3, 5), torch.complex64)),
                          frontend=frontend)  # fmt: skip
    assert r.cost == Cost(30, 60)


class Idx(nn.Module):
    def forward(self, i):
        return (i * 3 + 1) % 7


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_integer_only_graph(frontend):
    r = flopgraph.analyze(Idx(), TensorSpec((5,), torch.int32), frontend=frontend)
    assert r.flops == 0 and r.skipped == {}
    assert {rec.status for rec in r.records} == {Status.FREE}
    assert all(rec.reason for rec in r.records)


HUGE = 100_000 * 100_000  # pixels of a 1 x 3 x 100_000 x 100_000 input


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_counts_beyond_int64_stay_exact(frontend):
    with torch.device("meta"):
        model = nn.Sequential(
            nn.Conv2d(3, 16384, 3, padding=1, bias=False),
            nn.Conv2d(16384, 16384, 3, padding=1, bias=False),
        )
    r = flopgraph.analyze(model, (1, 3, 100_000, 100_000), frontend=frontend)
    # N * Cout * H * W * Cin * 3 * 3 for each: 16384 * 1e10 * 3 * 9 + 16384 * 1e10 * 16384 * 9
    macs = 16384 * HUGE * 3 * 9 + 16384 * HUGE * 16384 * 9
    assert macs == 24_163_614_720_000_000_000 > 2**63
    assert r.macs == macs and type(r.macs) is int
    assert r.flops == 2 * macs and type(r.flops) is int
    assert r.by_module()["1"] == Cost(16384 * HUGE * 16384 * 9, 2 * 16384 * HUGE * 16384 * 9)
    assert all(type(rec.macs) is int and type(rec.flops) is int for rec in r.records)
    again = flopgraph.Report.from_json(r.to_json())
    assert again.macs == macs and type(again.macs) is int


# --- a model on a device this machine lacks ----------------------------------------------------


def fake_on(device: str, build) -> nn.Module:
    """``build()`` with parameters and buffers that are fake tensors on ``device``: what a
    model on a GPU looks like to a machine without one (torch allows fake tensors on any
    device type it knows, available or not)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with torch.device("meta"):
        model = build()
    with FakeTensorMode(allow_non_fake_inputs=True):
        return model.to_empty(device=device)


def conv_bn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())


# conv on 2 x 3 x 8 x 8: 2 * 4 * 6 * 6 * 3 * 9 = 7_776 macs; 2 * 7_776 + 288 bias = 15_840 flops;
# batch norm on 288 elements: eval (2 + 2) * 288 = 1_152, train (6 + 2) * 288 = 2_304; relu 288
CONV_BN = {False: Cost(7_776, 15_840 + 1_152 + 288), True: Cost(7_776, 15_840 + 2_304 + 288)}


@pytest.mark.parametrize("device", ["cuda", "xpu", "mps"])
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("frontend", FRONTENDS)
def test_model_on_a_device_this_machine_lacks_counts_from_shapes(frontend, training, device):
    if getattr(torch, device).is_available():
        pytest.skip(f"this machine has {device}")
    model = fake_on(device, conv_bn).train(training)
    assert {p.device.type for p in model.parameters()} == {device}
    before = snapshot(model)
    r = flopgraph.analyze(model, (2, 3, 8, 8), frontend=frontend)
    assert r.cost == CONV_BN[training] and r.skipped == {}
    if frontend == "aten":
        assert f"the model is on {device}:0, which this machine lacks" in r.frontend.note
    assert_untouched(model, before)


def test_model_on_a_missing_device_compares_and_refuses_a_real_run():
    model = fake_on("cuda", conv_bn).eval()
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert flopgraph.compare(model, (2, 3, 8, 8)).graph == CONV_BN[False]

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = model

        def forward(self, x):
            return self.body(x) if x.sum() > 0 else x

    # value-dependent control flow needs a real run, which a missing device cannot give
    with pytest.raises(flopgraph.TraceError, match="and a model on a real device"):
        flopgraph.analyze(Branchy(), torch.ones(2, 3, 8, 8))


def test_batch_norm_as_lowered_on_a_gpu_is_counted():
    """On a GPU, batch_norm lowers to aten.cudnn_batch_norm (ROCm: miopen_batch_norm),
    with native_batch_norm's arguments; a recording of one counts as batch norm."""
    from flopgraph.count_aten import count_aten
    from flopgraph.frontends.aten import AtenOp, AtenTrace
    from flopgraph.handlers import DEFAULT
    from flopgraph.records import TensorMeta

    x, c = TensorMeta((2, 4, 6, 6), "float32"), TensorMeta((4,), "float32")
    for op, outs in ((aten.cudnn_batch_norm.default, 4), (aten.miopen_batch_norm.default, 3)):
        for training, per_element in ((False, 2 + 2), (True, 6 + 2)):
            args = (x, c, c, c, c, training, 0.1, 1e-5)
            trace = AtenTrace((AtenOp(op, args, {}, (x,) + (c,) * (outs - 1), "bn"),))
            (record,) = count_aten(trace, DEFAULT)
            # 2 * 4 * 6 * 6 = 288 elements
            assert (record.op, record.flops) == ("batch_norm", per_element * 288)


# --- nothing leaks: handlers, threads, global hooks, torch's global state -----------------------


@pytest.mark.parametrize(
    "convention, target, op",
    # (the default convention counts LeNet's Linear layers by their module rule on aten
    # too, so an aten.addmm handler has nothing to replace there: nn.Linear is the case)
    [("torch", aten.addmm, "addmm"),
     # fvcore counts F.linear whole, as a composite: the handler replaces that rule too
     ("fvcore", aten.linear, "linear"), ("default", nn.Linear, "Linear"),
     ("default", F.linear, "linear")],
)  # fmt: skip
def test_per_call_handler_does_not_leak(convention, target, op):
    frontend = "aten" if isinstance(target, torch._ops.OpOverloadPacket) else "fx"
    model = LeNet() if target is not F.linear else Fn(lambda x, w: F.linear(x, w))
    inputs = (1, 1, 28, 28) if target is not F.linear else ((2, 400), (120, 400))

    def run(**kw):
        return flopgraph.analyze(model, inputs, convention=convention, frontend=frontend, **kw)

    base = run()
    over = run(handlers={target: lambda ctx: Cost(0, 1)})
    assert over.flops < base.flops
    assert [r.flops for r in over.records if r.op == op] == [1] * (1 if target is F.linear else 3)
    after = run()
    assert after == base
    if convention == "torch":  # the preset still equals FlopCounterMode
        assert after.flops == flop_counter_total(LeNet(), torch.randn(1, 1, 28, 28))


def _torch_state() -> dict:
    import logging

    from torch.overrides import _get_current_function_mode_stack
    from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

    return {
        "grad": torch.is_grad_enabled(),
        "device": torch.get_default_device(),
        "dtype": torch.get_default_dtype(),
        "dispatch_modes": len(_get_current_dispatch_mode_stack()),
        "function_modes": len(_get_current_function_mode_stack()),
        "module_call": nn.Module.__call__,
        "hooks": {n: dict(getattr(torch.nn.modules.module, n)) for n in GLOBAL_HOOK_DICTS},
        "log_filters": list(logging.getLogger("torch._subclasses.fake_tensor").filters),
    }


@pytest.mark.parametrize(
    "call",
    [
        lambda: flopgraph.analyze(LeNet(), (1, 1, 28, 28), frontend="fx"),
        lambda: flopgraph.analyze(LeNet(), (1, 1, 28, 28), frontend="aten"),
        lambda: flopgraph.analyze(LeNet(), (1, 1, 32, 32), frontend="fx"),
        lambda: flopgraph.analyze(LeNet(), (1, 1, 32, 32), frontend="aten"),
        lambda: flopgraph.analyze(Boom(), (2, 3)),
        lambda: flopgraph.analyze(LeNet(), (1, 1, 28, 28), handlers={nn.Linear: lambda c: 1 / 0}),
        lambda: flopgraph.compare(LeNet(), (1, 1, 28, 28)),
        lambda: flopgraph.compare(LeNet(), (1, 1, 32, 32)),
    ],
)
def test_torch_global_state_restored_after_success_and_failure(call):
    before = _torch_state()
    try:
        call()
    except flopgraph.FlopgraphError:
        pass
    assert _torch_state() == before
    from flopgraph.frontends.isolation import ANALYSIS_LOCK

    free = []

    def take() -> None:
        free.append(ANALYSIS_LOCK.acquire(timeout=5))
        if free[-1]:
            ANALYSIS_LOCK.release()

    t = threading.Thread(target=take)
    t.start()
    t.join()
    assert free == [True]  # the lock was released


def test_failure_leaves_no_torch_log_on_stderr(capfd):
    # a failing fake kernel makes torch log its traceback; flopgraph reports one line
    with pytest.raises(flopgraph.TraceError):
        flopgraph.analyze(LeNet(), (1, 1, 32, 32), frontend="aten")
    assert capfd.readouterr().err == ""


class Logged(nn.Module):
    """A block whose ``log`` list is shared with any shallow copy of it (as a shadow is)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.log: list = []

    def forward(self, x):
        return self.fc(x) + x


@pytest.mark.parametrize("frontend", ["fx", "aten", "compare"])
def test_global_hooks_of_the_user_never_run_on_the_shadow(frontend):
    """A global hook sees every module call in the process; without care it would see
    the shadow's, append to the list the shadow shares with the user's module, and its
    pre-hook would double the batch the analysis counts."""
    from torch.nn.modules.module import (
        register_module_forward_hook,
        register_module_forward_pre_hook,
    )

    calls: list[str] = []

    def post(module, args, out):
        calls.append(type(module).__name__)
        if hasattr(module, "log"):
            module.log.append(tuple(out.shape))

    def pre(module, args):
        calls.append("pre")
        if isinstance(module, Logged):  # doubles the batch
            return tuple(torch.cat([a, a]) for a in args)
        return None

    model = Logged()
    handles = [register_module_forward_hook(post), register_module_forward_pre_hook(pre)]
    try:
        before = snapshot(model)
        if frontend == "compare":
            cost = flopgraph.compare(model, (2, 4)).graph
        else:
            cost = flopgraph.analyze(model, (2, 4), frontend=frontend).cost
        # Linear(4, 4) on 2 rows: 32 macs, 64 + 8 bias flops; the add: 8
        assert cost == Cost(32, 80)
        assert calls == [] and model.log == []
        assert_untouched(model, before)
        model(torch.zeros(2, 4))  # still the user's hooks for the user's own calls
        assert calls and model.log == [(4, 4)]
    finally:
        for h in handles:
            h.remove()
    assert not torch.nn.modules.module._global_forward_hooks


def test_two_threads_give_the_results_of_one():
    cases = [(BasicBlock(16).train(), (2, 16, 12, 12)), (TinyTransformerBlock(), (2, 9, 64))]
    alone = [flopgraph.analyze(m, s) for m, s in cases]
    results: dict[int, list] = {0: [], 1: []}

    def work(i: int) -> None:
        for _ in range(5):
            results[i].append(flopgraph.analyze(*cases[i]))

    threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in (0, 1):
        assert len(results[i]) == 5
        assert all(r == alone[i] for r in results[i])


def _encoder() -> nn.Module:
    layer = nn.TransformerEncoderLayer(32, 2, 64, batch_first=True)
    return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()


def test_fx_aten_and_hooks_in_threads_give_the_results_of_one():
    """fx patches nn.Module.__call__ process-wide while it traces; an unguarded aten
    recording, or a leaf such as a TransformerEncoder whose forward calls its children,
    failed in another thread with 'module is not installed as a submodule'."""
    encoder = _encoder()
    cases = [
        lambda: flopgraph.analyze(BasicBlock(8).train(), (2, 8, 6, 6), frontend="aten"),
        lambda: flopgraph.analyze(TinyTransformerBlock(), (2, 5, 64), frontend="fx"),
        lambda: flopgraph.analyze(encoder, (2, 5, 32), frontend="fx"),
        lambda: flopgraph.analyze(encoder, (2, 5, 32), frontend="aten"),
        lambda: flopgraph.compare(BasicBlock(8), (2, 8, 6, 6)).hooks,
        lambda: flopgraph.analyze(LeNet(), (1, 1, 28, 28), frontend="aten", convention="torch"),
    ]
    alone = [case() for case in cases]
    results: dict[int, list] = {i: [] for i in range(len(cases))}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        for _ in range(3):
            try:
                results[i].append(cases[i]())
            except Exception as e:  # collected: a thread's exception would be lost
                errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(cases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for i, expected in enumerate(alone):
        assert results[i] == [expected] * 3


def test_an_analysis_waits_while_fx_traces_in_another_thread():
    """Deterministic form of the race above: thread A stops in the middle of an fx trace
    (nn.Module.__call__ patched); thread B's aten analysis must wait for it, not run
    its shadow through the patched __call__."""
    started, resume = threading.Event(), threading.Event()

    class Waits(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            started.set()
            resume.wait(10)
            return self.fc(x)

    encoder = _encoder()
    alone = flopgraph.analyze(encoder, (2, 5, 32), frontend="aten")
    out: dict[str, object] = {}

    def run(key, call):
        try:
            out[key] = call()
        except Exception as e:  # collected for the assertion below
            out[key] = e

    a = threading.Thread(
        target=run, args=("a", lambda: flopgraph.analyze(Waits(), (2, 4), frontend="fx"))
    )
    b = threading.Thread(
        target=run, args=("b", lambda: flopgraph.analyze(encoder, (2, 5, 32), frontend="aten"))
    )
    a.start()
    assert started.wait(10)
    b.start()
    b.join(0.5)
    waited = b.is_alive()
    resume.set()
    a.join()
    b.join()
    assert waited and out["b"] == alone
    # Linear(4, 4) on 2 rows: 32 macs; 64 + 8 bias flops
    assert out["a"].cost == Cost(32, 72)


def test_namedtuple_outputs_are_free_not_skipped():
    from typing import NamedTuple

    class Out(NamedTuple):
        main: torch.Tensor
        aux: torch.Tensor

    class TwoHeads(nn.Module):
        def forward(self, x):
            return Out(x * 2, x + 1)

    r = flopgraph.analyze(TwoHeads(), (3, 4), frontend="fx")
    assert r.skipped == {}
    assert r.flops == 2 * 12  # the multiply and the add; packing them costs nothing
    packing = [rec for rec in r.records if rec.op == "Out"]
    assert len(packing) == 1 and packing[0].status is Status.FREE
