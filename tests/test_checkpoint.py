"""Saved files on the command line: loaded only with torch.load(weights_only=True).

A malicious pickle (its ``__reduce__`` creates a marker file when unpickled) is
refused with one line and exit code 2, whether it is given as MODEL or as
--checkpoint, and the marker never appears; a state_dict checkpoint is applied to
the model its spec builds.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import pytest
import torch
from test_cli import run_cli, run_main

import flopgraph
from flopgraph.checkpoint import apply_checkpoint, is_saved_file, safe_load
from flopgraph.errors import UsageError
from flopgraph.examples import LeNet


class Payload:
    """Unpickling this calls ``open(marker, "w")``: the file appears if the payload runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def malicious_files(tmp_path: Path) -> dict[str, Path]:
    """The payload as torch.save writes it (zip) and as a plain pickle, each with its own
    marker path next to it."""
    out = {}
    for kind in ("torch_save", "pickle"):
        path = tmp_path / f"evil_{kind}.pt"
        payload = Payload(tmp_path / f"PWNED_{kind}")
        if kind == "torch_save":
            torch.save({"fc1.weight": torch.zeros(1), "payload": payload}, path)
        else:
            path.write_bytes(pickle.dumps(payload))
        out[kind] = path
    return out


def test_the_payload_is_real(tmp_path):
    # without weights_only the file runs its code: what the tests below must prevent
    path = malicious_files(tmp_path)["pickle"]
    pickle.loads(path.read_bytes()).close()
    assert (tmp_path / "PWNED_pickle").exists()


@pytest.mark.parametrize("kind", ["torch_save", "pickle"])
@pytest.mark.parametrize("as_model", [True, False], ids=["MODEL", "--checkpoint"])
def test_malicious_pickle_is_refused_and_never_runs(capsys, tmp_path, kind, as_model):
    path = malicious_files(tmp_path)[kind]
    args = [str(path)] if as_model else ["lenet", "--checkpoint", str(path)]
    code, out, err = run_main(capsys, *args)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"flopgraph: error: refused to load '{path}': it holds more than tensors")
    assert "torch.load(weights_only=True)" in err and "--checkpoint FILE" in err
    if kind == "torch_save":  # torch names the global it refused
        assert "Unsupported global: GLOBAL io.open" in err
    assert not (tmp_path / f"PWNED_{kind}").exists()


def test_malicious_pickle_in_a_real_process(tmp_path):
    path = malicious_files(tmp_path)["torch_save"]
    proc = run_cli("lenet", "--checkpoint", str(path))
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith(f"flopgraph: error: refused to load '{path}'")
    assert not (tmp_path / "PWNED_torch_save").exists()


def test_pickled_module_is_refused_with_the_way_out(capsys, tmp_path):
    path = tmp_path / "lenet_full.pt"
    torch.save(LeNet(), path)  # a whole module: weights_only cannot rebuild it
    code, _, err = run_main(capsys, str(path))
    assert code == 2
    assert "Unsupported global: GLOBAL flopgraph.examples.LeNet" in err
    assert "torch.save(model.state_dict(), FILE)" in err


def test_checkpoint_applies_to_the_model(capsys, tmp_path):
    model = LeNet()
    path = tmp_path / "lenet.pt"
    torch.save({"epoch": 3, "state_dict": model.state_dict()}, path)  # a training checkpoint
    code, out, _ = run_main(capsys, "lenet", "--checkpoint", str(path), "--format", "json")
    assert code == 0
    assert json.loads(out)["totals"]["flops"] == flopgraph.analyze(model, (1, 1, 28, 28)).flops
    built = LeNet()
    apply_checkpoint(built, str(path))
    pairs = zip(built.state_dict().values(), model.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


def test_checkpoint_onto_the_meta_device_reads_no_data(tmp_path):
    path = tmp_path / "lenet.pt"
    torch.save(LeNet().state_dict(), path)
    assert {t.device.type for t in safe_load(str(path), "meta").values()} == {"meta"}
    with torch.device("meta"):
        model = LeNet()
    apply_checkpoint(model, str(path), "meta")
    assert {p.device.type for p in model.parameters()} == {"meta"}


def test_data_parallel_prefix_is_dropped(tmp_path):
    path = tmp_path / "dp.pt"
    torch.save({f"module.{k}": v for k, v in LeNet().state_dict().items()}, path)
    apply_checkpoint(LeNet(), str(path))


def test_a_state_dict_given_as_model_says_what_to_do(capsys, tmp_path):
    path = tmp_path / "weights.pth"
    torch.save(LeNet().state_dict(), path)
    code, _, err = run_main(capsys, str(path))
    # LeNet: 5 layers with weight and bias
    assert code == 2 and "holds a state_dict (10 tensors), not a model" in err
    assert f"--checkpoint {path}" in err


@pytest.mark.parametrize(
    "content, message",
    [
        (lambda p: torch.save({k: v for k, v in LeNet().state_dict().items() if "fc3" not in k}, p),
         "does not fit the model: 2 missing key(s): fc3.weight, fc3.bias"),
        (lambda p: torch.save({**LeNet().state_dict(), "extra.weight": torch.zeros(1)}, p),
         "1 unexpected key(s): extra.weight"),
        (lambda p: torch.save({**LeNet().state_dict(), "fc3.bias": torch.zeros(7)}, p),
         "fc3.bias is [7] in the file, [10] in the model"),
        (lambda p: torch.save([torch.zeros(1)], p), "holds a list, not a state_dict"),
        (lambda p: torch.save({"epoch": 1}, p), "holds a dict with keys 'epoch', not a state_dict"),
        (lambda p: p.write_bytes(b"PK\x03\x04 truncated"), "not a file torch.save wrote"),
        (lambda p: None, "no such file"),
    ],
)  # fmt: skip
def test_checkpoint_errors(capsys, tmp_path, content, message):
    path = tmp_path / "ckpt.pt"
    content(path)
    code, out, err = run_main(capsys, "lenet", "--checkpoint", str(path))
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(
    "spec, saved",
    [("model.pt", True), ("dir/weights.PTH", True), ("ckpt.ckpt", True), ("a.bin", True),
     ("models/net.py:build", False), ("torchvision.models:resnet18", False), ("lenet", False),
     ("pkg.module:model_pt", False)],
)  # fmt: skip
def test_which_model_specs_are_saved_files(spec, saved):
    assert is_saved_file(spec) is saved


def test_safe_load_never_unpickles_objects(tmp_path):
    for kind, path in malicious_files(tmp_path).items():
        with pytest.raises(UsageError, match="refused to load"):
            safe_load(str(path))
        assert not (tmp_path / f"PWNED_{kind}").exists()


def test_checkpoint_keeps_the_models_dtypes_and_device(capsys, tmp_path):
    path = tmp_path / "half.pt"
    torch.save({k: v.half() for k, v in LeNet().state_dict().items()}, path)
    model = LeNet()
    apply_checkpoint(model, str(path))
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    # LeNet on 1x28x28: 701_842 FLOPs (tests/test_cli.py), with or without the weights
    for device in ([], ["--device", "meta"]):
        code, out, _ = run_main(capsys, "lenet", "--checkpoint", str(path), "--units", "raw",
                                *device)  # fmt: skip
        assert code == 0 and "701,842" in out


class BlockedGlobal:
    """Unpickles to ``os.getcwd()``: a function of a module torch blocks outright (its
    refusal reads differently from an unlisted global's), and harmless if it ran."""

    def __reduce__(self):
        import os

        return (os.getcwd, ())


@pytest.mark.parametrize("kind", ["unlisted", "blocked"])
def test_refusal_says_why_and_never_suggests_an_unsafe_load(capsys, tmp_path, kind):
    path = tmp_path / "evil.pt"
    payload = Payload(tmp_path / "PWNED") if kind == "unlisted" else BlockedGlobal()
    torch.save({"fc1.weight": torch.zeros(1), "payload": payload}, path)
    code, _, err = run_main(capsys, "lenet", "--checkpoint", str(path))
    assert code == 2 and len(err.splitlines()) == 1, err
    # the reason, in torch's words for each kind: the global it refused
    if kind == "unlisted":
        assert "(Unsupported global: GLOBAL io.open was not an allowed global by default)" in err
    else:
        assert re.search(
            r"\(Trying to load unsupported GLOBAL (posix|nt)\.getcwd whose module", err
        )
    # torch's own message says a reload with weights_only=False "will likely succeed":
    # that reload would run the file's code, so it is never repeated
    assert "likely succeed" not in err and "weights_only` set to `False" not in err
    assert "weights_only=False" not in err and "Traceback" not in err


def test_sparse_or_meta_weights_are_usage_errors(capsys, tmp_path):
    weights = LeNet().state_dict()
    sparse, meta = tmp_path / "sparse.pt", tmp_path / "meta.pt"
    torch.save({k: v.to_sparse() for k, v in weights.items()}, sparse)
    torch.save({k: torch.empty(v.shape, device="meta") for k, v in weights.items()}, meta)
    code, out, err = run_main(capsys, "lenet", "--checkpoint", str(sparse))
    assert code == 2 and out == "" and len(err.splitlines()) == 1, err
    assert "conv1.weight is a torch.sparse_coo tensor; a state_dict holds dense tensors" in err
    code, out, err = run_main(capsys, "lenet", "--checkpoint", str(meta))
    assert code == 2 and out == "" and len(err.splitlines()) == 1, err
    assert "conv1.weight is a meta tensor, saved with no data; pass --device meta" in err
    # a meta model takes meta weights: the count is LeNet's (see test_cli for its sum)
    code, out, err = run_main(
        capsys, "lenet", "--device", "meta", "--checkpoint", str(meta), "--format", "json"
    )
    assert code == 0, err
    assert json.loads(out)["totals"]["flops"] == 701_842
