"""flopgraph.integrations.transformers: FlopsCallback in a real Trainer run (a one-layer
GPT-2 of width 32, two steps on the CPU), against flopgraph's own training-step count
of the batch the Trainer builds."""

import pytest
import torch

import flopgraph

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")
from flopgraph.integrations import FlopsCallback  # noqa: E402 (imports transformers)

PEAK = 1e12
SEQ = 8


def tiny_gpt2():
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=16, bos_token_id=0,
        eos_token_id=0,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config)


def train(tmp_path, batch: int, accumulation: int):
    model = tiny_gpt2()
    data = [{"input_ids": torch.arange(SEQ) + i, "labels": torch.arange(SEQ) + i} for i in range(4)]
    callback = FlopsCallback(peak=PEAK)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), use_cpu=True, report_to=[], max_steps=2, logging_steps=1,
        per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation,
        save_strategy="no", disable_tqdm=True,
    )  # fmt: skip
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=[callback])
    trainer.train()
    return model, trainer, callback


def batch_of(rows: range, items: int) -> dict:
    """The batch the Trainer builds: the rows stacked, and the count of predicted
    labels of the whole step (each row predicts SEQ - 1 tokens), which it passes to a
    model that takes loss arguments."""
    ids = torch.stack([torch.arange(SEQ) + i for i in rows])
    return {"input_ids": ids, "labels": ids, "num_items_in_batch": torch.tensor(float(items))}


@pytest.mark.parametrize("batch, accumulation", [(2, 1), (1, 2)])
def test_callback_logs_the_exact_step(tmp_path, batch, accumulation):
    model, trainer, callback = train(tmp_path, batch, accumulation)
    assert [s.step for s in callback.steps] == [1, 2]
    assert [s.batches for s in callback.steps] == [accumulation] * 2
    rows = batch * accumulation
    report = flopgraph.analyze(
        model, kwargs=batch_of(range(batch), rows * (SEQ - 1)), training=True,
        optimizer=trainer.optimizer.optimizer,
    )  # fmt: skip
    optimizer = report.by_phase()["optimizer"].flops
    # each later micro-batch adds its gradients into the ones before: one add per
    # element of every trainable parameter (the tied embedding counted once)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    want = accumulation * (report.model_flops - optimizer) + (accumulation - 1) * trainable
    want += optimizer
    assert [s.model_flops for s in callback.steps] == [want, want]
    assert callback.total_flops == 2 * want
    if accumulation == 1:
        assert want == report.model_flops  # the step is flopgraph's count of the batch
    # the Trainer's estimate: 6 x tokens x parameters without the embeddings
    six_n = 6 * rows * SEQ * model.num_parameters(exclude_embeddings=True)
    assert trainer.state.total_flos == 2 * six_n != 2 * want
    logged = [h for h in trainer.state.log_history if "loss" in h]
    for entry, step in zip(logged, callback.steps, strict=True):
        assert entry["step_flops"] == step.model_flops
        assert entry["flops_per_second"] == pytest.approx(step.model_flops / step.seconds)
        assert entry["mfu"] == pytest.approx(step.model_flops / step.seconds / PEAK)
        assert step.utilization is not None and step.utilization.mfu == pytest.approx(entry["mfu"])
    assert not model._forward_pre_hooks  # the callback's hook went with train()
