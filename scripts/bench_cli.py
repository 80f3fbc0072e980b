"""Time the command line's start-up (issue #16), every run in a fresh process.

    python scripts/bench_cli.py              # median of 5 runs of each case
    python scripts/bench_cli.py --runs 9

Targets: ``--help`` and ``--version`` under 0.5 s; an analysis of resnet50 from the
shell within 1.5x of ``python -c "import torch, torchvision"`` plus the analysis
itself. The cases, each run once as a warm-up (not counted: it fills the disk
cache) and then ``--runs`` times, wall-clock around the whole process:

- ``python -m flopgraph --help`` and ``--version``, and the installed console
  script (``flopgraph`` next to this Python) with ``--help``;
- ``python -c "import torch, torchvision"``;
- a ``python -c`` that imports torch, torchvision and flopgraph, builds resnet50
  on the meta device in eval mode (as the command line does) and times each step
  inside: ``flopgraph.analyze`` alone (its first call, which also imports the
  analysis modules ``import flopgraph`` defers, as the command line's one call
  does; this is "the analysis" of the ratio), then a second call for comparison;
- ``flopgraph torchvision.models:resnet50 --input 1x3x224x224 --device meta
  --summary`` (``python -m flopgraph``).

It prints the machine and its load average before and after (a shared machine's
numbers are only as steady as its load), a Markdown table of medians, and the
ratio shell / (import + analysis). It writes no file but flopgraph's bytecode. Every
child imports this checkout's flopgraph (``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
CONSOLE = Path(PY).parent / "flopgraph"
RESNET50 = (
    "torchvision.models:resnet50", "--input", "1x3x224x224", "--device", "meta", "--summary",
)  # fmt: skip
IN_PROCESS = """
import json, time
t0 = time.perf_counter()
import torch, torchvision
t1 = time.perf_counter()
import flopgraph
t2 = time.perf_counter()
with torch.device("meta"):
    model = torchvision.models.resnet50().eval()
t3 = time.perf_counter()
report = flopgraph.analyze(model, (1, 3, 224, 224))
t4 = time.perf_counter()
again = flopgraph.analyze(model, (1, 3, 224, 224))
t5 = time.perf_counter()
assert again.flops == report.flops
print(json.dumps({"import_torch_torchvision": t1 - t0, "import_flopgraph": t2 - t1,
                  "build_meta": t3 - t2, "analyze": t4 - t3, "analyze_again": t5 - t4}))
"""


@dataclass
class Case:
    name: str
    argv: Sequence[str]
    walls: list[float] = field(default_factory=list)
    inside: list[dict[str, float]] = field(default_factory=list)
    """The in-process case's own timings, one dict per run."""

    def median(self, key: str | None = None) -> float:
        if key is None:
            return statistics.median(self.walls)
        return statistics.median(run[key] for run in self.inside)


def cases() -> list[Case]:
    return [
        Case("python -m flopgraph --help", [PY, "-m", "flopgraph", "--help"]),
        Case("python -m flopgraph --version", [PY, "-m", "flopgraph", "--version"]),
        Case(f"{_short(CONSOLE)} --help (console script)", [str(CONSOLE), "--help"]),
        Case('python -c "import torch, torchvision"', [PY, "-c", "import torch, torchvision"]),
        Case("python -c: imports, resnet50 on meta, analyze", [PY, "-c", IN_PROCESS]),
        Case("flopgraph resnet50 --device meta --summary", [PY, "-m", "flopgraph", *RESNET50]),
    ]


def _short(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def run_once(case: Case) -> float:
    """Run the case in a fresh process; its wall time (the in-process timings kept)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    start = time.perf_counter()
    proc = subprocess.run(case.argv, capture_output=True, text=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{case.name} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    if case.argv[-1] == IN_PROCESS:
        case.inside.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return wall


def machine() -> dict[str, object]:
    import torch
    import torchvision

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "load": os.getloadavg(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5, help="timed runs of each case (default 5)")
    a = p.parse_args(argv)
    # the bytecode an installed package has (a checkout run with PYTHONDONTWRITEBYTECODE
    # would compile its edited modules in every child)
    compileall.compile_dir(str(Path(__file__).resolve().parent.parent / "flopgraph"), quiet=1)
    info = machine()
    print(f"machine: {json.dumps(info)}", flush=True)
    todo = cases()
    for case in todo:
        run_once(case)  # warm-up, not counted
        case.inside.clear()
        for _ in range(a.runs):
            case.walls.append(run_once(case))
        print(f"{case.name}: {' '.join(f'{w:.2f}' for w in case.walls)}", flush=True)
    load_after = os.getloadavg()
    print(f"\nload average before {info['load']}, after {load_after}\n")
    print(f"| case (fresh process, median of {a.runs}) | median s | min s | max s |")
    print("|---|---:|---:|---:|")
    for case in todo:
        w = case.walls
        print(f"| `{case.name}` | {case.median():.2f} | {min(w):.2f} | {max(w):.2f} |")
    inner, shell, imports = todo[4], todo[5], todo[3]
    print("\nInside the in-process case (median s):")
    for key in (
        "import_torch_torchvision",
        "import_flopgraph",
        "build_meta",
        "analyze",
        "analyze_again",
    ):
        print(f"- {key}: {inner.median(key):.3f}")
    base = imports.median() + inner.median("analyze")
    print(
        f"\nshell {shell.median():.2f} s / (import torch, torchvision {imports.median():.2f} s "
        f"+ analysis {inner.median('analyze'):.2f} s = {base:.2f} s) = "
        f"{shell.median() / base:.2f}x (target 1.5x)"
    )
    slow = [c.name for c in todo[:3] if c.median() >= 0.5]
    print(f"--help / --version under 0.5 s: {'no: ' + ', '.join(slow) if slow else 'yes'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
