"""Built-in example models: small, dependency-free, and used by the demo and tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class LeNet(nn.Module):
    """The classic LeNet-5 on 1x28x28 digits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class BasicBlock(nn.Module):
    """A ResNet basic block whose residual is an in-place ``out += identity``."""

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return F.relu(out)


class TinyTransformerBlock(nn.Module):
    """A pre-norm transformer block written with functional attention."""

    def __init__(self, dim: int = 64, heads: int = 4, hidden: int = 256) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        h = self.norm1(x)
        q = self.q(h).view(b, n, self.heads, d // self.heads).transpose(1, 2)
        k = self.k(h).view(b, n, self.heads, d // self.heads).transpose(1, 2)
        v = self.v(h).view(b, n, self.heads, d // self.heads).transpose(1, 2)
        scores = q @ k.transpose(-2, -1)
        scores = scores * (d // self.heads) ** -0.5
        attn = scores.softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, n, d)
        x = x + self.proj(out)
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


@dataclass(frozen=True)
class Example:
    """A named model factory with the input it is meant for."""

    name: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    description: str


EXAMPLES: dict[str, Example] = {
    e.name: e
    for e in (
        Example("lenet", LeNet, (1, 1, 28, 28), "LeNet-5 on a 28x28 digit"),
        Example("basic_block", BasicBlock, (1, 64, 56, 56), "ResNet basic block, out += identity"),
        Example(
            "tiny_transformer", TinyTransformerBlock, (1, 16, 64), "functional attention block"
        ),
    )
}
