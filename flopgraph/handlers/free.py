"""Ops that count 0 and why: data movement, metadata queries, factories.

Integer and boolean results need no entry here: any op whose outputs hold no
floating point or complex tensor is free by rule (see ``analyze``).
"""

from __future__ import annotations

import builtins
import operator

from torch import nn

from .table import DEFAULT, forms

MOVEMENT = (
    "view", "view_as", "reshape", "reshape_as", "flatten", "unflatten", "ravel", "permute",
    "transpose", "t", "swapaxes", "swapdims", "movedim", "moveaxis", "contiguous", "expand",
    "expand_as", "broadcast_to", "broadcast_tensors", "repeat", "repeat_interleave", "tile",
    "cat", "concat", "concatenate", "stack", "hstack", "vstack", "dstack", "column_stack",
    "split", "split_with_sizes", "tensor_split", "hsplit", "vsplit", "chunk", "unbind",
    "narrow", "select", "index_select", "take", "take_along_dim", "gather", "scatter",
    "index_put", "index_copy", "index_fill", "masked_select", "masked_scatter", "masked_fill",
    "pad", "clone", "copy_", "detach", "squeeze", "unsqueeze", "diagonal", "diag", "diag_embed",
    "unfold", "fold", "tril", "triu", "flip", "fliplr", "flipud", "roll", "rot90",
    "as_strided", "pixel_shuffle", "pixel_unshuffle", "channel_shuffle",
    "native_channel_shuffle", "atleast_1d", "atleast_2d", "atleast_3d", "meshgrid",
    "embedding", "upsample_nearest", "sort", "topk", "msort", "kthvalue", "median",
    "new_tensor", "set_", "resize_", "resize_as_", "align_as",
)  # fmt: skip
CASTS = (
    "to", "type", "type_as", "float", "double", "half", "bfloat16", "int", "long", "bool",
    "short", "char", "byte", "cpu", "cuda", "requires_grad_", "as_tensor", "tensor",
    "view_as_real", "view_as_complex", "real", "imag", "conj", "resolve_conj", "resolve_neg",
)  # fmt: skip
FACTORIES = (
    "zeros", "ones", "empty", "full", "arange", "linspace", "logspace", "eye", "rand", "randn",
    "randint", "randperm", "zeros_like", "ones_like", "empty_like", "full_like", "rand_like",
    "randn_like", "randint_like", "new_zeros", "new_ones", "new_empty", "new_full",
    "bernoulli", "multinomial", "normal", "uniform_", "fill_", "zero_", "tril_indices",
    "triu_indices", "scalar_tensor",
)  # fmt: skip
QUERIES = ("size", "dim", "numel", "nelement", "stride", "element_size", "data_ptr",
           "is_contiguous", "is_floating_point", "is_complex", "item", "tolist", "numpy",
           "storage_offset", "get_device")  # fmt: skip

FREE_MODULES = (
    nn.Identity, nn.Flatten, nn.Unflatten, nn.Embedding, nn.PixelShuffle, nn.PixelUnshuffle,
    nn.ChannelShuffle, nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d, nn.ConstantPad1d,
    nn.ConstantPad2d, nn.ConstantPad3d, nn.ReflectionPad1d, nn.ReflectionPad2d,
    nn.ReflectionPad3d, nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ReplicationPad3d,
    nn.CircularPad1d, nn.CircularPad2d, nn.CircularPad3d, nn.Fold, nn.Unfold,
)  # fmt: skip

for _names, _reason in (
    (MOVEMENT, "data movement"),
    (CASTS, "dtype or device cast"),
    (FACTORIES, "tensor factory"),
    (QUERIES, "metadata query"),
):
    for _name in _names:
        DEFAULT.free(forms(_name), _name, _reason)

DEFAULT.free([operator.getitem], "getitem", "indexing")
DEFAULT.free([operator.setitem, "__setitem__"], "setitem", "data movement")
DEFAULT.free([builtins.getattr], "getattr", "attribute access")
DEFAULT.free(["__getitem__"], "getitem", "indexing")
for _cls in FREE_MODULES:
    DEFAULT.free([_cls], _cls.__name__.lower(), "data movement")
