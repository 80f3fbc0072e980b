"""The declared torch range is the tested one: pyproject's floor is the oldest torch
that .ci/run runs the suite on, and the README says both."""

import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def _release(version: str) -> tuple[int, ...]:
    """(2, 13, 0) from "2.13.0+cpu": the public release numbers."""
    return tuple(int(p) for p in re.match(r"\d+(\.\d+)*", version).group(0).split("."))


def _requirement(name: str, requirements: list[str]) -> str:
    (spec,) = [r for r in requirements if re.match(rf"{name}\s*[<>=!~]", r)]
    return spec


def _project() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _floor() -> str:
    spec = _requirement("torch", _project()["dependencies"])
    assert spec.startswith("torch>="), spec  # a floor, no ceiling: newer torch is tried
    return spec.removeprefix("torch>=")


def test_floor_is_the_oldest_torch_ci_runs():
    tested = re.findall(r'FLOPGRAPH_TORCH="torch==([\d.]+)"', (ROOT / ".ci/run").read_text())
    assert tested, ".ci/run must run the suite on the oldest supported torch"
    assert _release(min(tested, key=_release))[:2] == _release(_floor())[:2]


def test_readme_states_the_floor():
    assert f"`torch>={_floor()}`" in (ROOT / "README.md").read_text()


def test_this_torch_is_in_range():
    assert _release(torch.__version__) >= _release(_floor())


def test_test_core_extras_leave_torchvision_and_timm_out():
    """The oldest-torch run installs test-core: torchvision there would pull a newer
    torch (none matches 2.13's CPU build), and timm needs torchvision."""
    extras = _project()["optional-dependencies"]
    names = {re.match(r"[\w-]+", r).group(0) for r in extras["test-core"]}
    assert not names & {"torchvision", "timm"}
    assert "flopgraph[test-core]" in extras["test"]
