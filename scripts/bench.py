"""Time flopgraph against every installed peer, each (case, tool) in its own process.

    python scripts/bench.py                          # every case (about 12 minutes on 2 cores)
    python scripts/bench.py --cases resnet50:1 llama7b --tools flopgraph fvcore
    python scripts/bench.py depth                    # time per recorded op, 8 vs 80 layers
    python scripts/bench.py zoo --every 6 --json s.json   # against a real forward, wide zoo
    python scripts/bench.py floor                    # what any aten-level tracer pays

``zoo`` (scripts/bench_zoo.py, issue #16; ``zoo --help`` for its options) times
``analyze`` against FlopCounterMode around a real CPU forward on the models of
scripts/wide_zoo_catalog.py, at batch 1 and 8, each model in a forked child.

Cases: resnet50, vit_b_16, convnext_tiny and efficientnet_b0 at batch 1 and 32
(``name:batch``; torchvision, weights=None, on the CPU, a 224 x 224 input),
GPT-2 at 1 x 1024 tokens (a default ``GPT2Config``, on the CPU), and
Llama-shaped configs built on the meta device, without weights, at 1 x 4096
tokens: 7B (hidden 4096, 32 layers, 32 heads, intermediate 11008), 13B (5120,
40, 40, 13824) and 70B (8192, 80, 64 heads, 8 KV heads, 28672), vocabulary
32000. Transformers models use ``use_cache=False`` (one forward, no cache object
for the jit tracers to choke on).

Tools: flopgraph (``analyze`` with its defaults) and every installed peer:
FlopCounterMode, fvcore, thop, ptflops, torchprofile, calflops. On the CPU models
the peers run the model for real (that is how they count); on the meta-built
Llamas FlopCounterMode runs under FakeTensorMode and fvcore and torchprofile
jit-trace the meta model; thop, ptflops and calflops are tried as they are and
shown with their failure.

Each process builds the case, runs the tool once (warm-up), then ``reps`` more
times (5 at batch 1, 2 at batch 32, 3 for the language models), and a cheap tool
on, up to 20 runs or 2 seconds, so that its median is as steady as a slow
tool's; it reports the median wall time, the number of runs, the peak RSS of the process
(``resource.getrusage`` in the child: Python, torch and the model included) and
the tool's total in the tool's own unit. A tool that fails is shown with the
reason.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's flopgraph
os.environ.setdefault("HF_HUB_OFFLINE", "1")

VISION = ("resnet50", "vit_b_16", "convnext_tiny", "efficientnet_b0")
LLAMAS = {  # name -> (hidden, layers, heads, kv heads, intermediate)
    "llama7b": (4096, 32, 32, 32, 11008),
    "llama13b": (5120, 40, 40, 40, 13824),
    "llama70b": (8192, 80, 64, 8, 28672),
}
REPS_BATCH_1, REPS_BATCH_32, REPS_LLM = 5, 2, 3
MAX_RUNS, MORE_S = 20, 2.0


@dataclass(frozen=True)
class Case:
    label: str
    reps: int
    meta: bool
    """Built on the meta device, without weights."""


def cases() -> dict[str, Case]:
    out = {}
    for name in VISION:
        for batch in (1, 32):
            reps = REPS_BATCH_1 if batch == 1 else REPS_BATCH_32
            out[f"{name}:{batch}"] = Case(f"{name}, {batch}x3x224x224", reps, False)
    out["gpt2"] = Case("GPT-2, 1x1024 tokens", REPS_LLM, False)
    for name, (hidden, layers, *_) in LLAMAS.items():
        label = f"Llama-{name[5:].upper()} shape (hidden {hidden}, {layers} layers), 1x4096, meta"
        out[name] = Case(label, REPS_LLM, True)
    return out


def llama(hidden: int, layers: int, heads: int, kv: int, inter: int) -> Any:
    import torch
    import transformers as tf

    config = tf.LlamaConfig(
        hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=kv, intermediate_size=inter, vocab_size=32000, use_cache=False,
    )  # fmt: skip
    with torch.device("meta"):
        return tf.LlamaForCausalLM(config).eval()


def build(name: str) -> tuple[Any, Any]:
    """(model, input) for a case."""
    import torch

    tokens = torch.zeros(1, 4096, dtype=torch.int64, device="meta")
    if name in LLAMAS:
        return llama(*LLAMAS[name]), tokens
    if name.startswith("depth:"):  # the 70B shape with another number of layers
        hidden, _, heads, kv, inter = LLAMAS["llama70b"]
        return llama(hidden, int(name.split(":")[1]), heads, kv, inter), tokens
    if name == "gpt2":
        import transformers as tf

        model = tf.GPT2LMHeadModel(tf.GPT2Config(use_cache=False)).eval()
        return model, torch.zeros(1, 1024, dtype=torch.int64)
    import torchvision

    model_name, batch = name.split(":")
    model = torchvision.models.get_model(model_name, weights=None).eval()
    return model, torch.randn(int(batch), 3, 224, 224)


# --- tools: (model, input, on meta) -> (total, unit) ---------------------------------------


def _flopgraph(model: Any, x: Any, meta: bool) -> tuple[int, str]:
    import flopgraph

    report = flopgraph.analyze(model, x)
    return report.flops, f"FLOP ({report.macs:,} MAC)"


def _flop_counter_mode(model: Any, x: Any, meta: bool) -> tuple[int, str]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    if not meta:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
        return counter.get_total_flops(), "FLOP"
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode(allow_non_fake_inputs=True) as mode, torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            model(mode.from_tensor(x))
    return counter.get_total_flops(), "FLOP (under FakeTensorMode)"


def _peer(name: str) -> Callable[[Any, Any, bool], tuple[int, str]]:
    """A peer flopgraph.peers already knows how to run (same call, same unit)."""

    def run(model: Any, x: Any, meta: bool) -> tuple[int, str]:
        from flopgraph.peers.run import PEERS

        spec = next(p for p in PEERS if p.name == name)
        return spec.run(model, (x,), {}), spec.unit

    return run


def _torchprofile(model: Any, x: Any, meta: bool) -> tuple[int, str]:
    from torchprofile import profile_macs

    return int(profile_macs(model, args=(x,))), "MAC"


def _calflops(model: Any, x: Any, meta: bool) -> tuple[int, str]:
    from calflops import calculate_flops

    flops, macs, _ = calculate_flops(
        model=model, args=[x], print_results=False, print_detailed=False,
        output_as_string=False,
    )  # fmt: skip
    return int(flops), f"FLOP ({int(macs):,} MAC)"


TOOLS: dict[str, Callable[[Any, Any, bool], tuple[int, str]]] = {
    "flopgraph": _flopgraph,
    "FlopCounterMode": _flop_counter_mode,
    "fvcore": _peer("fvcore"),
    "thop": _peer("thop"),
    "ptflops": _peer("ptflops (pytorch)"),
    "torchprofile": _torchprofile,
    "calflops": _calflops,
}


# --- one measurement in this process -------------------------------------------------------


def worker(tool: str, case: str, reps: int) -> dict[str, Any]:
    import contextlib
    import io
    import warnings

    import torch

    model, x = build(case)
    run = TOOLS[tool]
    meta = x.device.type == "meta"
    sink = io.StringIO()  # peers print freely
    with contextlib.redirect_stdout(sink), warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        total, unit = run(model, x, meta)  # the first analysis in this process: cold
        first = time.perf_counter() - start
        times: list[float] = []
        # at least ``reps`` runs; a cheap tool runs on, up to MAX_RUNS or MORE_S seconds,
        # so that its median is as steady as a slow tool's on a shared machine
        while len(times) < reps or (len(times) < MAX_RUNS and sum(times) < MORE_S):
            start = time.perf_counter()
            run(model, x, meta)
            times.append(time.perf_counter() - start)
    return {
        "median_s": statistics.median(times),
        "first_s": first,
        "runs": len(times),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "total": int(total),
        "unit": unit,
    }


def compiled() -> None:
    """Write flopgraph's bytecode before fresh processes time a first analysis: an
    installed package has it, while a checkout run with PYTHONDONTWRITEBYTECODE (or
    edited since its last run) compiles its changed modules in every process, 0.05 to
    0.1 s of a first analysis that no user pays."""
    import compileall

    import flopgraph

    compileall.compile_dir(str(Path(flopgraph.__file__).parent), quiet=1)


def measure(tool: str, case: str, reps: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", tool, case, str(reps)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": _reason(proc.stderr or proc.stdout, proc.returncode)}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _reason(text: str, code: int) -> str:
    lines = text.strip().splitlines()
    errors = [ln for ln in lines if re.match(r"^(?:[\w.]+\.)?[A-Z]\w*(?:Error|Exception): ", ln)]
    line = (errors or lines or [f"exit status {code}"])[-1]
    return line.replace("|", "/")[:150]


# --- tables ---------------------------------------------------------------------------------


def table(case: Case, results: dict[str, dict[str, Any]]) -> str:
    ours = results.get("flopgraph", {}).get("median_s")
    rows = [
        f"\n### {case.label}\n",
        "| tool | median s | runs | peak RSS MB | flopgraph / tool | total |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for tool, r in results.items():
        if "error" in r:
            rows.append(f"| {tool} | cannot run: {r['error']} | | | | |")
            continue
        ratio = "" if tool == "flopgraph" or not ours else f"{ours / r['median_s']:.3f}"
        rows.append(
            f"| {tool} | {r['median_s']:.3f} | {r['runs']} | {r['peak_rss_mb']:,.0f} | {ratio} | "
            f"{r['total']:,} {r['unit']} |"
        )
    return "\n".join(rows)


def depth(layers: tuple[int, ...], reps: int, rounds: int) -> str:
    """flopgraph's time per recorded op on 70B-shaped configs of several depths: each
    depth measured in ``rounds`` fresh processes, interleaved, and the median taken,
    so that a burst of load on a shared machine does not land on one depth only."""
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in layers}
    for _ in range(rounds):
        for n in layers:
            runs[n].append(measure("flopgraph-depth", f"depth:{n}", reps))
    rows = [
        "| layers | ops (records) | first (cold) s | median s | us per op | peak RSS MB |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    per_op = []
    for n, results in runs.items():
        failed = [r["error"] for r in results if "error" in r]
        if failed:
            rows.append(f"| {n} | failed: {failed[0]} | | | | |")
            continue
        seconds = statistics.median(r["median_s"] for r in results)
        cold = statistics.median(r["first_s"] for r in results)
        ops = results[0]["total"]
        per_op.append(seconds / ops * 1e6)
        rss = max(r["peak_rss_mb"] for r in results)
        rows.append(
            f"| {n} | {ops:,} | {cold:.3f} | {seconds:.3f} | {per_op[-1]:.1f} | {rss:,.0f} |"
        )
    if len(per_op) > 1:
        rows.append(f"\nper-op time, deepest / shallowest: {per_op[-1] / per_op[0]:.3f}")
    return "\n".join(rows)


def _depth_tool(model: Any, x: Any, meta: bool) -> tuple[int, str]:
    import flopgraph

    return len(flopgraph.analyze(model, x).records), "records"


TOOLS["flopgraph-depth"] = _depth_tool


def main() -> None:
    if sys.argv[1:2] == ["zoo"]:  # its own options: see scripts/bench_zoo.py
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_zoo import main as zoo

        raise SystemExit(zoo(sys.argv[2:]))
    if sys.argv[1:2] == ["floor"]:  # its own options: see scripts/bench_floor.py
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_floor import main as floor

        raise SystemExit(floor(sys.argv[2:]))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("mode", nargs="?", choices=("tools", "depth", "zoo", "floor"), default="tools")
    ap.add_argument("--cases", nargs="+", default=list(cases()), choices=list(cases()))
    ap.add_argument("--tools", nargs="+", default=[t for t in TOOLS if t != "flopgraph-depth"])
    ap.add_argument("--layers", nargs="+", type=int, default=[8, 80])
    ap.add_argument("--rounds", type=int, default=3, help="depth mode: fresh processes per depth")
    ap.add_argument("--reps", type=int, help="repetitions after the warm-up (default: per case)")
    ap.add_argument("--worker", nargs=3, metavar=("TOOL", "CASE", "REPS"), help=argparse.SUPPRESS)
    ns = ap.parse_args()
    if ns.worker:
        tool, case, reps = ns.worker
        print(json.dumps(worker(tool, case, int(reps))))
        return
    compiled()
    if ns.mode == "depth":
        print(depth(tuple(ns.layers), ns.reps or REPS_LLM, ns.rounds))
        return
    known = cases()
    for name in ns.cases:
        case = known[name]
        reps = ns.reps or case.reps
        results = {tool: measure(tool, name, reps) for tool in ns.tools}
        print(table(Case(case.label, reps, case.meta), results), flush=True)


if __name__ == "__main__":
    main()
