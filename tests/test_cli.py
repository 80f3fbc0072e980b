"""The command line: real subprocess runs on real models, exports, and each error's
message and exit code (2: usage, 1: analysis failure)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import flopgraph
from flopgraph.cli import main
from flopgraph.examples import LeNet, TinyTransformerBlock

ROOT = Path(__file__).resolve().parent.parent


def in_process(capsys: pytest.CaptureFixture[str], *args: str) -> subprocess.CompletedProcess[str]:
    """``flopgraph ARGS`` through ``cli.main`` in this process (its output captured, not
    a terminal): for what does not need a process of its own, seconds cheaper than
    :func:`run_cli`'s import of torch."""
    from flopgraph.cli import main

    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["flopgraph", *args], code, out, err)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m flopgraph ARGS`` in a fresh process, its output a pipe (not a terminal)."""
    full_env = {
        k: v for k, v in os.environ.items() if k not in ("COLUMNS", "NO_COLOR", "FORCE_COLOR")
    }
    full_env.update(
        PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **(env or {})
    )
    return subprocess.run(
        [sys.executable, "-m", "flopgraph", *args],
        capture_output=True, text=True, cwd=ROOT, env=full_env, timeout=300,
    )  # fmt: skip


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_console_script_is_declared():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["flopgraph"] == "flopgraph.cli:main"


# --- subprocess runs ------------------------------------------------------------------


def test_resnet18_json_totals_equal_the_api():
    torchvision = pytest.importorskip("torchvision")
    proc = run_cli(
        "torchvision.models:resnet18", "--kwargs", '{"num_classes": 10}', "--device", "meta",
        "--input", "1x3x224x224", "--format", "json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    with torch.device("meta"):
        model = torchvision.models.resnet18(num_classes=10).eval()
    api = flopgraph.analyze(model, (1, 3, 224, 224))
    assert data["totals"] == {"macs": api.macs, "flops": api.flops}
    assert data["params"]["total"] == api.params.total
    records = {r["node"]: r for r in data["records"]}
    assert records["conv1"]["macs"] == 64 * 112 * 112 * 3 * 7 * 7 == 118_013_952
    assert records["fc"]["macs"] == 512 * 10  # num_classes came through --kwargs


def test_builtin_example_prints_a_plain_table(capsys):
    proc = in_process(capsys, "lenet")
    assert proc.returncode == 0 and proc.stderr == ""
    assert "\x1b[" not in proc.stdout  # a pipe gets no escape codes
    # 42,336 + 240,000 + 48,000 + 10,080 + 840 MACs (conv1, conv2, fc1, fc2, fc3)
    assert "341.26 K (341,256)" in proc.stdout
    assert re.search(r"├─ conv2 +Conv2d", proc.stdout) and "(self)" in proc.stdout


FILE_MODEL = """
from torch import nn

def build(width=8):
    return nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, 2))
"""


def test_file_callable_with_kwargs(tmp_path):
    path = tmp_path / "mymodel.py"
    path.write_text(FILE_MODEL)
    out = tmp_path / "report.json"
    proc = run_cli(f"{path}:build", "--kwargs", '{"width": 16}', "--input", "3x4", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == f"flopgraph: wrote {out}\n"
    data = json.loads(out.read_text())
    # linear 3x4 -> 16: 3*4*16 = 192 MACs; linear 3x16 -> 2: 3*16*2 = 96 MACs
    # flops: 2 * 288 + biases (3*16 + 3*2 = 54) + relu (3*16 = 48) = 678
    assert data["totals"] == {"macs": 288, "flops": 678}


def test_output_never_overwrites_the_model_source_or_the_checkpoint(tmp_path, capsys):
    path = tmp_path / "net.py"
    path.write_text(FILE_MODEL)
    proc = in_process(capsys, f"{path}:build", "--input", "3x4", "-o", str(path))
    assert proc.returncode == 2 and "is an input of this run" in proc.stderr
    assert path.read_text() == FILE_MODEL  # the source is intact
    ckpt = tmp_path / "w.pt"
    layers = [torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)]
    torch.save(torch.nn.Sequential(*layers).state_dict(), ckpt)
    before = ckpt.read_bytes()
    proc = in_process(
        capsys, f"{path}:build", "--input", "3x4", "--checkpoint", str(ckpt), "-o", str(ckpt)
    )
    assert proc.returncode == 2 and "is an input of this run" in proc.stderr
    assert ckpt.read_bytes() == before


BERT_FACTORY = """
from transformers import BertConfig, BertModel

def bert(**config):
    return BertModel(BertConfig(**config))
"""
BERT_CONFIG = {
    "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
    "intermediate_size": 64, "vocab_size": 100, "max_position_embeddings": 32,
}  # fmt: skip


def test_transformers_model_from_a_config(tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    with torch.device("meta"):
        model = transformers.BertModel(transformers.BertConfig(**BERT_CONFIG)).eval()
    try:
        api = flopgraph.analyze(model, flopgraph.TensorSpec((1, 8), torch.int64))
    except flopgraph.TraceError as e:
        pytest.skip(f"this flopgraph's frontends cannot trace BertModel yet: {e}")
    path = tmp_path / "bert_factory.py"
    path.write_text(BERT_FACTORY)
    proc = in_process(
        capsys, f"{path}:bert", "--kwargs", json.dumps(BERT_CONFIG), "--device", "meta",
        "--input", "int64:1x8", "--format", "json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["totals"] == {"macs": api.macs, "flops": api.flops}


@pytest.mark.parametrize(
    "args, message, code",
    [
        (["lenet", "--input", "1x1x32x32"], "shape propagation failed at node 'fc1'", 1),
        (["nosuch_pkg_for_flopgraph.models:net", "--input", "1x3"], "cannot import", 2),
    ],
)
def test_errors_in_a_real_process_are_one_line(args, message, code):
    proc = run_cli(*args)
    assert proc.returncode == code
    assert proc.stdout == "" and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("flopgraph: error: ") and message in proc.stderr


# --- in-process runs -------------------------------------------------------------------


def test_builtin_example_with_kwargs_matches_the_api(capsys, tmp_path):
    out = tmp_path / "r.json"
    code, _, err = run_main(
        capsys, "tiny_transformer", "--kwargs", '{"dim": 32, "heads": 2, "hidden": 64}',
        "--input", "1x8x32", "-o", str(out), "--quiet",
    )  # fmt: skip
    assert code == 0 and err == ""
    api = flopgraph.analyze(TinyTransformerBlock(32, 2, 64).eval(), (1, 8, 32))
    data = json.loads(out.read_text())
    # q, k, v, proj: 4 * 8*32*32 = 32,768; fc1, fc2: 2 * 8*32*64 = 32,768;
    # q @ k^T and attn @ v: 2 * (2 heads * 8*8*16) = 4,096
    assert data["totals"]["macs"] == api.macs == 69_632
    assert data["totals"]["flops"] == api.flops


def test_ops_csv_with_top_adds_up(capsys):
    code, out, _ = run_main(capsys, "lenet", "--by", "op", "--top", "3", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and [r["op"] for r in rows] == ["conv2d", "linear", "conv2d", "(9 more)"]
    # 89,376 + 481,600 = conv1 + conv2; fc1 = 2 * 48,000 + 120
    assert [int(r["flops"]) for r in rows[:3]] == [481_600, 96_120, 89_376]
    assert sum(int(r["flops"]) for r in rows) == 701_842


@pytest.mark.parametrize(
    "suffix, start",
    [(".md", "# flopgraph: LeNet"), (".html", "<!DOCTYPE html>"), (".csv", "path,")],
)
def test_output_format_follows_the_suffix(capsys, tmp_path, suffix, start):
    out = tmp_path / f"report{suffix}"
    code, stdout, err = run_main(capsys, "lenet", "-o", str(out))
    assert code == 0 and stdout == "" and err == f"flopgraph: wrote {out}\n"
    assert out.read_text().startswith(start)


def test_units_depth_and_tree(capsys):
    code, out, _ = run_main(capsys, "basic_block", "--format", "tree", "--units", "raw")
    # 2 convs: 2 * 115,605,504 MACs; 2 * 231,211,008 + 2 bn (4 * 200,704) + add + 2 relu
    assert code == 0 and "464,629,760 FLOPs" in out and "├── conv1 (Conv2d)" in out
    code, out, _ = run_main(capsys, "lenet", "--depth", "0")
    assert code == 0 and "conv1" not in out.split("modules")[1]


def test_colour_only_on_a_terminal_without_no_color(capsys, monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert "\x1b[" in run_main(capsys, "lenet")[1]
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b[" not in run_main(capsys, "lenet")[1]


def test_list_examples(capsys):
    code, out, _ = run_main(capsys, "--list-examples")
    assert code == 0 and out.splitlines()[0].split()[:2] == ["lenet", "1x1x28x28"]


def test_compare_when_unavailable_says_so(capsys):
    code, out, err = run_main(capsys, "lenet", "--compare")
    try:
        import flopgraph.compare  # noqa: F401
    except ModuleNotFoundError:
        assert code == 2 and err == (
            "flopgraph: error: --compare needs flopgraph.compare, which this flopgraph does "
            "not have\n"
        )
    else:
        assert code == 0 and out


BROKEN_SYNTAX = "def build(:\n"
DATA_DEPENDENT = """
import torch
from torch import nn

class Branchy(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return x
"""


@pytest.mark.parametrize(
    "args, message, code",
    [
        (["nosuch"], "unknown model 'nosuch': not a built-in example (see --list-examples)", 2),
        (["nosuch_pkg_for_flopgraph:f"], "cannot import 'nosuch_pkg_for_flopgraph'", 2),
        (["torch.nn:Linear999", "--input", "1x8"],
         "model 'torch.nn:Linear999': 'torch.nn' has no attribute 'Linear999'", 2),
        (["{tmp}/missing.py:build"], "no such file", 2),
        (["{tmp}/broken.py:build"], "SyntaxError", 2),
        (["lenet", "--input", "1by28"],
         "bad --input '1by28': expected [name=][dtype:]DIMS such as 1x3x224x224", 2),
        (["lenet", "--input", "in64:1x1x28x28"], "unknown dtype 'in64'", 2),
        (["lenet", "--kwargs", "[1]"], "bad --kwargs '[1]': expected a JSON object", 2),
        (["lenet", "--kwargs", "{x"], "bad --kwargs '{x': not JSON", 2),
        (["lenet", "--kwargs", '{"depth": 3}'],
         "building model 'lenet' failed: TypeError: LeNet.__init__() got an unexpected", 2),
        (["flopgraph.examples:LeNet"], "model 'flopgraph.examples:LeNet' needs --input", 2),
        (["lenet", "--input", "1x1x28x28", "--input", "1x1x28x28"],
         "inputs do not match LeNet.forward", 2),
        (["lenet", "--format", "xml"], "argument --format: invalid choice: 'xml'", 2),
        (["lenet", "--top", "0"], "argument --top: expected a count >= 1, got '0'", 2),
        (["lenet", "--format", "tree", "--by", "op"], "--format tree shows modules", 2),
        ([], "the following argument is required: MODEL", 2),
        (["lenet", "--input", "1x1x32x32"],
         "shape propagation failed at node 'fc1' (call_module fc1: Linear) in module 'fc1' "
         "with inputs flatten: float32[1, 576]", 1),
        (["{tmp}/branchy.py:Branchy", "--input", "2x3"], "torch.fx could not trace Branchy", 1),
    ],
)  # fmt: skip
def test_error_message_and_exit_code(capsys, tmp_path, args, message, code):
    (tmp_path / "broken.py").write_text(BROKEN_SYNTAX)
    (tmp_path / "branchy.py").write_text(DATA_DEPENDENT)
    got, out, err = run_main(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert got == code
    assert out == "" and len(err.splitlines()) == 1, err
    assert err.startswith("flopgraph: error: ") and message in err, err
    assert "Traceback" not in err


def test_debug_shows_the_traceback(capsys):
    code, _, err = run_main(capsys, "lenet", "--input", "1x1x32x32", "--debug")
    assert code == 1 and "Traceback" in err and "PropagationError" in err
    assert err.rstrip().splitlines()[-1].startswith("flopgraph: error: shape propagation failed")


def test_model_instance_and_meta_device(capsys, tmp_path):
    (tmp_path / "inst.py").write_text(
        textwrap.dedent("""
            from flopgraph.examples import LeNet
            net = LeNet()
        """)
    )
    code, out, _ = run_main(
        capsys, f"{tmp_path}/inst.py:net", "--input", "1x1x28x28", "--units", "raw"
    )
    assert code == 0 and "701,842" in out
    code, out, _ = run_main(capsys, "lenet", "--device", "meta", "--units", "raw")
    assert code == 0 and "701,842" in out
    assert flopgraph.analyze(LeNet(), (1, 1, 28, 28)).flops == 701_842


def test_unknown_output_suffix_and_a_zero_dimension_are_usage_errors(tmp_path, capsys):
    out = tmp_path / "r.xlsx"
    proc = in_process(capsys, "lenet", "-o", str(out))
    assert proc.returncode == 2 and "unknown suffix '.xlsx'" in proc.stderr
    assert not out.exists() and "Traceback" not in proc.stderr
    as_asked = in_process(capsys, "lenet", "-o", str(out), "--format", "json")
    assert as_asked.returncode == 0 and json.loads(out.read_text())["totals"]["macs"] == 341_256
    proc = in_process(capsys, "lenet", "--input", "0x1x28x28")
    assert proc.returncode == 2 and "a dimension of 0" in proc.stderr


def test_help_and_version_do_not_import_torch() -> None:
    # --help and --version answer without torch (the first seconds of a new user);
    # their choices come from flopgraph.names, which must equal what the library takes
    code = (
        "import sys; from flopgraph.cli import build_parser; build_parser(); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    from flopgraph import names
    from flopgraph.analyze import CONVENTIONS
    from flopgraph.pipeline import FRONTENDS
    from flopgraph.render import FORMATS

    assert set(names.CONVENTIONS) == set(CONVENTIONS)
    assert names.FRONTENDS == FRONTENDS and names.FORMATS == FORMATS


def test_functions_keep_their_names_after_their_modules_load() -> None:
    # analyze, compare and generation share names with their submodules: importing the
    # submodule (which sets it on the package) leaves the package's name the function
    code = (
        "import flopgraph, flopgraph.generation, flopgraph.compare, flopgraph.analyze; "
        "print(all(callable(f) and not isinstance(f, type(flopgraph)) for f in "
        "(flopgraph.analyze, flopgraph.compare, flopgraph.generation)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_fail_on_skipped_exits_3_after_the_report(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "skip.py"
    source.write_text(
        "import torch\n"
        "class M(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        return torch.special.bessel_j0(x) + 1\n"
        "def build():\n"
        "    return M()\n"
    )
    code, out, err = run_main(capsys, f"{source}:build", "--input", "2x3", "--fail-on-skipped")
    assert code == 3 and "model" in out  # the report first, then the refusal
    assert "--fail-on-skipped: ops with no handler (counted as 0): special_bessel_j0 x1" in err
    code, _, _ = run_main(capsys, f"{source}:build", "--input", "2x3", "--quiet")
    assert code == 0  # without the flag a skipped op is a warning, not a failure
    code, _, _ = run_main(capsys, "lenet", "--fail-on-skipped", "--quiet")
    assert code == 0  # nothing skipped


def test_torch_dtype_aliases_in_input(capsys) -> None:  # type: ignore[no-untyped-def]
    from flopgraph.loading import parse_input

    assert parse_input("long:1x8")[1] == flopgraph.TensorSpec((1, 8), torch.int64)
    assert parse_input("half:2x3")[1] == flopgraph.TensorSpec((2, 3), torch.float16)
    assert parse_input("bf16:2x3")[1] == flopgraph.TensorSpec((2, 3), torch.bfloat16)


def test_a_closed_pipe_ends_quietly() -> None:
    # `flopgraph lenet | head -1`: the reader stops early; no traceback, exit 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "flopgraph", "lenet", "--by", "op", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the report is written (torch takes seconds to import)
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 0
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception" not in err


def test_a_mistyped_example_gets_a_suggestion(capsys) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run_main(capsys, "lenett")
    assert code == 2 and err.strip().endswith("did you mean 'lenet'?")
    code, _, err = run_main(capsys, "nosuch")
    assert code == 2 and "did you mean" not in err


# --- --real: random real inputs for models that need values -----------------------------

LOOPED = """
import torch
from torch import nn

class Looped(nn.Module):
    def __init__(self, vocab=5):
        super().__init__()
        self.vocab = vocab
        self.emb = nn.Embedding(vocab, 4)
        self.fc = nn.Linear(4, 4)

    def forward(self, ids):
        h = self.emb(ids)
        for _ in range(int(((ids >= 0) & (ids < self.vocab)).sum())):  # value-dependent
            h = self.fc(h)
        return h
"""


def test_real_counts_a_value_dependent_loop(capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "looped.py"
    path.write_text(LOOPED)
    spec = f"{path}:Looped"
    code, out, err = run_main(capsys, spec, "--input", "int64:1x3", "--real", "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    # the loop runs once per id in [0, vocab): 3 times, as every --real token id is valid;
    # fc on [1, 3, 4] -> 4: 3*4*4 = 48 MACs, 2*48 + 3*4 bias adds = 108 FLOPs per call;
    # the embedding lookup, comparisons and the integer sum count 0
    assert data["totals"] == {"macs": 3 * 48, "flops": 3 * 108}
    assert data["frontend"]["real_run"] is True
    assert "ran for real on copies" in data["frontend"]["note"]
    code, out, err = run_main(capsys, spec, "--input", "int64:1x3", "--quiet")
    assert code == 1 and out == "" and len(err.splitlines()) == 1, err
    assert "depends on tensor values" in err and "Add --real" in err
    assert "Pass real input tensors" not in err  # the API's advice, which a shell cannot take


def test_real_inputs_are_valid_and_repeat() -> None:
    from flopgraph.inputs import TensorSpec
    from flopgraph.loading import Inputs
    from flopgraph.random_inputs import random_inputs

    model = torch.nn.Sequential(torch.nn.Embedding(1000, 4), torch.nn.Linear(4, 2))
    specs = Inputs(
        (TensorSpec((2, 64), torch.int64), TensorSpec((3, 5), torch.float16)),
        {"attention_mask": TensorSpec((2, 64), torch.int64), "flag": TensorSpec((8,), torch.bool)},
    )
    made = random_inputs(model, specs)
    ids, x = made.args
    mask, flag = made.kwargs["attention_mask"], made.kwargs["flag"]
    assert ids.dtype == torch.int64 and ids.shape == (2, 64) and ids.device.type == "cpu"
    # the token ids span the vocabulary of the first embedding (1000), not just 0 and 1
    assert 0 <= int(ids.min()) and int(ids.max()) < 1000 and int(ids.max()) > 1
    assert set(mask.unique().tolist()) <= {0, 1}  # other integers: 0 or 1
    assert x.dtype == torch.float16 and flag.dtype == torch.bool
    again = random_inputs(model, specs)  # a fixed seed: the same tensors each run
    assert all(torch.equal(a, b) for a, b in zip(made.args, again.args, strict=True))
    assert torch.equal(mask, again.kwargs["attention_mask"])
    plain = random_inputs(torch.nn.Linear(3, 3), Inputs((TensorSpec((50,), torch.int32),)))
    assert set(plain.args[0].unique().tolist()) <= {0, 1}  # no embedding: 0 or 1


def test_real_run_leaves_the_model_untouched(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from conftest import assert_untouched, snapshot

    from flopgraph.inputs import TensorSpec
    from flopgraph.loading import Inputs
    from flopgraph.random_inputs import random_inputs

    namespace: dict = {}
    exec(LOOPED, namespace)
    model = namespace["Looped"]().train()  # training mode: a real run must not leave it
    before = snapshot(model)
    made = random_inputs(model, Inputs((TensorSpec((1, 3), torch.int64),)))
    report = flopgraph.analyze(model, made.args)
    assert report.frontend.real_run and report.flops == 3 * 108
    assert_untouched(model, before)


@pytest.mark.parametrize(
    "args, message",
    [
        (["lenet", "--real", "--device", "meta"], "build it without --device meta"),
        (["lenet", "--real", "--input", "Bx1x28x28"], "input 1 has named sizes (Bx1x28x28)"),
        (["lenet", "--real", "--generate", "4,2"], "--generate makes its own token ids"),
    ],
)
def test_real_refusals_are_usage_errors(capsys, args, message) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run_main(capsys, *args)
    assert code == 2 and out == "" and len(err.splitlines()) == 1, err
    assert message in err


# --- every failure: one line and its exit code, never a traceback -----------------------


def test_bad_arguments_are_named_not_echoed(capsys) -> None:  # type: ignore[no-untyped-def]
    deep = "[" * 10_000 + "]" * 10_000  # json's decoder recurses once per bracket
    for kwargs in (deep, '{"a": ' + deep + "}"):
        code, out, err = run_main(capsys, "lenet", "--kwargs", kwargs)
        assert code == 2 and out == "" and len(err.splitlines()) == 1, err[:300]
        assert "nested too deeply" in err or "expected a JSON object" in err, err[:300]
        assert "(20,0" in err and len(err) < 300  # the argument is named by its length
    # a size past int64: refused before anything is allocated
    code, _, err = run_main(capsys, "lenet", "--input", "99999999999999999999x1x28x28")
    assert code == 2 and "more than torch can address" in err and len(err.splitlines()) == 1
    code, _, err = run_main(capsys, "lenet", "--input", "qint8:1x3")
    assert code == 2 and len(err.splitlines()) == 1
    assert "qint8 is a quantized dtype" in err and "pass the float input" in err


def _interruptible(*args: str) -> subprocess.Popen[str]:
    """``python -m flopgraph ARGS`` with Ctrl-C's default action restored: a shell
    ignores SIGINT in its background jobs, and the child would inherit that."""
    import signal

    return subprocess.Popen(
        [sys.executable, "-m", "flopgraph", *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip


def _wait_for(ready, proc: subprocess.Popen[str], seconds: float = 120) -> None:
    import time

    deadline = time.monotonic() + seconds
    while True:
        try:
            if ready():
                return
        except OSError:  # the child's /proc entry went away: it ended, as poll says
            pass
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "the child never got there"
        time.sleep(0.005)


@pytest.mark.skipif(sys.platform != "linux", reason="reads the child's /proc/PID/maps")
def test_ctrl_c_is_one_line_and_exit_130(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import signal

    # during the import of torch: sent as soon as libtorch is mapped into the child
    proc = _interruptible("lenet")
    maps = Path(f"/proc/{proc.pid}/maps")
    _wait_for(lambda: maps.exists() and "libtorch" in maps.read_text(), proc)
    proc.send_signal(signal.SIGINT)
    assert proc.communicate(timeout=120)[1] == "flopgraph: interrupted\n"
    assert proc.returncode == 130
    # while the model's own module imports (a file that signals, then sleeps)
    marker = tmp_path / "importing"
    (tmp_path / "slow.py").write_text(
        f"import pathlib, time\npathlib.Path({str(marker)!r}).touch()\ntime.sleep(60)\n"
    )
    proc = _interruptible(f"{tmp_path}/slow.py:build")
    _wait_for(marker.exists, proc)
    proc.send_signal(signal.SIGINT)
    assert proc.communicate(timeout=120)[1] == "flopgraph: interrupted\n"
    assert proc.returncode == 130


def test_a_closed_stdout_ends_quietly() -> None:
    # `flopgraph lenet --format json >&-`: no stdout at all (sys.stdout is None); the
    # report goes nowhere, exit 0
    proc = subprocess.run(
        f"{sys.executable} -m flopgraph lenet --format json >&-", shell=True,
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
