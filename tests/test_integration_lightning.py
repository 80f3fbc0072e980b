"""flopgraph.integrations.lightning: flops_per_batch for Lightning's ThroughputMonitor, on
a LightningModule of one Linear layer, counted by hand, and beside measure_flops."""

import pytest
import torch
from conftest import assert_untouched, snapshot
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import flopgraph
from flopgraph.integrations import flops_per_batch

L = pytest.importorskip("lightning")
from lightning.fabric.utilities.throughput import measure_flops  # noqa: E402
from lightning.pytorch.callbacks import ThroughputMonitor  # noqa: E402
from lightning.pytorch.loggers.logger import Logger  # noqa: E402

BATCH = (2, 4)
# Linear(4, 3) on [2, 4], loss = output.sum(), input without grad:
FORWARD = 2 * (2 * 3 * 4) + 2 * 3  # 24 MACs x 2 + the bias on 6 outputs       = 54
LOSS = 2 * 3 - 1  # the sum of 6 elements                                      = 5
GRAD_WEIGHT = 2 * (3 * 4 * 2)  # dY^T [3, 2] @ X [2, 4]: 24 MACs              = 48
GRAD_BIAS = 2 * 3 - 3  # dY summed over the batch                              = 3
SGD = 3 * 4 + 3  # one add per parameter element                               = 15
STEP = FORWARD + LOSS + GRAD_WEIGHT + GRAD_BIAS  # no grad-input: x needs none = 110


class Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 3)

    def forward(self, x):
        return self.layer(x)

    def setup(self, stage):
        # what ThroughputMonitor reads on every batch
        self.flops_per_batch = flops_per_batch(self, BATCH, optimizer="sgd")

    def training_step(self, batch, batch_idx):
        return self(batch[0]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_flops_per_batch_counts_forward_and_training_step_by_hand():
    torch.manual_seed(0)
    model, x = Tiny(), torch.randn(*BATCH)
    before = snapshot(model)
    assert flops_per_batch(model, x, training=False) == FORWARD == 54
    assert flops_per_batch(model, x) == STEP == 110
    assert flops_per_batch(model, x, optimizer="sgd") == STEP + SGD == 125
    assert_untouched(model, before)
    report = flopgraph.analyze(model, x, training=True, optimizer="sgd")
    assert flops_per_batch(model, x, optimizer="sgd") == report.flops == report.model_flops


def test_torch_convention_equals_measure_flops():
    """measure_flops runs FlopCounterMode: matrix products only (2 per MAC). The default
    count adds what FlopCounterMode has no formula for: the bias add (6), the loss's
    sum (5) and the bias gradient's sum (3)."""
    torch.manual_seed(0)
    model, x = Tiny(), torch.randn(*BATCH)
    ours_fwd = flops_per_batch(model, x, training=False, convention="torch")
    ours_step = flops_per_batch(model, x, convention="torch")
    assert flops_per_batch(model, x) - ours_step == 6 + 5 + 3
    assert ours_fwd == measure_flops(model, lambda: model(x)) == 2 * 24
    assert ours_step == measure_flops(model, lambda: model(x), torch.Tensor.sum) == 2 * 24 + 2 * 24
    # measure_flops ran a real backward and left .grad set: the next step's gradients
    # are added into it, one add per parameter element (12 + 3), as training would
    assert model.layer.weight.grad is not None
    assert flops_per_batch(model, x) == STEP + 12 + 3


class Memory(Logger):
    """A logger that keeps what it is given."""

    name, version = "memory", 0

    def __init__(self) -> None:
        super().__init__()
        self.metrics: list[dict] = []

    def log_metrics(self, metrics, step=None):
        self.metrics.append(dict(metrics))

    def log_hyperparams(self, *args, **kwargs):
        pass


def test_throughput_monitor_divides_the_count_by_the_time(tmp_path):
    torch.manual_seed(0)
    model, logger = Tiny(), Memory()
    monitor = ThroughputMonitor(batch_size_fn=lambda batch: batch[0].shape[0], window_size=2)
    trainer = L.Trainer(
        max_steps=3, accelerator="cpu", devices=1, logger=logger, log_every_n_steps=1,
        callbacks=[monitor], enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(model, DataLoader(TensorDataset(torch.randn(6, 4)), batch_size=2))
    assert model.flops_per_batch == STEP + SGD
    # over a window of 2 batches: one batch's FLOPs over the time between them
    first, second = (m for m in logger.metrics if "train/device/flops_per_sec" in m)
    elapsed = second["train/time"] - first["train/time"]
    assert second["train/device/flops_per_sec"] == pytest.approx((STEP + SGD) / elapsed)
