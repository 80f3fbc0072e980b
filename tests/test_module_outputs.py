"""A module's output is what its forward returned, the same on both frontends.

Not the last op that ran inside it: aten's ``native_layer_norm`` also returns its mean
and rstd, a module may return a tuple or a dict, and a ModuleList never runs at all.
Expected shapes are derived by hand beside each model.
"""

import pytest
import torch
from torch import nn

import flopgraph
from flopgraph import TensorSpec
from flopgraph.render.tree import flatten, module_tree

# (frontend, convention): fx runs the default convention only; on aten, the torch
# preset records layer norm as its aten op (three outputs), the default one whole
RUNS = [("fx", "default"), ("aten", "default"), ("aten", "torch"), ("aten", "fvcore")]


class Stem(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class ChannelNorm(nn.Module):
    """Layer norm over the channels of an NCHW map (channels last inside)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Heads(nn.Module):
    """Returns a tuple: the pooled features and the logits."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.pool(x).flatten(1)
        return features, self.fc(features)


class TinyCNN(nn.Module):
    """Returns a dict; ``pool`` runs twice, at two sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = Stem()
        self.norm = ChannelNorm(8)
        self.pool = nn.AvgPool2d(2)
        self.heads = Heads()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.pool(self.pool(self.norm(self.stem(x))))
        features, logits = self.heads(x)
        return {"logits": logits, "features": features}


# x [2, 3, 12, 12]: the padded 3x3 conv keeps 12 x 12 with 8 channels; the norm sees
# them channels last; each pool halves (6, then 3: the last call is shown); the heads
# pool to [2, 8, 1, 1], flatten to [2, 8] and project to 10 logits
MAP = (2, 8, 12, 12)
CNN = {
    "": ((2, 10), (2, 8)),  # the dict's values, in its order
    "stem": (MAP,),
    "stem.conv": (MAP,),
    "stem.bn": (MAP,),
    "stem.act": (MAP,),
    "norm": (MAP,),
    "norm.norm": ((2, 12, 12, 8),),  # one tensor, not layer norm's mean and rstd too
    "pool": ((2, 8, 3, 3),),
    "heads": ((2, 8), (2, 10)),
    "heads.pool": ((2, 8, 1, 1),),
    "heads.fc": ((2, 10),),
}


class Attention(nn.Module):
    """Returns a tuple: the output and the attention weights."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, n, d = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        weights = ((q @ k.transpose(-2, -1)) * (d // self.heads) ** -0.5).softmax(-1)
        out = (weights @ v).transpose(1, 2).reshape(b, n, d)
        return self.proj(out), weights


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.attn(self.norm1(x))
        x = x + h
        return x + self.mlp(self.norm2(x))


class Encoder(nn.Module):
    def __init__(self, vocab: int = 50, dim: int = 32, heads: int = 4, depth: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


def _encoder_outputs() -> dict[str, tuple[tuple[int, ...], ...]]:
    """ids [2, 6] -> tokens [2, 6, 32]; 4 heads of 8: weights [2, 4, 6, 6]; qkv 96
    wide, the MLP 64. The ModuleList is never called: it returns nothing."""
    tokens = (2, 6, 32)
    out = {"": (tokens,), "embed": (tokens,), "blocks": (), "norm": (tokens,)}
    for i in range(2):
        p = f"blocks.{i}"
        out |= {
            p: (tokens,),
            f"{p}.norm1": (tokens,),
            f"{p}.attn": (tokens, (2, 4, 6, 6)),
            f"{p}.attn.qkv": ((2, 6, 96),),
            f"{p}.attn.proj": (tokens,),
            f"{p}.norm2": (tokens,),
            f"{p}.mlp": (tokens,),
            f"{p}.mlp.0": ((2, 6, 64),),
            f"{p}.mlp.1": ((2, 6, 64),),
            f"{p}.mlp.2": (tokens,),
        }
    return out


MODELS = {
    "cnn": (TinyCNN, TensorSpec((2, 3, 12, 12)), CNN),
    "encoder": (Encoder, TensorSpec((2, 6), torch.int64), _encoder_outputs()),
}


def _shown(report: flopgraph.Report) -> dict[str, tuple[tuple[int, ...], ...]]:
    """Module path -> the output shapes the module tree (every renderer) shows."""
    return {n.path: tuple(m.shape for m in n.outputs) for _, n in flatten(module_tree(report))}


@pytest.mark.parametrize("name", MODELS)
def test_module_outputs_are_what_forward_returned_on_both_frontends(name):
    build, spec, expected = MODELS[name]
    model = build().eval()
    reports = {
        run: flopgraph.analyze(model, spec, frontend=run[0], convention=run[1]) for run in RUNS
    }
    assert {run: r.frontend.name for run, r in reports.items()} == {run: run[0] for run in RUNS}
    for run, report in reports.items():
        assert _shown(report) == expected, run
    fx = reports[RUNS[0]].modules
    for run in RUNS[1:]:  # dtypes too, module by module
        assert reports[run].modules == fx, run
    # the encoder's second block replays the first's records on aten: its modules
    # show the same outputs as when it runs
    assert flopgraph.analyze(model, spec, frontend="aten", reuse=False).modules == fx


def test_module_outputs_survive_json():
    report = flopgraph.analyze(TinyCNN().eval(), (2, 3, 12, 12), frontend="aten")
    data = report.to_dict()
    root = data["modules"][0]
    assert root["path"] == "" and root["outputs"] == [
        {"shape": [2, 10], "dtype": "float32"},
        {"shape": [2, 8], "dtype": "float32"},
    ]
    assert flopgraph.Report.from_json(report.to_json()).modules == report.modules
    # a document written before modules carried outputs still reads, with none
    for m in data["modules"]:
        del m["outputs"]
    old = flopgraph.Report.from_dict(data)
    assert all(m.outputs == () for m in old.modules)


def test_a_training_step_shows_the_forward_outputs():
    report = flopgraph.analyze(Encoder().train(), TensorSpec((2, 6), torch.int64), training=True)
    assert report.step is not None and report.frontend.name == "aten"
    assert _shown(report) == _encoder_outputs()


def test_symbolic_outputs_are_formulas_and_substitute():
    report = flopgraph.analyze(Encoder().eval(), TensorSpec(("B", "T"), torch.int64))
    (root,) = (m for m in report.modules if m.path == "")
    assert tuple(map(str, root.outputs[0].shape)) == ("B", "T", "32")
    assert _shown(report.subs(B=2, T=6)) == _encoder_outputs()
