"""What a peer counter reported, and its gap to flopgraph, op by op.

All gaps are stated in one unit: FLOPs as flopgraph's convention counts them.
A counter that reports multiply-adds is converted at two FLOPs per reported
unit, the definition those counters give; that conversion is itself one gap
line ("MAC vs FLOP"), so the walk from a peer's raw number to flopgraph's FLOPs
adds up exactly: ``raw + sum(gap.delta) == flopgraph FLOPs``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

from ..records import OpRecord

Unit = Literal["MAC", "FLOP"]
STATED_UNIT = "FLOPs (flopgraph's default convention; 1 reported MAC = 2 FLOPs)"

# ops whose FLOPs beyond 2 per MAC are a bias (or an added input): the bias gap
BIASED_OPS = frozenset(
    {"linear", "addmm", "addbmm", "addr", "bilinear"}
    | {f"conv{d}d" for d in (1, 2, 3)}
    | {f"conv_transpose{d}d" for d in (1, 2, 3)}
)


class GapKind(str, Enum):
    """Why a peer's number differs from flopgraph's, for one group of ops."""

    UNIT = "convention: MAC vs FLOP"
    BIAS = "convention: bias"
    OPS = "convention: which ops count"
    MISSED = "missed ops"
    DOUBLE = "counted twice"
    UNEXPLAINED = "unexplained"

    @property
    def is_convention(self) -> bool:
        return self in (GapKind.UNIT, GapKind.BIAS, GapKind.OPS)


@dataclass(frozen=True)
class Share:
    """What one peer counts for one flopgraph record, in the peer's own unit."""

    raw: int = 0
    seen: bool = True
    """False when the peer's mechanism never sees the op (a hook counter and a
    functional op), or has no rule for it."""
    bias: int = 0
    """The part of ``raw`` for a bias or added input."""
    repeat: int = 0
    """The part of ``raw`` counted a second time."""
    note: str = ""
    """How the peer counts the op (shown with its convention or missed-op gap)."""
    again: str = ""
    """What counted ``repeat`` a second time."""


@dataclass(frozen=True)
class Gap:
    """One labelled part of the distance from a peer's raw total to flopgraph's FLOPs."""

    kind: GapKind
    op: str
    """flopgraph's op name for the group (``""`` for the unit and the unexplained rest)."""
    occurrences: int
    ours: int
    """flopgraph's FLOPs for these ops (for UNIT: the peer's total converted to FLOPs;
    for UNEXPLAINED: what flopgraph's model of the peer predicted, in FLOPs)."""
    theirs: int
    """The peer's count for them, converted to FLOPs (for UNIT: its raw total)."""
    note: str = ""

    @property
    def delta(self) -> int:
        return self.ours - self.theirs

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value, "op": self.op, "occurrences": self.occurrences,
            "ours": self.ours, "theirs": self.theirs, "delta": self.delta, "note": self.note,
        }  # fmt: skip


@dataclass(frozen=True)
class PeerResult:
    """One peer counter on the same model and input."""

    name: str
    status: Literal["ok", "missing", "failed"]
    mechanism: str
    unit: Unit
    """What its number counts, by its own definition."""
    raw: int | None = None
    """Its total as it reports it."""
    graph_flops: int = 0
    """flopgraph's FLOPs for the same model and input."""
    gaps: tuple[Gap, ...] = ()
    reason: str = ""
    """Why it is missing or failed."""
    seconds: float = 0.0

    @property
    def flops(self) -> int | None:
        """Its total in the stated unit (FLOPs)."""
        if self.raw is None:
            return None
        return self.raw * (2 if self.unit == "MAC" else 1)

    @property
    def unexplained(self) -> int:
        """FLOPs known only as a leftover: the peer's total minus its restated rules."""
        return sum(g.delta for g in self.gaps if g.kind is GapKind.UNEXPLAINED)

    @property
    def reconciled(self) -> bool:
        """True when the raw total plus the named gaps (each from its own cause) is
        exactly flopgraph's FLOPs, with no unexplained gap."""
        named = sum(g.delta for g in self.gaps if g.kind is not GapKind.UNEXPLAINED)
        unexplained = any(g.kind is GapKind.UNEXPLAINED for g in self.gaps)
        return self.raw is not None and not unexplained and self.raw + named == self.graph_flops

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "status": self.status, "mechanism": self.mechanism,
            "unit": self.unit, "raw": self.raw, "flops": self.flops,
            "graph_flops": self.graph_flops, "reconciled": self.reconciled,
            "unexplained": self.unexplained,
            "gaps": [g.to_dict() for g in self.gaps], "reason": self.reason,
            "seconds": round(self.seconds, 3),
        }  # fmt: skip


ShareFn = Callable[[OpRecord], Share]


def explain(records: Iterable[OpRecord], share: ShareFn, unit: Unit, raw: int) -> tuple[Gap, ...]:
    """The labelled gaps from a peer's ``raw`` total to the FLOPs of ``records``: one
    per (kind, op) from the records and the peer's restated rules, and an UNEXPLAINED
    leftover when the peer's total is not what those rules predict."""
    factor = 2 if unit == "MAC" else 1
    groups: dict[tuple[GapKind, str], list[Any]] = {}
    predicted = 0
    for r in records:
        s = share(r)
        predicted += s.raw
        for kind, ours, theirs in _components(r, s, factor):
            if ours != theirs:
                note = s.again if kind is GapKind.DOUBLE else s.note
                g = groups.setdefault((kind, r.op), [0, 0, 0, note])
                g[0], g[1], g[2] = g[0] + 1, g[1] + ours, g[2] + theirs
    gaps = [
        Gap(k, op, n, ours, theirs, note) for (k, op), (n, ours, theirs, note) in groups.items()
    ]
    gaps.sort(key=lambda g: (list(GapKind).index(g.kind), -abs(g.delta), g.op))
    if factor != 1:
        gaps.insert(0, Gap(GapKind.UNIT, "", 0, raw * factor, raw, f"1 {unit} = {factor} FLOPs"))
    if predicted != raw:
        note = (
            f"its rules restated over flopgraph's records predict {predicted:,} {unit}s; "
            f"it reported {raw:,}"
        )
        gaps.append(Gap(GapKind.UNEXPLAINED, "", 0, predicted * factor, raw * factor, note))
    return tuple(gaps)


def _components(r: OpRecord, s: Share, factor: int) -> Iterator[tuple[GapKind, int, int]]:
    if not s.seen:
        yield GapKind.MISSED, r.flops, s.raw * factor
        return
    bias = r.flops - 2 * r.macs if r.op in BIASED_OPS else 0
    yield GapKind.BIAS, bias, s.bias * factor
    yield GapKind.DOUBLE, 0, s.repeat * factor
    yield GapKind.OPS, r.flops - bias, (s.raw - s.bias - s.repeat) * factor
