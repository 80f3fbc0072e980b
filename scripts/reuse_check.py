"""Prove block reuse exact on the wide zoo: every model analyzed on the aten frontend
with and without replaying repeated blocks, records and report compared whole.

    python scripts/reuse_check.py --json reuse.json            # every model of the zoo
    python scripts/reuse_check.py --family transformers --only llama
    python scripts/reuse_check.py --generation --family transformers --json gen.json

Per model (built as scripts/wide_zoo.py builds it, in a forked child with a timeout):
``analyze(model, inputs, frontend="aten", reuse=False)`` and the same with
``reuse=True``, then once more without (the first run warms the process up; the
times kept are the last two); ``equal`` when the two reports' JSON are identical (every record:
node, op, module, shapes, MACs, FLOPs, bytes; the module calls) and neither failed.
Reuse applies only where the forward runs on fake tensors, so ``real`` rows (value-
dependent forwards that ran for real) compare two plain runs. The seconds of both
analyses are kept: the speed-up is the point of reuse.

``--generation``: each model with a key/value cache argument (the causal LMs) through
``flopgraph.generation(model, prompt=5, new_tokens=3)`` with and without reuse
instead: the totals, both formulas in c, the prefill's records and a decode step's
records at c = 9 compared (the step reads every layer's part of the cache the replayed
prefill wrote); models without a cache are ``skipped``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from wide_zoo import (  # noqa: E402
    _first_line,
    _interleaved,
    _load,
    _preload,
    built,
    run_all,
    run_isolated,
    zoo_options,
)
from wide_zoo_catalog import FAMILIES, entries  # noqa: E402


def check_one(key: str, threads: int) -> dict[str, Any]:
    import flopgraph

    row, made = built(key, threads)
    if made is None:
        return row
    model, args, kwargs = made
    reports = {}
    for reuse in (False, True, False):  # the first run warms up: the third is timed
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rep = flopgraph.analyze(model, args, kwargs=kwargs, frontend="aten", reuse=reuse)
        except Exception as e:
            row[f"reuse={reuse}"] = {"error": _first_line(e)}
            continue
        row[f"reuse={reuse}"] = {"seconds": round(time.perf_counter() - start, 3),
                                 "flops": rep.flops, "records": len(rep.records)}  # fmt: skip
        reports[reuse] = rep
    if len(reports) < 2:
        both_failed = not reports
        return {**row, "status": "failed" if both_failed else "differs"}
    row["real"] = reports[True].frontend.real_run
    row["status"] = "equal" if reports[False].to_json() == reports[True].to_json() else "differs"
    return row


def check_generation(key: str, threads: int) -> dict[str, Any]:
    import flopgraph
    from flopgraph.errors import InputError
    from flopgraph.generation import _cache_argument

    row, made = built(key, threads)
    if made is None:
        return row
    model = made[0]
    try:
        _cache_argument(model)
    except InputError:
        return {**row, "status": "skipped"}
    seen = {}
    for reuse in (False, True):
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                g = flopgraph.generation(model, prompt=5, new_tokens=3, reuse=reuse)
                step = g.decode(9)
        except Exception as e:
            row[f"reuse={reuse}"] = {"error": _first_line(e)}
            continue
        row[f"reuse={reuse}"] = {"seconds": round(time.perf_counter() - start, 3),
                                 "flops": g.total.flops}  # fmt: skip
        seen[reuse] = (g.total, g.formula, g.cache_bytes, g.prefill.to_json(), step.to_json())
    if len(seen) < 2:
        return {**row, "status": "failed" if not seen else "differs"}
    row["status"] = "equal" if seen[False] == seen[True] else "differs"
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    zoo_options(p, "reuse-check.json", 300)
    p.add_argument("--generation", action="store_true", help="compare generation() instead")
    a = p.parse_args(argv)
    families = a.family or list(FAMILIES)
    _preload(families)
    keys = _interleaved([entries(f) for f in families])
    if a.only:
        keys = [k for k in keys if any(s.lower() in k.lower() for s in a.only)]
    path = Path(a.json)
    data = _load(path)
    todo = [k for k in keys if k not in data["results"]]
    print(f"{len(keys)} models, {len(todo)} to run", flush=True)

    def one(key: str) -> dict[str, Any]:
        check = check_generation if a.generation else check_one
        return run_isolated(key, a.threads, a.timeout, check)

    def line(row: dict[str, Any]) -> str:
        off, on = row.get("reuse=False", {}), row.get("reuse=True", {})
        times = f"{off.get('seconds', '-')} s -> {on.get('seconds', '-')} s"
        return f"{row['status']:<8} {times} {row.get('error', '')}"

    run_all(todo, data, path, a.jobs, one, line)
    counts = Counter(r["status"] for k, r in data["results"].items() if k in keys)
    print(json.dumps(dict(counts)))
    return 1 if counts.get("differs") else 0


if __name__ == "__main__":
    raise SystemExit(main())
