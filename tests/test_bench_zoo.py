"""scripts/bench_zoo.py (``bench.py zoo``): batching the inputs, one measurement, the tables."""

import importlib.util
import sys
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent


def load_script():
    sys.path.insert(0, str(ROOT / "scripts"))  # it imports wide_zoo from there
    spec = importlib.util.spec_from_file_location("bench_zoo", ROOT / "scripts" / "bench_zoo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bz = load_script()


def test_batched_repeats_every_tensor_with_a_first_dim_of_one():
    image, table, ids = torch.randn(1, 3, 4, 4), torch.randn(3, 4), torch.arange(5).view(1, 5)
    extra = torch.randn(1, 2)
    args, kwargs = bz.batched((image, table), {"ids": ids, "n": 4, "more": [extra]}, 8)
    assert args[0].shape == (8, 3, 4, 4)
    assert all(torch.equal(args[0][i], image[0]) for i in range(8))
    assert args[1] is table  # first dim 3: not a batch dim of 1
    assert kwargs["ids"].shape == (8, 5) and torch.equal(kwargs["ids"][7], ids[0])
    assert kwargs["n"] == 4
    assert kwargs["more"][0].shape == (8, 2)


def test_batched_is_none_without_a_batch_dim_of_one():
    images = [torch.randn(3, 8, 8), torch.randn(3, 8, 8)]  # a detection model's list
    assert bz.batched((images,), {"scale": torch.tensor(2.0)}, 8) is None


def test_measure_times_both_and_keeps_fcm_total():
    model = nn.Linear(4, 3, bias=False).eval()
    row = bz.measure(model, (torch.randn(1, 4),), {}, reps=1)
    assert row["fcm_flops"] == 2 * 1 * 4 * 3  # one 1x4 @ 4x3 matmul: 12 MACs, 2 FLOPs each
    assert abs(row["ratio"] * row["fcm_s"] / row["flopgraph_s"] - 1) < 0.02  # seconds rounded
    assert row["real_run"] is False


def test_measure_names_the_side_that_failed():
    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("no forward here")

    row = bz.measure(Broken(), (torch.randn(1, 4),), {}, reps=1)
    assert row["error"].startswith("FlopCounterMode: RuntimeError: no forward here")


def _row(key, r1, r8=None, real=False):
    def one(ratio):
        return {"ratio": ratio, "flopgraph_s": ratio, "fcm_s": 1.0, "real_run": real,
                "frontend": "aten"}  # fmt: skip

    row = {"key": key, "status": "ok", "batch1": one(r1)}
    row["batch8"] = one(r8) if r8 is not None else {"skipped": "no tensor input ..."}
    return row


def test_tables_count_the_target_and_set_real_runs_apart():
    results = {
        "a:fast": _row("a:fast", 0.2, 0.1),
        "a:edge": _row("a:edge", 0.5, 0.3),
        "b:slow": _row("b:slow", 3.0),
        "c:real": _row("c:real", 0.1, 0.1, real=True),
        "d:broken": {"key": "d:broken", "status": "setup", "error": "ImportError: x"},
    }
    text = bz.tables(results)
    assert "At or under 0.5x at batch 1: 2 of 3 models (median ratio 0.500)." in text
    assert "Ran for real (data-dependent, not held to the target): 1: c:real." in text
    assert "Not measured at batch 1: 1: d:broken" in text
    worst = text.split("Worst ten")[1].split("\n\n")[1].splitlines()[2:]
    assert [line.split(" | ")[0] for line in worst] == ["| b:slow", "| a:edge", "| a:fast"]
    assert "| b:slow | 3.000 | 3.000 / 1.000 | batch 1 only |" in text


def test_the_floor_table_sets_the_forwarding_modes_against_half_of_flop_counter_mode():
    spec = importlib.util.spec_from_file_location(
        "bench_floor", ROOT / "scripts" / "bench_floor.py"
    )
    floor = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(floor)
    row = {"real": 1.0, "dispatch": 2.0, "dispatch+function": 3.0, "FlopCounterMode": 8.0,
           "flopgraph": 20.0}  # fmt: skip
    lines = floor.table({"m": row}).splitlines()
    assert len(lines) == 3
    # the target is half of FlopCounterMode's 8 ms; both forwarding modes take 3 ms of it
    assert lines[2] == "| m | 1.0 | 2.0 | 3.0 | 8.0 | 4.0 | 20.0 | 0.75 |"
