"""flopgraph against a real forward on the wide zoo (issue #16): ``python scripts/bench.py zoo``.

    python scripts/bench.py zoo --json bench-zoo.json                  # every model
    python scripts/bench.py zoo --every 6 --json sample.json           # every 6th of each family
    python scripts/bench.py zoo --family timm --only resnet --reps 5
    python scripts/bench.py zoo --json sample.json --markdown table.md # tables only, no run

Per model of scripts/wide_zoo_catalog.py, in a forked child with a timeout
(``wide_zoo.run_isolated``), on the CPU: build the model once; then at batch 1 and
at batch 8 (every tensor input whose first dim is 1 repeated to 8 along dim 0; a
model with no such input runs at batch 1 only, and its row says so) time

- FlopCounterMode around a real forward under ``torch.no_grad()``,
- ``flopgraph.analyze(model, inputs)`` with its defaults (block reuse included),

one warm-up each, then ``reps`` rounds that run the two alternately (so that a
burst of load on a shared machine hits both alike), and keep each one's median.
The ratio is flopgraph's median over FlopCounterMode's. Where flopgraph ran the
model for real (``report.frontend.real_run``: a forward whose control flow depends
on tensor values), the row is listed apart and not held to the target: flopgraph's
analysis at batch 1 at most 0.5x FlopCounterMode's time. Results go to ``--json``
after every model and a rerun resumes from it.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

BATCHES = (1, 8)
TARGET = 0.5
"""flopgraph's analysis at batch 1 at most this times FlopCounterMode's real forward."""


def batched(args: tuple, kwargs: dict, batch: int) -> tuple[tuple, dict] | None:
    """The inputs with every tensor whose first dim is 1 repeated ``batch`` times
    along dim 0; None when no tensor input has such a dim."""
    import torch
    from torch.utils._pytree import tree_map

    found = False

    def grow(x: Any) -> Any:
        nonlocal found
        if isinstance(x, torch.Tensor) and x.dim() >= 1 and x.shape[0] == 1:
            found = True
            return x.repeat(batch, *([1] * (x.dim() - 1)))
        return x

    out = tree_map(grow, (args, kwargs))
    return out if found else None


def _median_pair(fcm: Any, fg: Any, reps: int, fcm_first: int, fg_first: Any) -> dict[str, Any]:
    """``reps`` alternating rounds after the warm-ups: the medians."""
    fcm_s, fg_s = [], []
    for _ in range(reps):
        start = time.perf_counter()
        fcm()
        fcm_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        fg()
        fg_s.append(time.perf_counter() - start)
    fcm_med, fg_med = statistics.median(fcm_s), statistics.median(fg_s)
    return {
        "fcm_s": round(fcm_med, 5),
        "flopgraph_s": round(fg_med, 5),
        "ratio": round(fg_med / fcm_med, 4),
        "fcm_flops": fcm_first,
        "flopgraph_flops": fg_first[0],
        "real_run": fg_first[1],
        "frontend": fg_first[2],
    }


def measure(model: Any, args: tuple, kwargs: dict, reps: int) -> dict[str, Any]:
    """FlopCounterMode around a real no_grad forward, and ``analyze``, on these inputs."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from wide_zoo import _first_line

    import flopgraph

    def fcm() -> int:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*args, **kwargs)
        return int(counter.get_total_flops())

    def fg() -> tuple[int, bool, str]:
        report = flopgraph.analyze(model, args, kwargs=kwargs)
        return report.flops, report.frontend.real_run, report.frontend.name

    first = []
    for name, call in (("FlopCounterMode", fcm), ("flopgraph", fg)):
        try:
            first.append(call())  # the warm-up; a failure names its side
        except Exception as e:
            return {"error": f"{name}: {_first_line(e)}"}
    return _median_pair(fcm, fg, reps, *first)


def bench_one(key: str, threads: int, reps: int) -> dict[str, Any]:
    """The job for ``run_isolated``: build ``key`` once, measure it at each batch."""
    from wide_zoo import built

    row, made = built(key, threads)
    if made is None:
        return row
    model, args, kwargs = made
    for batch in BATCHES:
        inputs = (args, kwargs) if batch == 1 else batched(args, kwargs, batch)
        if inputs is None:
            row[f"batch{batch}"] = {"skipped": "no tensor input with a batch dim of 1"}
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            row[f"batch{batch}"] = measure(model, *inputs, reps)
    row["status"] = "error" if "error" in row["batch1"] else "ok"
    return row


# ---------------------------------------------------------------------------- tables


def _ratio(row: dict[str, Any], batch: int) -> float | None:
    return row.get(f"batch{batch}", {}).get("ratio")


def _real(row: dict[str, Any]) -> bool:
    return any(row.get(f"batch{b}", {}).get("real_run") for b in BATCHES)


def _cell(row: dict[str, Any], batch: int) -> tuple[str, str]:
    """(ratio, 'flopgraph s / FlopCounterMode s') for one batch, or why there is none."""
    r = row.get(f"batch{batch}")
    if r is None:
        return row.get("status", "?") + ": " + row.get("error", "")[:80].replace("|", "/"), ""
    if "skipped" in r:
        return "batch 1 only", ""
    if "error" in r:
        return "failed: " + r["error"][:80].replace("|", "/"), ""
    return f"{r['ratio']:.3f}", f"{r['flopgraph_s']:.3f} / {r['fcm_s']:.3f}"


def tables(results: dict[str, dict[str, Any]]) -> str:
    """Every model, the worst ten at batch 1, the models that ran for real, the count."""
    rows = sorted(results.values(), key=lambda r: r["key"])
    out = [
        "| model | batch 1 ratio | s flopgraph / FlopCounterMode | batch 8 ratio | "
        "s flopgraph / FlopCounterMode | frontend |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        (r1, s1), (r8, s8) = _cell(r, 1), _cell(r, 8)
        frontend = r.get("batch1", {}).get("frontend", "")
        if _real(r):
            frontend += ", ran for real"
        out.append(f"| {r['key']} | {r1} | {s1} | {r8} | {s8} | {frontend} |")
    held = [r for r in rows if _ratio(r, 1) is not None and not _real(r)]
    real = [r for r in rows if _ratio(r, 1) is not None and _real(r)]
    failed = [r for r in rows if _ratio(r, 1) is None]
    worst = sorted(held, key=lambda r: -(_ratio(r, 1) or 0.0))[:10]
    out += [
        "",
        "Worst ten at batch 1 (models that ran for real excepted):",
        "",
        "| model | batch 1 ratio | s flopgraph / FlopCounterMode | batch 8 ratio |",
        "|---|---:|---:|---:|",
    ]
    out += [
        f"| {r['key']} | {_cell(r, 1)[0]} | {_cell(r, 1)[1]} | {_cell(r, 8)[0]} |" for r in worst
    ]
    meet = [r for r in held if (_ratio(r, 1) or 0.0) <= TARGET]
    ratios = sorted(_ratio(r, 1) or 0.0 for r in held)
    out += [
        "",
        f"At or under {TARGET}x at batch 1: {len(meet)} of {len(held)} models "
        f"(median ratio {statistics.median(ratios):.3f})." if ratios else "No model measured.",
        f"Ran for real (data-dependent, not held to the target): {len(real)}"
        + (": " + ", ".join(r["key"] for r in real) if real else "") + ".",
        f"Not measured at batch 1: {len(failed)}"
        + (": " + ", ".join(f"{r['key']} ({_cell(r, 1)[0]})" for r in failed) if failed else "")
        + ".",
    ]  # fmt: skip
    return "\n".join(out)


# ---------------------------------------------------------------------------- the run


def select(families: list[str], only: list[str], every: int) -> list[str]:
    """Every ``every``-th key of each family (a sample of all of them), interleaved."""
    from wide_zoo import _interleaved
    from wide_zoo_catalog import entries

    lists = []
    for fam in families:
        keys = entries(fam)
        if only:
            keys = [k for k in keys if any(s.lower() in k.lower() for s in only)]
        lists.append(keys[:: max(1, every)])
    return _interleaved(lists)


def main(argv: list[str] | None = None) -> int:
    from wide_zoo import zoo_options
    from wide_zoo_catalog import FAMILIES

    p = argparse.ArgumentParser(
        prog="bench.py zoo", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    zoo_options(p, "bench-zoo.json", 900)
    p.add_argument("--every", type=int, default=1, help="every Nth model of each family")
    p.add_argument("--reps", type=int, default=3, help="timed runs after the warm-up (median)")
    p.add_argument("--markdown", metavar="PATH", help="also write the tables to this file")
    p.add_argument("--no-run", action="store_true", help="only print the tables from --json")
    a = p.parse_args(argv)

    from wide_zoo import _load, _machine, _preload, _save, run_all, run_isolated

    path = Path(a.json)
    data = _load(path)
    families = a.family or list(FAMILIES)
    keys = select(families, a.only, a.every)
    if not a.no_run:
        _preload(families)
        todo = [k for k in keys if k not in data["results"]]
        data["meta"].setdefault("runs", []).append(
            {**_machine(), "started": time.ctime(), "argv": sys.argv[1:]}
        )
        print(f"{len(keys)} models selected, {len(todo)} to run", flush=True)
        start = time.perf_counter()
        job = functools.partial(bench_one, reps=a.reps)

        def one(key: str) -> dict[str, Any]:
            return run_isolated(key, a.threads, a.timeout, job)

        def line(row: dict[str, Any]) -> str:
            r1, r8 = _cell(row, 1)[0], _cell(row, 8)[0]
            return f"{r1:>10} {r8:>10} {row['wall_s']:>6.1f}s"

        run_all(todo, data, path, a.jobs, one, line)
        data["meta"]["runs"][-1].update(
            seconds=round(time.perf_counter() - start, 1), load_at_end=os.getloadavg()
        )
        _save(path, data)
    text = tables({k: data["results"][k] for k in keys if k in data["results"]})
    print(text)
    if a.markdown:
        Path(a.markdown).write_text(text + "\n")
    return 0
