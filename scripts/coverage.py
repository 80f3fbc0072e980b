"""Coverage report over a model zoo: skipped ops and the share of flops by op family.

Run before a release: every model is built offline and analyzed in the default
convention; a model that fails to build or trace is reported, never fatal.

    python scripts/coverage.py                 # the whole zoo, as a table
    python scripts/coverage.py --json out.json # the same data as JSON too
    python scripts/coverage.py -k timm -k vit  # only names containing one of these
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import flopgraph  # noqa: E402
from flopgraph.families import FAMILIES, flops_by_family  # noqa: E402
from flopgraph.handlers import DEFAULT  # noqa: E402
from flopgraph.zoo import ZooModel, zoo  # noqa: E402


@dataclass(frozen=True)
class Row:
    """One model's coverage: totals, skipped ops, flops by family."""

    model: str
    seconds: float
    macs: int = 0
    flops: int = 0
    ops: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    families: dict[str, int] = field(default_factory=dict)
    error: str = ""

    def share(self, family: str) -> float:
        return 100.0 * self.families.get(family, 0) / self.flops if self.flops else 0.0


def run(entry: ZooModel) -> Row:
    start = time.perf_counter()
    try:
        model = entry.build()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = flopgraph.analyze(model, entry.inputs, kwargs=entry.kwargs)
    except Exception as e:  # a coverage report lists failures, it does not stop on them
        message = str(e).strip().splitlines()
        first = message[0] if message else ""
        return Row(entry.name, time.perf_counter() - start, error=f"{type(e).__name__}: {first}")
    return Row(
        entry.name,
        time.perf_counter() - start,
        macs=report.macs,
        flops=report.flops,
        ops=len(report.records),
        skipped={op: s.count for op, s in report.skipped.items()},
        families=dict(flops_by_family(report, DEFAULT)),
    )


def table(rows: list[Row]) -> str:
    short = {"contraction": "contr", "elementwise": "elem", "reduction": "reduce",
             "normalization": "norm", "pooling": "pool", "attention": "attn",
             "recurrent": "rnn", "other": "other"}  # fmt: skip
    head = f"{'model':<44} {'GFLOPs':>9} {'s':>5} " + " ".join(f"{short[f]:>6}" for f in FAMILIES)
    lines = [head + "  skipped", "-" * (len(head) + 9)]
    for r in rows:
        if r.error:
            lines.append(f"{r.model:<44} ERROR {r.error[:110]}")
            continue
        shares = " ".join(f"{r.share(f):>6.1f}" for f in FAMILIES)
        skipped = ", ".join(f"{op} x{n}" for op, n in r.skipped.items()) or "-"
        lines.append(f"{r.model:<44} {r.flops / 1e9:>9.3f} {r.seconds:>5.1f} {shares}  {skipped}")
    failed = sum(1 for r in rows if r.error)
    with_skips = sum(1 for r in rows if r.skipped)
    lines.append(
        f"{len(rows)} models, {failed} failed, {with_skips} with skipped ops; "
        f"family columns are % of each model's flops; {sum(r.seconds for r in rows):.1f} s"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON ('-': stdout)")
    parser.add_argument("-k", action="append", default=[], help="keep names containing this")
    args = parser.parse_args(argv)
    entries = [e for e in zoo() if not args.k or any(k in e.name for k in args.k)]
    rows = []
    for entry in entries:
        rows.append(run(entry))
        print(f"{entry.name}: {rows[-1].seconds:.1f} s", file=sys.stderr, flush=True)
    if args.json == "-":
        print(json.dumps([asdict(r) for r in rows], indent=1))
    else:
        print(table(rows))
        if args.json:
            Path(args.json).write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 1 if any(r.error or r.skipped for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
