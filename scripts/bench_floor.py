"""What any aten-level tracer pays, against FlopCounterMode (issue #16): ``python
scripts/bench.py floor``.

    python scripts/bench.py floor                                   # the default models
    python scripts/bench.py floor --only transformers:gpt2 timm:efficientvit_b0

Per model of scripts/wide_zoo_catalog.py (built as the zoo builds it, one torch
thread, in this process), the median of ``--reps`` runs after 3 warm-ups of

- the model's real forward under ``torch.no_grad()``, nothing else;
- the same under a TorchDispatchMode that only forwards each op to its kernel: the
  least an aten-level tracer adds (flopgraph records every aten op this way);
- the same under that mode and a TorchFunctionMode that only forwards each call (the
  least a tracer that also sees torch-level calls adds; flopgraph uses both);
- FlopCounterMode around the real forward (the yardstick);
- ``flopgraph.analyze`` with its defaults.

Half of FlopCounterMode's time is issue #16's target for flopgraph's analysis. Where
the two forwarding modes alone take about that, a tracer that also builds an output
tensor and a record per op cannot meet it: the row shows the floor under the target.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

DEFAULT = (
    "transformers:gpt2", "transformers:fnet", "transformers:vit", "transformers:bloom",
    "transformers:mixtral", "transformers:gemma", "transformers:siglip",
    "transformers:pegasus", "timm:efficientvit_b0", "diffusers:UNet2DConditionModel",
)  # fmt: skip
COLUMNS = ("real", "dispatch", "dispatch+function", "FlopCounterMode", "flopgraph")


def _median_ms(fn: Callable[[], Any], reps: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def measure(key: str, reps: int) -> dict[str, float]:
    import torch
    from torch.overrides import TorchFunctionMode
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode
    from wide_zoo import built

    import flopgraph

    class Dispatch(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            return func(*args, **(kwargs or {}))

    class Function(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            return func(*args, **(kwargs or {}))

    row, model_inputs = built(key, 1)
    if model_inputs is None:
        raise RuntimeError(row.get("error", "not built"))
    model, args, kwargs = model_inputs

    def real() -> None:
        with torch.no_grad():
            model(*args, **kwargs)

    def dispatch() -> None:
        with torch.no_grad(), Dispatch():
            model(*args, **kwargs)

    def both() -> None:
        with torch.no_grad(), Dispatch(), Function():
            model(*args, **kwargs)

    def fcm() -> None:
        with torch.no_grad(), FlopCounterMode(display=False):
            model(*args, **kwargs)

    def analysis() -> None:
        flopgraph.analyze(model, args, kwargs=kwargs)

    runs = (real, dispatch, both, fcm, analysis)
    return {c: _median_ms(f, reps) for c, f in zip(COLUMNS, runs, strict=True)}


def table(rows: dict[str, dict[str, float]]) -> str:
    head = (
        "| model | real forward ms | + forwarding dispatch mode | + forwarding function mode "
        "| FlopCounterMode | target (half of it) | flopgraph | floor / target |"
    )
    lines = [head, "|---|" + "---:|" * 7]
    for key, r in rows.items():
        target = r["FlopCounterMode"] / 2
        lines.append(
            f"| {key} | {r['real']:.1f} | {r['dispatch']:.1f} | {r['dispatch+function']:.1f} "
            f"| {r['FlopCounterMode']:.1f} | {target:.1f} | {r['flopgraph']:.1f} "
            f"| {r['dispatch+function'] / target:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.py floor", description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", default=list(DEFAULT), help="catalog keys")
    p.add_argument("--reps", type=int, default=21, help="timed runs after 3 warm-ups")
    a = p.parse_args(argv)
    warnings.simplefilter("ignore")
    rows = {}
    for key in a.only:
        try:
            rows[key] = measure(key, a.reps)
        except Exception as e:  # one model's failure is one line, not the run's end
            print(f"{key}: {type(e).__name__}: {e}", file=sys.stderr)
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
