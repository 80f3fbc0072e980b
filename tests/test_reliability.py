"""Bad input gets a message that names what and where; exact counts at any scale."""

import pytest
import torch
from torch import nn

import flopgraph
from flopgraph import Cost, Status, TensorSpec


class OneLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x)


@pytest.mark.parametrize("dtype", [torch.int64, torch.float64, torch.complex64])
def test_wrong_dtype_names_node_and_dtypes(dtype):
    with pytest.raises(flopgraph.PropagationError) as info:
        flopgraph.analyze(OneLinear(), TensorSpec((2, 4), dtype))
    msg = str(info.value)
    name = str(dtype).removeprefix("torch.")
    assert "node 'fc'" in msg and f"{name}[2, 4]" in msg and f"input {name} and float32" in msg


def test_missing_input_names_the_signature():
    class Two(nn.Module):
        def forward(self, x, y):
            return x + y

    match = r"Two.forward\(x, y\).*missing a required argument: 'y'"
    with pytest.raises(flopgraph.InputError, match=match):
        flopgraph.analyze(Two(), (2, 3))


def test_unknown_keyword_input():
    with pytest.raises(flopgraph.InputError, match="unexpected keyword argument 'z'"):
        flopgraph.analyze(OneLinear(), (2, 4), kwargs={"z": TensorSpec((1,))})


def test_forward_that_raises_names_the_line():
    class Boom(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom in user code")

    with pytest.raises(flopgraph.TraceError) as info:
        flopgraph.analyze(Boom(), (2, 3))
    msg = str(info.value)
    assert "Boom" in msg and "boom in user code" in msg and "test_reliability.py" in msg


def test_zero_size_batch_counts_zero():
    r = flopgraph.analyze(OneLinear(), (0, 4))
    assert (r.macs, r.flops) == (0, 0)
    assert [rec.status for rec in r.records] == [Status.COUNTED]


def test_complex_elementwise_counts():
    class Sq(nn.Module):
        def forward(self, x):
            return x * x + 1

    # one multiply and one add per element; complex results count like floats
    assert flopgraph.analyze(Sq(), TensorSpec((2, 3), torch.complex64)).flops == 2 * 6


def test_integer_only_graph():
    class Idx(nn.Module):
        def forward(self, i):
            return (i * 3 + 1) % 7

    r = flopgraph.analyze(Idx(), TensorSpec((5,), torch.int32))
    assert r.flops == 0 and r.skipped == {}
    assert {rec.status for rec in r.records} == {Status.FREE}


def test_counts_beyond_int64_stay_exact():
    with torch.device("meta"):
        model = nn.Sequential(
            nn.Conv2d(3, 16384, 3, padding=1, bias=False),
            nn.Conv2d(16384, 16384, 3, padding=1, bias=False),
        )
    r = flopgraph.analyze(model, (1, 3, 100_000, 100_000))
    pixels = 100_000 * 100_000
    macs = 16384 * pixels * 3 * 9 + 16384 * pixels * 16384 * 9
    assert r.macs == macs and isinstance(r.macs, int)
    assert r.macs > 2**63
    assert r.flops == 2 * macs
    assert r.by_module()["1"] == Cost(16384 * pixels * 16384 * 9, 2 * 16384 * pixels * 16384 * 9)


def test_not_a_module():
    with pytest.raises(flopgraph.InputError, match="must be a torch.nn.Module, got function"):
        flopgraph.analyze(lambda x: x, (1,))


def test_registering_a_bad_target_is_refused():
    with pytest.raises(flopgraph.RegistryError, match="torch.nn.Module subclass, got int"):
        flopgraph.analyze(OneLinear(), (2, 4), handlers={int: lambda ctx: 0})


def test_two_threads_give_the_results_of_one():
    import threading

    from flopgraph.examples import BasicBlock, TinyTransformerBlock

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
