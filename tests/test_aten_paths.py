"""transformers models that take other paths on fake tensors than on real ones."""

import warnings

import pytest
import torch
from conftest import assert_untouched, flop_counter_total, snapshot
from torch.nn.attention import SDPBackend, sdpa_kernel

import flopgraph

transformers = pytest.importorskip("transformers")


def analyze(model, kwargs, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return flopgraph.analyze(model, (), kwargs=kwargs, **kw)


@pytest.mark.slow
def test_nystromformer_mask_that_fails_only_on_fake_tensors():
    """On fake tensors transformers cannot read the attention mask, so it keeps the full
    [1, 1, 16, 16] mask that the landmark scores [1, 2, 4, 16] cannot take; a real
    forward drops the all-ones mask. The forward then runs for real on copies."""
    c = transformers.NystromformerConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, num_landmarks=4, segment_means_seq_len=16,
        max_position_embeddings=64,
    )  # fmt: skip
    model = transformers.NystromformerModel(c).eval()
    ids = {"input_ids": torch.randint(0, 99, (1, 16))}
    before = snapshot(model)
    report = analyze(model, ids, frontend="aten")
    assert_untouched(model, before)
    assert report.frontend.real_run and "on fake tensors" in report.frontend.note
    assert report.skipped == {}
    with sdpa_kernel(SDPBackend.MATH):
        assert analyze(model, ids, convention="torch").flops == flop_counter_total(model, **ids)
    # given shapes only there is no real run to try: the fake run's error, op and shapes
    with pytest.raises(flopgraph.TraceError, match=r"Tensor.add.*\[1, 1, 16, 16\]"):
        analyze(model, {"input_ids": flopgraph.TensorSpec((1, 16), torch.long)}, frontend="aten")


@pytest.mark.slow
def test_switch_transformers_module_to_inside_forward():
    """The router casts its classifier with ``self.classifier.to(self.dtype)`` in
    forward: on the shadow it converts the shadow's own twins."""
    c = transformers.SwitchTransformersConfig(
        vocab_size=99, d_model=16, d_kv=4, d_ff=32, num_layers=2, num_decoder_layers=2,
        num_heads=2, num_experts=4, expert_capacity=8, num_sparse_encoder_layers=1,
        num_sparse_decoder_layers=1,
    )  # fmt: skip
    model = transformers.SwitchTransformersModel(c).eval()
    ids = torch.randint(0, 99, (1, 7))
    kwargs = {"input_ids": ids, "decoder_input_ids": ids}
    before = snapshot(model)
    report = analyze(model, kwargs, frontend="aten")
    assert_untouched(model, before)
    assert report.macs > 0
    # the fake run gets past the cast and stops only at the expert routing, whose
    # output shapes depend on values (not at "Couldn't swap Linear.weight")
    assert "the output shape of an op depends on tensor values" in report.frontend.note
    torch_preset = analyze(model, kwargs, convention="torch")
    with sdpa_kernel(SDPBackend.MATH):
        assert torch_preset.flops == flop_counter_total(model, **kwargs)
