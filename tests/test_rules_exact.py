"""Each rule against counts derived by hand from the counting spec.

These tests are the ones scripts/mutate.py runs against every mutant of
flopgraph/formulas.py and flopgraph/handlers/: a rule checked only fx-against-aten
passes however wrong it is (both frontends call the same rule), so every count
here is an integer worked out in the test, with its arithmetic, from
shared spec sections A-F and docs/conventions.md. Each case runs on both
frontends unless it says why not; they are small so that the mutation run stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import flopgraph
from flopgraph import Cost

BOTH = ("fx", "aten")


class Fn(nn.Module):
    """A function of up to three inputs as a model (weights and other constants are
    closed over)."""

    def __init__(self, fn: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x, y=None, z=None):
        return self.fn(*(a for a in (x, y, z) if a is not None))


@dataclass(frozen=True)
class Case:
    id: str
    model: Callable[[], nn.Module]
    shapes: tuple[tuple[int, ...], ...]
    expected: Cost
    frontends: tuple[str, ...] = BOTH


def counted(model: nn.Module, shapes: tuple[tuple[int, ...], ...], frontend: str) -> Cost:
    report = flopgraph.analyze(
        model, tuple(flopgraph.TensorSpec(s) for s in shapes), frontend=frontend
    )
    assert not report.skipped, report.skipped
    return Cost(report.macs, report.flops)


def check(case: Case) -> None:
    for frontend in case.frontends:
        got = counted(case.model(), case.shapes, frontend)
        assert got == case.expected, f"{case.id} on {frontend}: {got} != {case.expected}"


def fn(f: Callable[..., torch.Tensor]) -> Callable[[], nn.Module]:
    return lambda: Fn(f)


def cases(*cs: Case):
    return pytest.mark.parametrize("case", cs, ids=[c.id for c in cs])


# --- A. contractions: outer, addr, vdot, inner ---------------------------------------------


@cases(
    # outer product a[5] x b[7]: a contraction over K = 1, one MAC per output element
    # (5 * 7 = 35), flops = 2 * macs
    Case("outer", fn(torch.outer), ((5,), (7,)), Cost(35, 70)),
    Case("ger", fn(torch.ger), ((5,), (7,)), Cost(35, 70)),
    Case("outer-method", fn(lambda a, b: a.outer(b)), ((4,), (3,)), Cost(12, 24)),
    # addr(M[5, 7], a[5], b[7]): the outer product (35 MACs) + one add per output element
    Case("addr", fn(torch.addr), ((5, 7), (5,), (7,)), Cost(35, 2 * 35 + 35)),
    Case("addr-method", fn(lambda m, a, b: m.addr(a, b)), ((2, 3), (2,), (3,)), Cost(6, 18)),
    # vdot(a[7], b[7]): dot over K = 7
    Case("vdot", fn(torch.vdot), ((7,), (7,)), Cost(7, 14)),
    Case("dot", fn(torch.dot), ((6,), (6,)), Cost(6, 12)),
    # inner(a[3, 7], b[4, 7]) -> out[3, 4], each a dot over K = 7: 12 * 7 = 84 MACs
    Case("inner", fn(torch.inner), ((3, 7), (4, 7)), Cost(84, 168)),
    # mv(A[4, 6], x[6]): 4 dots of 6
    Case("mv", fn(torch.mv), ((4, 6), (6,)), Cost(24, 48)),
    # bmm(A[2, 3, 5], B[2, 5, 4]): B*M*N*K = 2*3*4*5 = 120
    Case("bmm", fn(torch.bmm), ((2, 3, 5), (2, 5, 4)), Cost(120, 240)),
    # matmul broadcast A[2, 1, 3, 5] @ B[4, 5, 6] -> [2, 4, 3, 6]: 144 outputs * K = 5
    Case("matmul-broadcast", fn(torch.matmul), ((2, 1, 3, 5), (4, 5, 6)), Cost(720, 1440)),
    # x[3] @ W[3, 4]: 4 outputs of a dot over 3 (the 1-D left operand)
    Case("matmul-vec-mat", fn(lambda a, b: a @ b), ((3,), (3, 4)), Cost(12, 24)),
    # reflected: W[2, 3] on the right of a Python scalar-free x.__rmatmul__ (y @ x)
    Case("rmatmul", fn(lambda a, b: a.__rmatmul__(b)), ((3, 4), (2, 3)), Cost(24, 48),
         ("fx",)),  # fmt: skip
)
def test_contractions(case):
    check(case)
