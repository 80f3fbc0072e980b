"""Time flopgraph's frontends, and the tracers we did not choose, each case in its own process.

    python scripts/bench_frontends.py                       # the four cases of docs/benchmarks.md
    python scripts/bench_frontends.py --cases gpt2 fasterrcnn --tools aten make_fx export

Cases build their model on the meta device (weights=None, or a transformers config
object; nothing is downloaded): resnet50 and vit_b_16 at 1x3x224x224, GPT-2 at
1x1024 tokens, a Llama-2-7B-shaped LlamaConfig (hidden 4096, 32 layers, 32 heads,
intermediate 11008, vocab 32000) at 1x2048 tokens. For every (case, tool) pair a
fresh interpreter builds the model, runs the tool once (the first-call time is
reported: it is what a user waits for), then ``--reps`` more times (median).
Peak RSS is the process's, model construction included; "RSS before" is the
process right before the first run, so the difference is the tool's own.

Tools: ``fx``, ``aten`` and ``auto`` are flopgraph's frontends (totals: MACs and
FLOPs); ``make_fx`` (fake tensors), ``export`` (torch.export.export, non-strict)
and ``flop_counter`` (FlopCounterMode on meta tensors) are the alternatives the
aten frontend was measured against (totals: graph nodes, or FlopCounterMode's).
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
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's flopgraph

CASES = ("resnet50", "vit_b_16", "gpt2", "llama7b", "fasterrcnn")
DEFAULT_CASES = CASES[:4]
TOOLS = ("fx", "aten", "auto", "make_fx", "export", "flop_counter")


def build(case: str) -> tuple[Any, Any]:
    """(model on meta, input on meta) for a case; fasterrcnn on the CPU with one real
    320 x 320 image (its control flow needs values)."""
    import torch

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if case == "fasterrcnn":
        from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn

        torch.manual_seed(0)
        model = fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None)
        return model.eval(), [torch.rand(3, 320, 320)]
    with torch.device("meta"):
        if case in ("resnet50", "vit_b_16"):
            import torchvision

            model = torchvision.models.get_model(case, weights=None)
            return model.eval(), torch.empty(1, 3, 224, 224)
        import transformers as tf

        if case == "gpt2":
            # use_cache=False: torch.export cannot return transformers' cache object
            model = tf.GPT2LMHeadModel(tf.GPT2Config(use_cache=False))
            return model.eval(), torch.zeros(1, 1024, dtype=torch.int64)
        config = tf.LlamaConfig(
            hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
            intermediate_size=11008, vocab_size=32000, use_cache=False,
        )  # fmt: skip
        return tf.LlamaForCausalLM(config).eval(), torch.zeros(1, 2048, dtype=torch.int64)


def runner(tool: str, model: Any, x: Any) -> Callable[[], Any]:
    import torch

    if tool in ("fx", "aten", "auto"):
        import flopgraph

        def count() -> dict[str, int]:
            report = flopgraph.analyze(model, (x,) if isinstance(x, list) else x, frontend=tool)
            return {"macs": report.macs, "flops": report.flops, "ops": len(report.records)}

        return count
    if tool == "make_fx":
        from torch._subclasses.fake_tensor import FakeTensorMode
        from torch.fx.experimental.proxy_tensor import make_fx

        def trace() -> dict[str, int]:
            if isinstance(x, list):  # real images: trace on real tensors
                return {"nodes": len(make_fx(model)(x).graph.nodes)}
            # meta weights become fake tensors as the trace meets them
            with FakeTensorMode(allow_non_fake_inputs=True) as mode:
                graph = make_fx(model)(mode.from_tensor(x))
            return {"nodes": len(graph.graph.nodes)}

        return trace
    if tool == "export":
        return lambda: {"nodes": len(torch.export.export(model, (x,), strict=False).graph.nodes)}
    if tool == "flop_counter":
        from torch.utils.flop_counter import FlopCounterMode

        def fcm() -> dict[str, int]:
            with torch.no_grad(), FlopCounterMode(display=False) as fc:
                model(x)
            return {"flops": fc.get_total_flops()}

        return fcm
    raise ValueError(tool)


def worker(tool: str, case: str, reps: int) -> dict[str, Any]:
    model, x = build(case)
    run = runner(tool, model, x)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    total = run()
    first = time.perf_counter() - t0
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return {
        "first_s": first,
        "median_s": statistics.median(times) if times else first,
        "rss_before_mb": rss_before,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "total": total,
    }


def measure(tool: str, case: str, reps: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", tool, case, str(reps)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        errors = [ln for ln in lines if re.match(r"^(?:[a-z_]+\.)*[A-Z]\w+: ", ln)]
        return {"error": (errors or lines or [f"exit {proc.returncode}"])[-1][:160]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _row(tool: str, r: dict[str, Any]) -> str:
    if "error" in r:
        return f"| {tool} | failed: {r['error']} | | | | |"
    total = ", ".join(f"{k} {v:,}" for k, v in r["total"].items())
    return (
        f"| {tool} | {r['first_s']:.2f} | {r['median_s']:.2f} | {r['rss_before_mb']:.0f} | "
        f"{r['peak_rss_mb']:.0f} | {total} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES), choices=CASES)
    ap.add_argument("--tools", nargs="+", default=["fx", "aten"], choices=TOOLS)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--worker", nargs=3, metavar=("TOOL", "CASE", "REPS"))
    ns = ap.parse_args()
    if ns.worker:
        tool, case, reps = ns.worker
        print(json.dumps(worker(tool, case, int(reps))))
        return
    for case in ns.cases:
        print(f"\n### {case}\n")
        print("| tool | first s | median s | RSS before MB | peak RSS MB | total |")
        print("|---|---:|---:|---:|---:|---|")
        for tool in ns.tools:
            print(_row(tool, measure(tool, case, ns.reps)), flush=True)


if __name__ == "__main__":
    main()
