"""Time one training step's analysis against FlopCounterMode, each tool in its own process.

    python scripts/bench_training.py                 # Llama-70B shape, 80 layers, 1 x 4096
    python scripts/bench_training.py --layers 8 --tokens 2048

The case is a Llama-70B-shaped config (hidden 8192, 64 heads, 8 KV heads,
intermediate 28672, vocabulary 128256) built on the meta device, without weights.
flopgraph analyzes one training step (forward, loss, backward, AdamW step); the
yardstick is FlopCounterMode under FakeTensorMode around the same forward and
``loss.backward()`` on the same meta model (contractions only, no optimizer). Each
tool runs in a fresh process: one warm-up, then ``--reps`` timed runs (median),
and the process's peak RSS (Python, torch and the model included). flopgraph's
MACs of every phase, forward FLOPs and optimizer FLOPs are checked against the
closed form of tests/test_training.py.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build(layers: int, tokens: int):  # type: ignore[no-untyped-def]
    import torch

    sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]
    import transformers
    from test_training import llama_70b_config

    config = llama_70b_config(layers)
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(config).train()
    ids = torch.zeros(1, tokens, dtype=torch.long, device="meta")
    return model, config, {"input_ids": ids, "labels": ids}


def run_flopgraph(model, kwargs):  # type: ignore[no-untyped-def]
    import flopgraph

    return flopgraph.analyze(model, kwargs=kwargs, training=True, optimizer="adamw")


def run_flop_counter(model, kwargs):  # type: ignore[no-untyped-def]
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils.flop_counter import FlopCounterMode

    with FakeTensorMode(allow_non_fake_inputs=True) as fake:
        params = {n: fake.from_tensor(p) for n, p in model.named_parameters()}
        buffers = {n: fake.from_tensor(b) for n, b in model.named_buffers()}
        import torch

        ids = {k: fake.from_tensor(v) for k, v in kwargs.items()}
        with FlopCounterMode(display=False) as fc:
            out = torch.func.functional_call(model, {**params, **buffers}, (), ids)
            out.loss.backward()
    return fc.get_total_flops()


def child(tool: str, layers: int, tokens: int, reps: int) -> None:
    warnings.simplefilter("ignore")
    model, config, kwargs = build(layers, tokens)
    fn = run_flopgraph if tool == "flopgraph" else run_flop_counter
    fn(model, kwargs)  # warm-up
    times, result = [], None
    for _ in range(reps):
        start = time.perf_counter()
        result = fn(model, kwargs)
        times.append(time.perf_counter() - start)
    out: dict[str, object] = {
        "tool": tool,
        "median_s": statistics.median(times),
        "runs": reps,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if tool == "flopgraph":
        from test_training import llama_step_closed_form

        want = llama_step_closed_form(config, tokens)
        phases = result.by_phase()  # type: ignore[union-attr]
        out["phases"] = {p: [c.macs, c.flops] for p, c in phases.items()}
        out["closed_form"] = (
            phases["forward"].macs == want["forward_macs"]
            and phases["backward"].macs == want["backward_macs"]
            and phases["optimizer"].flops == want["optimizer_flops"]
        )
        out["memory"] = vars(result.step.memory)  # type: ignore[union-attr]
    else:
        out["flops"] = result
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=80)
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.layers, a.tokens, a.reps)
        return
    results = []
    for tool in ("flopgraph", "FlopCounterMode"):
        cmd = [sys.executable, __file__, "--child", tool, "--layers", str(a.layers),
               "--tokens", str(a.tokens), "--reps", str(a.reps)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1"})
        if proc.returncode:
            print(f"{tool} failed: {proc.stderr[-2000:]}")
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"Llama-70B shape, {a.layers} layers, 1 x {a.tokens} tokens, AdamW")
    print(f"{'tool':<16} {'median s':>9} {'peak RSS MB':>12}")
    for r in results:
        print(f"{r['tool']:<16} {r['median_s']:>9.2f} {r['peak_rss_mb']:>12.0f}")
    if len(results) == 2:
        ratio = results[0]["median_s"] / results[1]["median_s"]
        print(f"ratio flopgraph / FlopCounterMode: {ratio:.2f}")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
