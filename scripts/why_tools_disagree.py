"""Why FLOP counters disagree, told with flopgraph's own output.

    python scripts/why_tools_disagree.py                 # ResNet-50, 1x3x224x224
    python scripts/why_tools_disagree.py --model resnet18 --input 1x3x224x224

Builds a torchvision model (weights=None, eval mode), counts it with flopgraph
(graph and hooks) and with every installed peer (thop, ptflops on both
backends, fvcore, FlopCounterMode: these run real arithmetic on a CPU copy),
then prints, as Markdown:

1. flopgraph's multiply-adds of the contractions, the baseline every number
   starts from, and torchvision's published figure for the model;
2. each peer's total split by op, in the peer's own unit, as flopgraph's
   restatement of that peer's rules predicts it (and whether that matches
   what the peer reported);
3. flopgraph's comparison: module table, differences, peers and their
   labelled gaps down to flopgraph's FLOPs, and the reconciliation line.

docs/why-tools-disagree.md quotes this script's output for ResNet-50.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
import torchvision  # noqa: E402

import flopgraph  # noqa: E402
from flopgraph.peers.conventions import MODELS  # noqa: E402
from flopgraph.render.compare import compare_markdown  # noqa: E402
from flopgraph.units import human  # noqa: E402

CONTRACTIONS = ("conv2d", "linear", "matmul")


def shape(text: str) -> tuple[int, ...]:
    return tuple(int(s) for s in text.lower().split("x"))


def published(name: str) -> str:
    """torchvision's own figure for the model (``_ops``, in G), if it has one."""
    try:
        weights = torchvision.models.get_model_weights(name)
    except ValueError:
        return "none"
    figures = sorted({str(w.meta.get("_ops")) for w in weights if w.meta.get("_ops")})
    return ", ".join(f"{f} G" for f in figures) or "none"


def baseline(report: flopgraph.Report) -> list[str]:
    by_op = report.by_operator()
    parts = [f"{op} {by_op[op].macs:,}" for op in CONTRACTIONS if by_op.get(op, None)]
    return [
        f"- flopgraph MACs: **{report.macs:,}** = {' + '.join(parts)}",
        f"- flopgraph FLOPs: **{report.flops:,}** (default convention)",
    ]


def split(report: flopgraph.Report, model: torch.nn.Module, peer: str) -> dict[str, int]:
    """The peer's count per op, as flopgraph's restatement of its rules gives it."""
    share = MODELS[peer](model)
    out: dict[str, int] = {}
    for r in report.records:
        raw = share(r).raw
        if raw:
            out[r.op] = out.get(r.op, 0) + raw
    return out


def peer_lines(c: flopgraph.Comparison, report: flopgraph.Report, model) -> list[str]:
    lines = []
    for p in c.peers:
        if p.raw is None:
            lines.append(f"- {p.name}: {p.status} ({p.reason})")
            continue
        parts = split(report, model, p.name)
        predicted = sum(parts.values())
        terms = " + ".join(f"{op} {n:,}" for op, n in sorted(parts.items(), key=lambda kv: -kv[1]))
        check = "matches" if predicted == p.raw else f"predicted {predicted:,}"
        lines.append(
            f"- **{p.name}** reports **{p.raw:,} {p.unit}s** ({human(p.raw)}; {check}): {terms}"
        )
    return lines


def ptflops_without_patching(model: torch.nn.Module, dims: tuple[int, ...]) -> list[str]:
    """ptflops' pytorch backend with count_functional=False (its pre-0.7 behaviour):
    module hooks only, so nothing is counted twice."""
    try:
        import ptflops
    except ImportError:
        return ["- ptflops (pytorch, count_functional=False): ptflops is not installed"]
    x = torch.randn(dims)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        macs, _ = ptflops.get_model_complexity_info(
            copy.deepcopy(model), (1,), input_constructor=lambda _: {"x": x},
            as_strings=False, print_per_layer_stat=False, backend="pytorch",
            backend_specific_config={"count_functional": False},
        )  # fmt: skip
    if macs is None:
        return ["- ptflops (pytorch, count_functional=False): failed"]
    return [f"- **ptflops (pytorch, count_functional=False)** reports **{int(macs):,} MACs** "
            f"({human(int(macs))})"]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50", help="torchvision model name")
    parser.add_argument("--input", type=shape, default=(1, 3, 224, 224))
    ns = parser.parse_args(argv)
    torch.manual_seed(0)
    model = torchvision.models.get_model(ns.model, weights=None).eval()
    start = time.perf_counter()
    report = flopgraph.analyze(model, ns.input)
    c = flopgraph.compare(model, ns.input, peers=True)
    seconds = time.perf_counter() - start
    dims = "x".join(map(str, ns.input))
    out = [
        f"# {ns.model} on {dims} (torchvision, weights=None, eval)",
        "",
        *baseline(report),
        f"- torchvision's published figure (`_ops`): {published(ns.model)}",
        f"- torch {torch.__version__}, torchvision {torchvision.__version__}; "
        f"analysis, comparison and peers took {seconds:.1f} s",
        "",
        "## Each counter's total, split by op, in its own unit",
        "",
        *peer_lines(c, report, model),
        *ptflops_without_patching(model, ns.input),
        "",
        compare_markdown(c),
    ]
    print("\n".join(out))
    return 0 if c.reconciled and all(p.reconciled for p in c.peers if p.raw is not None) else 1


if __name__ == "__main__":
    raise SystemExit(main())
