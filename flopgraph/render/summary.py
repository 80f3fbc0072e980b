"""The totals every report opens with, as ``(label, text)`` pairs."""

from __future__ import annotations

from ..records import Status
from ..report import FrontendInfo, Report
from ..units import format as human_format
from .cells import Units, nbytes, number, percent, shapes
from .ops import activation_bytes


def _exact(n: int, units: Units) -> str:
    """``3.64 G (3,641,327,616)``; only the exact number in raw units or below 1000."""
    short = number(n, units)
    if not isinstance(n, int):  # a formula: exact already
        return short
    return short if units == "raw" or n < 1000 else f"{short} ({n:,})"


def summary_line(report: Report) -> str:
    """``ResNet on 1×3×224×224: 4.09 GMACs, 8.24 GFLOPs, 25.56 M params, 0 skipped``:
    the totals in one line (``skipped``: ops with no handler, counted as 0)."""
    inputs = shapes(report.inputs) or "no tensor input"
    what = " (training step)" if report.step is not None else ""
    skipped = sum(s.count for s in report.skipped.values())
    return (
        f"{report.model} on {inputs}{what}: {human_format(report.macs, 'MACs')}, "
        f"{human_format(report.flops, 'FLOPs')}, {human_format(report.params.total, 'params')}, "
        f"{skipped:,} skipped"
    )


def totals_items(report: Report, units: Units = "auto") -> list[tuple[str, str]]:
    """Model and input, FLOPs and MACs under the named convention, parameters,
    buffers, activation bytes, how many ops were counted, free and skipped, and the
    frontend that counted them."""
    p = report.params
    counts = report.status_counts()
    inputs = shapes(report.inputs) or "no tensor input"
    return [
        ("model", f"{report.model} on {inputs}"),
        (
            "FLOPs",
            f"{_exact(report.flops, units)} · convention {report.convention}"
            + (" · causal attention over its triangle" if report.attention == "causal" else ""),
        ),  # fmt: skip
        ("MACs", _exact(report.macs, units)),
        *(
            [("mode", "train: dropout and batch norm, if any, count as in training")]
            if report.mode == "train" and report.step is None
            else []
        ),
        (
            "params",
            f"{_exact(p.total, units)} · trainable {p.trainable:,} · "
            f"non-trainable {p.non_trainable:,} · {nbytes(p.param_bytes, units)}",
        ),
        *moe_items(report, units),
        *symbol_items(report),
        ("buffers", f"{p.buffers:,} · {nbytes(p.buffer_bytes, units)}"),
        ("activations", f"{nbytes(activation_bytes(report), units)} written by counted ops"),
        (
            "ops",
            f"{counts[Status.COUNTED]:,} counted · {counts[Status.FREE]:,} free · "
            f"{counts[Status.SKIPPED]:,} skipped",
        ),
        *step_items(report, units),
        *frontend_items(report.frontend),
    ]


def step_items(report: Report, units: Units = "auto") -> list[tuple[str, str]]:
    """A training step's make-up: loss and optimizer, FLOPs per phase, model vs
    hardware FLOPs when activation checkpointing recomputes, peak memory in parts."""
    step = report.step
    if step is None:
        return []
    items = [
        ("step", f"loss {step.loss} · optimizer {step.optimizer or 'none'} · "
                 f"attention counted {step.attention}"),
        ("phases", " · ".join(f"{p} {_exact(c.flops, units)}"
                              for p, c in report.by_phase().items())),
    ]  # fmt: skip
    if "recompute" in report.by_phase():
        items.append(
            ("model FLOPs", f"{_exact(report.model_flops, units)} (hardware "
                            f"{_exact(report.hardware_flops, units)}, recompute included)")
        )  # fmt: skip
    m = step.memory
    if m is not None:
        items.append(
            ("peak memory", f"{nbytes(m.peak, units)} at {m.at} · params "
                            f"{nbytes(m.parameters, units)} · grads {nbytes(m.gradients, units)}"
                            f" · optimizer state {nbytes(m.optimizer_state, units)} · "
                            f"activations {nbytes(m.activations, units)}")
        )  # fmt: skip
    if step.note:
        items.append(("step note", step.note))
    return items


REAL_RUN = "real run: the forward ran on real tensors; counts are the branch it took"


def frontend_items(info: FrontendInfo) -> list[tuple[str, str]]:
    """Which frontend counted, whether its forward ran for real (control flow on
    values), and its note (after a fallback: why fx was not used)."""
    items = [("frontend", info.name + (f" · {REAL_RUN}" if info.real_run else ""))]
    if info.note:
        items.append(("note", info.note))
    return items


def skipped_items(report: Report, shown: int = 3) -> list[tuple[str, int, str]]:
    """``(op, count, where)`` per skipped op name, ``where`` naming up to ``shown`` modules."""
    out = []
    for op, s in report.skipped.items():
        places = list(dict.fromkeys(w or "(model)" for w in s.where))
        extra = f", +{len(places) - shown} more" if len(places) > shown else ""
        where = ", ".join(places[:shown]) + extra
        out.append((op, s.count, where))
    return out


def moe_items(report: Report, units: Units) -> list[tuple[str, str]]:
    """For a mixture-of-experts model: what one token uses, and the routed work."""
    p = report.params
    if p.active is None or p.active == p.total:
        return []
    routed = [r for r in report.records if r.routing is not None]
    kinds = sorted({(r.routing.k, r.routing.experts) for r in routed if r.routing})
    shown = ", ".join(f"{k} of {e}" for k, e in kinds) or "k of E"
    flops = sum(r.flops for r in routed)
    return [
        ("active params", f"{_exact(p.active, units)} per token ({shown} routed experts)"),
        ("routed FLOPs", f"{_exact(flops, units)} · {percent(flops, report.flops)} of the total"),
    ]


def symbol_items(report: Report) -> list[tuple[str, str]]:
    """For a symbolic analysis: its sizes and what the trace assumed of them."""
    if not report.symbols:
        return []
    return [
        ("sizes", ", ".join(report.symbols) + " (symbolic: counts are formulas; .subs() them)"),
        ("assumes", "; ".join(report.assumptions)),
    ]
