"""Time flopgraph against its peers, each tool in its own process.

    python scripts/bench.py --models resnet50 --batch 1 --reps 10

For every (model, tool) pair a fresh interpreter builds the model, runs the
tool once to warm up, then ``--reps`` more times; it reports the median wall
time and the process's peak RSS (model weights included, as a user would see
it). A tool that cannot run a case is shown with the reason.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

TOOLS = ("flopgraph", "flop_counter_mode", "fvcore")


def build(name: str) -> Any:
    import torchvision

    return torchvision.models.get_model(name, weights=None).eval()


def runner(tool: str, model: Any, x: Any) -> Callable[[], int]:
    import torch

    if tool == "flopgraph":
        import flopgraph

        return lambda: flopgraph.analyze(model, x).flops
    if tool == "flop_counter_mode":
        from torch.utils.flop_counter import FlopCounterMode

        def fcm() -> int:
            with torch.no_grad(), FlopCounterMode(display=False) as fc:
                model(x)
            return fc.get_total_flops()

        return fcm
    if tool == "fvcore":
        from fvcore.nn import FlopCountAnalysis

        def fv() -> int:
            a = FlopCountAnalysis(model, x)
            a.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            return int(a.total())

        return fv
    raise ValueError(tool)


def worker(tool: str, model_name: str, batch: int, reps: int) -> dict[str, Any]:
    import torch

    model = build(model_name)
    x = torch.randn(batch, 3, 224, 224)
    run = runner(tool, model, x)
    total = run()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"median_s": statistics.median(times), "peak_rss_mb": rss_mb, "total": total}


def measure(tool: str, model: str, batch: int, reps: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", tool, model, str(batch), str(reps)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return {"error": lines[-1] if lines else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", nargs="+", default=["resnet50"])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--tools", nargs="+", default=list(TOOLS))
    ap.add_argument("--worker", nargs=4, metavar=("TOOL", "MODEL", "BATCH", "REPS"))
    ns = ap.parse_args()
    if ns.worker:
        tool, model, batch, reps = ns.worker
        print(json.dumps(worker(tool, model, int(batch), int(reps))))
        return
    for model in ns.models:
        results = {t: measure(t, model, ns.batch, ns.reps) for t in ns.tools}
        ours = results.get("flopgraph", {}).get("median_s")
        print(f"\n### {model}, input {ns.batch}x3x224x224, median of {ns.reps}\n")
        print("| tool | median s | peak RSS MB | total reported | flopgraph / tool |")
        print("|---|---:|---:|---:|---:|")
        for tool, r in results.items():
            if "error" in r:
                print(f"| {tool} | failed: {r['error']} | | | |")
                continue
            ratio = f"{ours / r['median_s']:.2f}" if ours else ""
            print(
                f"| {tool} | {r['median_s']:.4f} | {r['peak_rss_mb']:.0f} | "
                f"{r['total']:,} | {ratio} |"
            )


if __name__ == "__main__":
    main()
