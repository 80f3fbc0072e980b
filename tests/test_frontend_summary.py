"""The totals every rendering opens with say which frontend counted, why fx was not
used after a fallback, and whether the forward ran for real."""

import json
import re
from pathlib import Path

import helpers
import torch
from helpers import ValueBranch
from test_cli import run_cli
from test_render import rendered
from torch import nn

import flopgraph
from flopgraph.render import render_text
from flopgraph.render.summary import REAL_RUN
from flopgraph.render.terminal import render_report


def rows(text: str) -> dict[str, str]:
    """The totals panel's ``label -> text``, wrapped lines joined."""
    out: dict[str, str] = {}
    label = None
    for line in text.splitlines():
        m = re.match(r"│ (\S+)?\s+(.*?)\s*│$", line)
        if not m:
            continue
        if m.group(1):  # a label; a wrapped line starts with spaces
            label = m.group(1)
            out[label] = m.group(2)
        elif label is not None:
            out[label] += " " + m.group(2)
    return out


def test_fx_shows_its_name_and_no_note():
    report = flopgraph.analyze(nn.Linear(8, 4), (2, 8))
    shown = rows(rendered(render_report(report), width=100))
    assert shown["frontend"] == "fx" and "note" not in shown


def test_a_real_run_after_a_fallback_says_both():
    report = flopgraph.analyze(ValueBranch().eval(), torch.ones(2, 8))
    assert report.frontend.real_run
    shown = rows(rendered(render_report(report), width=100))
    assert shown["frontend"] == f"aten · {REAL_RUN}"
    # the note says why fx was not used (the line of the branch) and why it ran for real
    assert shown["note"].startswith("fx was not used: torch.fx could not trace ValueBranch")
    assert "if x.mean() > 0:" in shown["note"]
    assert "ran for real on copies of the inputs and weights" in shown["note"]
    markdown = render_text(report, "markdown")
    assert f"| frontend | aten · {REAL_RUN} |" in markdown
    assert "| note | fx was not used:" in markdown


def test_the_command_line_prints_the_fallback_reason():
    path = Path(helpers.__file__)
    proc = run_cli(f"{path}:AssertingResidual", "--input", "2x8", env={"COLUMNS": "100"})
    assert proc.returncode == 0, proc.stderr
    shown = rows(proc.stdout)
    assert shown["frontend"] == "aten"  # shapes only: fake tensors, not a real run
    assert shown["note"].startswith("fx was not used: torch.fx could not trace AssertingResidual")
    assert 'assert x.shape[-1] == 8, "wrong width"' in shown["note"]
    # JSON carries the same three fields
    as_json = run_cli(f"{path}:AssertingResidual", "--input", "2x8", "--format", "json")
    data = json.loads(as_json.stdout)
    assert data["frontend"]["name"] == "aten" and data["frontend"]["real_run"] is False
    assert data["frontend"]["note"].split() == shown["note"].split()  # the same words
