"""Section D: batch, layer, group, instance, RMS and local response norms."""

from __future__ import annotations

from torch import nn

from .. import formulas as f
from ..records import Cost
from ..registry import Rule
from .context import OpContext
from .table import DEFAULT, forms

_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
_INSTANCE_NORMS = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)


def _stats_or_running(ctx: OpContext, from_input: bool, weight: bool, bias: bool) -> Cost:
    if from_input:
        return f.normalization(ctx.y.shape, weight, bias)
    # running statistics: an affine transform needs both weight and bias in torch's
    # modules; a functional call may pass one, which costs one flop per element
    extra = int(weight) + int(bias)
    return Cost(0, f.batch_norm_eval(ctx.y.shape, False).flops + extra * ctx.y.numel)


def batch_norm_module(ctx: OpContext) -> Cost:
    m = ctx.module
    assert isinstance(m, nn.modules.batchnorm._NormBase)
    # torch uses batch statistics in training, or when no running stats are tracked
    from_input = m.training or (m.running_mean is None and m.running_var is None)
    return _stats_or_running(ctx, from_input, m.weight is not None, m.bias is not None)


def batch_norm_function(ctx: OpContext) -> Cost:
    # F.batch_norm(input, running_mean, running_var, weight, bias, training)
    from_input = bool(ctx.arg(5, "training", False)) or ctx.arg(1, "running_mean") is None
    w, b = ctx.arg(3, "weight"), ctx.arg(4, "bias")
    return _stats_or_running(ctx, from_input, w is not None, b is not None)


def instance_norm_module(ctx: OpContext) -> Cost:
    m = ctx.module
    assert isinstance(m, nn.modules.instancenorm._InstanceNorm)
    from_input = m.training or not m.track_running_stats
    return _stats_or_running(ctx, from_input, m.weight is not None, m.bias is not None)


def instance_norm_function(ctx: OpContext) -> Cost:
    # F.instance_norm(input, running_mean, running_var, weight, bias, use_input_stats)
    from_input = bool(ctx.arg(5, "use_input_stats", True))
    w, b = ctx.arg(3, "weight"), ctx.arg(4, "bias")
    return _stats_or_running(ctx, from_input, w is not None, b is not None)


def affine_norm_module(ctx: OpContext) -> Cost:
    # LayerNorm and GroupNorm: statistics from the input, optional weight and bias
    m = ctx.module
    assert m is not None
    w, b = getattr(m, "weight", None), getattr(m, "bias", None)
    return f.normalization(ctx.y.shape, w is not None, b is not None)


def layer_norm_function(ctx: OpContext) -> Cost:
    # F.layer_norm(input, normalized_shape, weight, bias) and
    # F.group_norm(input, num_groups, weight, bias): the same argument positions
    w, b = ctx.arg(2, "weight"), ctx.arg(3, "bias")
    return f.normalization(ctx.y.shape, w is not None, b is not None)


def rms_norm_module(ctx: OpContext) -> Cost:
    m = ctx.module
    assert m is not None
    return f.rms_norm(ctx.y.shape, getattr(m, "weight", None) is not None)


def rms_norm_function(ctx: OpContext) -> Cost:
    return f.rms_norm(ctx.y.shape, ctx.arg(2, "weight") is not None)


def normalize(ctx: OpContext) -> Cost:
    return f.normalize_p2(ctx.y.shape)


def local_response_norm_module(ctx: OpContext) -> Cost:
    m = ctx.module
    assert isinstance(m, nn.LocalResponseNorm)
    return f.local_response_norm(ctx.y.shape, m.size)


def local_response_norm_function(ctx: OpContext) -> Cost:
    return f.local_response_norm(ctx.y.shape, int(ctx.arg(1, "size")))


DEFAULT.add(_BATCH_NORMS, Rule("batch_norm", batch_norm_module))
DEFAULT.add(forms("batch_norm", methods=False), Rule("batch_norm", batch_norm_function))
DEFAULT.add(_INSTANCE_NORMS, Rule("instance_norm", instance_norm_module))
DEFAULT.add(forms("instance_norm", methods=False), Rule("instance_norm", instance_norm_function))
DEFAULT.add([nn.LayerNorm], Rule("layer_norm", affine_norm_module))
DEFAULT.add([nn.GroupNorm], Rule("group_norm", affine_norm_module))
DEFAULT.add(forms("layer_norm", methods=False), Rule("layer_norm", layer_norm_function))
DEFAULT.add(forms("group_norm", methods=False), Rule("group_norm", layer_norm_function))
DEFAULT.add([nn.RMSNorm], Rule("rms_norm", rms_norm_module))
DEFAULT.add(forms("rms_norm", methods=False), Rule("rms_norm", rms_norm_function))
DEFAULT.add(forms("normalize", methods=False), Rule("normalize", normalize))
DEFAULT.add([nn.LocalResponseNorm], Rule("local_response_norm", local_response_norm_module))
DEFAULT.add(
    forms("local_response_norm", methods=False),
    Rule("local_response_norm", local_response_norm_function),
)


def weight_norm(ctx: OpContext) -> Cost:
    # torch._weight_norm(v, g, dim) and aten._weight_norm_interface(v, g, dim): the
    # weight nn.utils.weight_norm and parametrizations.weight_norm rebuild every call
    return f.weight_norm(ctx.arg(0, "v").shape, ctx.arg(1, "g").shape)


DEFAULT.add(forms("_weight_norm", methods=False), Rule("weight_norm", weight_norm))
