"""Pure shape -> Cost formulas of the default convention.

Each function takes shapes (tuples of ints) and scalars, never tensors, nodes
or modules, and carries its arithmetic in a comment. The section letters refer
to the counting spec that docs/conventions.md explains.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod

from .records import Cost

Shape = Sequence[int]


def numel(shape: Shape) -> int:
    return prod(shape)


# --- A. contractions ---------------------------------------------------------


def linear(x: Shape, weight: Shape, bias: bool) -> Cost:
    # x[..., I] @ W[O, I]^T: numel(x) / I rows, each I * O multiply-adds (the rows are
    # x's leading dims, which also holds for I = 0, where only the bias is added)
    in_features = weight[-1]
    out_features = weight[0] if len(weight) == 2 else 1
    rows = numel(x[:-1])
    macs = rows * in_features * out_features
    return Cost(macs, 2 * macs + (rows * out_features if bias else 0))


def matmul(a: Shape, b: Shape, out: Shape) -> Cost:
    # every output element is one dot product over K = a[-1] (1-D cases included):
    # B * M * N * K, M * K (mv), K (dot)
    macs = numel(out) * (a[-1] if a else 1)
    return Cost(macs, 2 * macs)


def addmm(m1: Shape, m2: Shape, out: Shape) -> Cost:
    # alpha * (m1 @ m2) + beta * input: mm (or bmm / mv) plus one add per output element
    mm = matmul(m1, m2, out)
    return Cost(mm.macs, mm.flops + numel(out))


def addbmm(batch1: Shape, batch2: Shape, out: Shape) -> Cost:
    # sum over b of batch1[b] @ batch2[b]: b * M * N * K, then one add per output element
    macs = numel(batch1) * batch2[-1]  # b*M*K * N
    return Cost(macs, 2 * macs + numel(out))


def convolution(out: Shape, weight: Shape, bias: bool) -> Cost:
    # N * Cout * prod(S_out) * (Cin / g) * prod(k) = numel(out) * prod(weight[1:])
    macs = numel(out) * numel(weight[1:])
    return Cost(macs, 2 * macs + (numel(out) if bias else 0))


def conv_transpose(x: Shape, weight: Shape, out: Shape, bias: bool) -> Cost:
    # N * Cin * prod(S_in) * (Cout / g) * prod(k) = numel(x) * prod(weight[1:])
    macs = numel(x) * numel(weight[1:])
    return Cost(macs, 2 * macs + (numel(out) if bias else 0))


_INTERP_TAPS = {"linear": 2, "bilinear": 4, "trilinear": 8, "bicubic": 16}


def interpolate(mode: str, out: Shape) -> Cost:
    # taps * numel(out) multiply-adds; nearest modes only move data
    macs = _INTERP_TAPS.get(mode, 0) * numel(out)
    return Cost(macs, 2 * macs)


def interpolation_taps(mode: str) -> int | None:
    """Taps per output element of a weighted mode; None for nearest/area."""
    return _INTERP_TAPS.get(mode)


def bilinear(x1: Shape, x2: Shape, weight: Shape, bias: bool) -> Cost:
    # x1[..., I1], x2[..., I2], W[O, I1, I2]: B * O * I1 * I2 with B = numel(x1) / I1
    out_features, in1, in2 = weight
    rows = numel(x1) // in1 if in1 else 0
    macs = rows * out_features * in1 * in2
    return Cost(macs, 2 * macs + (rows * out_features if bias else 0))


def einsum(
    equation: str, shapes: Sequence[Shape], path: Sequence[Sequence[int]] | None = None
) -> Cost:
    """einsum as the sum of its pairwise contractions, each costing the product of
    the sizes of all distinct indices of its two operands.

    ``path`` lists the contractions in opt_einsum's convention (positions in the
    current operand list; the two are removed and their result appended at the
    end), as torch passes it to its kernel; None means left to right, torch's
    order when opt_einsum is unavailable or disabled. One operand is a
    reduction: numel of the index space minus numel(out) (0 for a permutation or
    a diagonal).
    """
    terms, out, size = _einsum_labels(equation, shapes)
    if len(terms) == 1:
        return Cost(0, max(0, _space(terms[0], size) - _space(out, size)))
    # left to right in the same convention: (0, 1), then the first operand left with
    # the result, which sits last: (0, n - 2), (0, n - 3), ..., (0, 1)
    left_to_right = [(0, 1)] + [(0, n) for n in range(len(terms) - 2, 0, -1)]
    pairs = list(path) if path is not None else left_to_right
    ops, macs, flops = list(terms), 0, 0
    for pair in pairs:
        picked = [ops[i] for i in pair]
        for i in sorted(pair, reverse=True):
            del ops[i]
        joined = frozenset().union(*picked)
        kept = joined & (out | frozenset().union(*ops))
        if len(picked) == 2:  # a contraction: one multiply-add per point of the joint space
            macs += _space(joined, size)
        else:  # opt_einsum may sum out an index of a single operand first
            flops += _space(joined, size) - _space(kept, size)
        ops.append(kept)
    return Cost(macs, 2 * macs + flops)


def _space(labels: frozenset[str], size: dict[str, int]) -> int:
    return prod(size[label] for label in labels)


def _einsum_labels(
    equation: str, shapes: Sequence[Shape]
) -> tuple[list[frozenset[str]], frozenset[str], dict[str, int]]:
    """Index labels of each operand and of the output, and the size of each label.

    ``...`` becomes one label per broadcast dim, aligned from the right; a label's
    size is its largest size among the operands (size-1 dims broadcast).
    """
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    size: dict[str, int] = {}
    terms: list[frozenset[str]] = []
    counts: dict[str, int] = {}
    widest = 0
    for term, shape in zip(lhs.split(","), shapes, strict=True):
        letters = term.replace("...", "")
        n_ell = len(shape) - len(letters) if "..." in term else 0
        widest = max(widest, n_ell)
        head, _, tail = term.partition("...")
        labels = [*head, *(f"...{k}" for k in range(n_ell - 1, -1, -1)), *tail]
        for label, s in zip(labels, shape, strict=True):
            size[label] = max(size.get(label, 1), s)  # ints, or SymInts (symbolic sizes)
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
        terms.append(frozenset(labels))
    ellipsis = {f"...{k}" for k in range(widest)}
    if arrow:
        out = set(rhs.replace("...", "")) | (ellipsis if "..." in rhs else set())
    else:  # implicit output: broadcast dims and the letters used once
        out = ellipsis | {c for c, n in counts.items() if n == 1 and not c.startswith("...")}
    return terms, frozenset(out), size


# --- A. attention --------------------------------------------------------------------


def attention(
    batch: int,
    tgt_len: int,
    src_len: int,
    head_dim: int,
    value_dim: int,
    masked: bool,
    dropout: bool = False,
    positions: int | None = None,
) -> Cost:
    """The attention core: softmax(q @ k^T * scale + mask) @ v, per batch row.

    ``batch`` folds every batch and head dim (B); L = tgt_len, S = src_len,
    E = head_dim, Ev = value_dim. ``dropout`` adds the scaled-mask multiply on
    the L x S weights (training with p > 0). ``positions``: the score positions
    computed per batch row, when not all L x S are (the causal triangle).
    """  # fmt: skip
    scores = batch * (tgt_len * src_len if positions is None else positions)  # B*L*S
    macs = scores * head_dim + scores * value_dim  # q @ k^T: B*L*S*E; attn @ v: B*L*S*Ev
    # 1 scale + 1 masking add when masked + 5 softmax per score, + 1 dropout multiply
    per_score = 1 + int(masked) + 5 + int(dropout)
    return Cost(macs, 2 * macs + per_score * scores)


def causal_positions(tgt_len: int, src_len: int) -> int:
    """Score positions a causal mask leaves (query i sees keys 0..i, torch's top-left
    alignment): L(L+1)/2 when L = S."""
    if tgt_len <= src_len:
        return tgt_len * (tgt_len + 1) // 2
    return src_len * (src_len + 1) // 2 + (tgt_len - src_len) * src_len


def scaled_dot_product_attention(
    q: Shape,
    k: Shape,
    v: Shape,
    out: Shape,
    masked: bool,
    dropout: bool = False,
    triangle: bool = False,
) -> Cost:
    # q[..., L, E], k[..., S, E], v[..., S, Ev] -> out[..., L, Ev]; B from out's leading
    # dims, so broadcast and grouped-query heads count once per query head; ``triangle``:
    # a causal call counts only its unmasked positions
    tgt_len, head_dim, src_len, value_dim = q[-2], q[-1], k[-2], v[-1]
    batch = numel(out[:-2])
    positions = causal_positions(tgt_len, src_len) if triangle else None
    return attention(batch, tgt_len, src_len, head_dim, value_dim, masked, dropout, positions)


def attention_backward(
    batch: int,
    tgt_len: int,
    src_len: int,
    head_dim: int,
    value_dim: int,
    masked: bool,
    dropout: bool = False,
    triangle: bool = False,
) -> Cost:
    """The backward of the attention core as fused (flash-style) kernels run it.

    MACs: the scores again (B*L*S*E), grad V = P^T dO (B*L*S*Ev), grad P = dO V^T
    (B*L*S*Ev), grad Q = dS K and grad K = dS^T Q (B*L*S*E each). Per score element:
    scale 1, masking add m, probabilities from the saved log-sum-exp 2 (subtract,
    exp), dropout mask 1 when training with p > 0, dS = P * (dP - D) 2, the scale
    on dS 1. Per query row, D = rowsum(dO * O): Ev multiplies and Ev - 1 adds.
    """  # fmt: skip
    scores = batch * (causal_positions(tgt_len, src_len) if triangle else tgt_len * src_len)
    macs = scores * (3 * head_dim + 2 * value_dim)
    per_score = 1 + int(masked) + 2 + int(dropout) + 2 + 1
    return Cost(macs, 2 * macs + per_score * scores + batch * tgt_len * (2 * value_dim - 1))


def convolution_backward(
    forward_macs: int,
    grad_input: bool,
    grad_weight: bool,
    grad_out_numel: int,
    bias_numel: int | None,
) -> Cost:
    """The gradients of one convolution, each a contraction with the forward's MACs:
    grad-input (the transposed convolution of grad-output with the weight) and
    grad-weight (the correlation of input and grad-output); a bias gradient is the
    sum of grad-output over all but the channel dim, numel(grad_out) - numel(bias).
    ``bias_numel`` None: no bias gradient asked for."""  # fmt: skip
    macs = forward_macs * (int(grad_input) + int(grad_weight))
    bias = 0 if bias_numel is None else grad_out_numel - bias_numel
    return Cost(macs, 2 * macs + bias)


def multihead_attention(
    batch: int,
    tgt_len: int,
    src_len: int,
    embed_dim: int,
    kdim: int,
    vdim: int,
    num_heads: int,
    *,
    in_bias: bool,
    out_bias: bool,
    extra_keys: int = 0,
    masked: bool = False,
    dropout: bool = False,
    average_weights: bool = False,
) -> Cost:
    """nn.MultiheadAttention as its parts: input projections, the attention core per
    head (heads folded into B), output projection.

    ``extra_keys`` counts keys appended after the projections (add_bias_kv and
    add_zero_attn, one each); ``average_weights`` adds the mean over heads of the
    returned weights (need_weights with average_attn_weights).
    """  # fmt: skip
    head_dim = embed_dim // num_heads
    keys = src_len + extra_keys
    q_proj = linear((batch * tgt_len, embed_dim), (embed_dim, embed_dim), in_bias)
    k_proj = linear((batch * src_len, kdim), (embed_dim, kdim), in_bias)
    v_proj = linear((batch * src_len, vdim), (embed_dim, vdim), in_bias)
    core = attention(batch * num_heads, tgt_len, keys, head_dim, head_dim, masked, dropout)
    out_proj = linear((batch * tgt_len, embed_dim), (embed_dim, embed_dim), out_bias)
    # mean over heads of weights [N, h, L, S']: numel(in)
    average = mean((batch, num_heads, tgt_len, keys)) if average_weights else Cost()
    return q_proj + k_proj + v_proj + core + out_proj + average


# --- A. recurrent layers ---------------------------------------------------------------

GATES = {"rnn": 1, "gru": 3, "lstm": 4}
"""Gate count G of each recurrent cell kind."""
_CELL_FLOPS = {"rnn": 1, "gru": 8, "lstm": 9}
# per hidden unit: rnn 1 activation; gru 3 activations + r*(W_hn h + b_hn) + (1-z)*n + z*h
# (4); lstm 4 activations + f*c + i*g (3) + tanh(c') + o*tanh(c')


def recurrent_step(
    cell: str, input_size: int, hidden_size: int, bias: bool, proj_size: int = 0
) -> Cost:
    """One time step of one layer and direction for one batch row (a *Cell call on
    one row). ``cell`` is ``"rnn"``, ``"gru"`` or ``"lstm"``."""  # fmt: skip
    g, h, p = GATES[cell], hidden_size, proj_size
    if p:  # LSTM projection: the recurrent input is P wide, then h = W_hr @ h_full
        macs = g * h * (input_size + p) + h * p
    else:
        macs = g * h * (input_size + h)
    # adding the input and recurrent products (G*H), two bias vectors, the cell math
    flops = 2 * macs + g * h + (2 * g * h if bias else 0) + _CELL_FLOPS[cell] * h
    return Cost(macs, flops)


def recurrent(
    cell: str,
    input_size: int,
    hidden_size: int,
    num_layers: int,
    directions: int,
    bias: bool,
    proj_size: int,
    row_steps: int,
) -> Cost:
    """A stacked RNN/GRU/LSTM over ``row_steps`` (batch row, time step) pairs: the
    sequence length times the batch, or sum(batch_sizes) for a packed sequence.

    Layers above the first read the concatenated directions of the layer below:
    (proj_size or hidden_size) * directions wide.
    """  # fmt: skip
    total = Cost()
    out_width = proj_size or hidden_size
    for layer in range(num_layers):
        width = input_size if layer == 0 else out_width * directions
        step = recurrent_step(cell, width, hidden_size, bias, proj_size)
        runs = row_steps * directions
        total += Cost(step.macs * runs, step.flops * runs)
    return total


# --- B. elementwise ------------------------------------------------------------


def elementwise(out: Shape, per_element: int = 1) -> Cost:
    # per_element flops for each element of the output
    return Cost(0, per_element * numel(out))


# --- C. reductions and softmax ----------------------------------------------------


def reduce(inp: Shape, out: Shape) -> Cost:
    # n - 1 adds (or comparisons) per reduced group: numel(in) - numel(out)
    return Cost(0, numel(inp) - numel(out))


def mean(inp: Shape) -> Cost:
    # n - 1 adds and 1 divide per group: numel(in)
    return Cost(0, numel(inp))


def var(inp: Shape, out: Shape, sqrt: bool) -> Cost:
    # mean, subtract, square, accumulate: 4 * numel(in); std adds a sqrt per output
    return Cost(0, 4 * numel(inp) + (numel(out) if sqrt else 0))


def norm2(inp: Shape, out: Shape) -> Cost:
    # square and accumulate: 2 * numel(in); then one sqrt per output element
    return Cost(0, 2 * numel(inp) + numel(out))


def vector_norm(inp: Shape, out: Shape, p: float | str | None) -> Cost:
    """A vector p-norm over the reduced dims (None, 2 and "fro" are the 2-norm).

    Following the 2-norm's rule (one operation per element and one to accumulate
    it, then the root): p = 1 is abs and accumulate, p = +-inf abs and compare,
    p = 0 compare and count (2 * numel(in), no root); any other p is abs, power
    and accumulate, then the 1/p power (3 * numel(in) + numel(out)).
    """
    if p in (None, 2, 2.0, "fro"):
        return norm2(inp, out)
    if p in (1, 1.0, 0, 0.0, float("inf"), float("-inf")):
        return Cost(0, 2 * numel(inp))
    return Cost(0, 3 * numel(inp) + numel(out))


def cumulative(inp: Shape, dim_size: int) -> Cost:
    # n - 1 adds along the dim per line: numel(in) - numel(in) / size(dim)
    n = numel(inp)
    return Cost(0, n - (n // dim_size if dim_size else 0))


def softmax(inp: Shape) -> Cost:
    # max, subtract, exp, sum, divide (or log): 5 per element
    return Cost(0, 5 * numel(inp))


# --- D. normalization ------------------------------------------------------------


def batch_norm_eval(out: Shape, affine: bool) -> Cost:
    # subtract mean, multiply by inverse std; + scale and shift when affine
    return Cost(0, (2 + (2 if affine else 0)) * numel(out))


def normalization(out: Shape, weight: bool, bias: bool) -> Cost:
    # statistics from the input: mean 1 + variance 3 + normalize 2 = 6 per element,
    # + 1 per element for each of weight and bias
    return Cost(0, (6 + int(weight) + int(bias)) * numel(out))


def rms_norm(out: Shape, weight: bool) -> Cost:
    # square, mean, multiply by rsqrt: 3 per element; + 1 with a weight
    return Cost(0, (3 + int(weight)) * numel(out))


def normalize_p2(out: Shape) -> Cost:
    # square, sum, divide: 3 per element
    return Cost(0, 3 * numel(out))


def local_response_norm(out: Shape, size: int) -> Cost:
    # (2 * size + 3) per element
    return Cost(0, (2 * size + 3) * numel(out))


# --- E. pooling ---------------------------------------------------------------------


def pool(out: Shape, kernel: Shape) -> Cost:
    # every output element reads prod(kernel) inputs: numel(out) * prod(kernel)
    return Cost(0, numel(out) * numel(kernel))


def adaptive_window_sum(n: int, m: int) -> int:
    """Sum over the m output positions of the window length along one dim.

    Window i spans floor(i*n/m) to ceil((i+1)*n/m), as torch computes it (in
    integer arithmetic here, so the count is exact at any size).
    """
    return sum(-(-(i + 1) * n // m) - i * n // m for i in range(m))


def adaptive_pool(inp: Shape, out: Shape, dims: int) -> Cost:
    # leading (N, C) elements times, over the `dims` spatial dims, the product of the
    # window sums: a global pool is numel(in)
    lead = numel(out[: len(out) - dims])
    per = prod(adaptive_window_sum(n, m) for n, m in zip(inp[-dims:], out[-dims:], strict=True))
    return Cost(0, lead * per)


def roi_align(out: Shape, samples_per_bin: int) -> Cost:
    """RoIAlign (and its position-sensitive form) on out[K, C, PH, PW]: every bin
    averages ``samples_per_bin`` bilinear samples of one channel.

    Each sample is a bilinear interpolation (4 taps, as ``interpolate``) and the
    average over a bin's samples is section C's mean (numel of the samples).
    """
    samples = numel(out) * samples_per_bin  # [K, C, PH, PW, grid_h * grid_w]
    return interpolate("bilinear", (samples,)) + mean((samples,))


# --- F. embedding ----------------------------------------------------------------------


def embedding_bag(gathered: int, out: Shape, mode: str) -> Cost:
    # sum / max: n - 1 adds or comparisons per bag; mean: n per bag (the divide included)
    return Cost(0, gathered if mode == "mean" else gathered - numel(out))


# --- beyond the spec: each derived from a section's principle (docs/conventions.md) ------


def weight_norm(v: Shape, g: Shape) -> Cost:
    """weight_norm: w = v * (g / ||v||), the norm over every dim but one.

    Section C's norm (square and accumulate: 2 per element of v, a sqrt per slice),
    a divide g / ||v|| per slice and a multiply per element of v (section B):
    3 * numel(v) + 2 * numel(g).
    """
    return Cost(0, 3 * numel(v) + 2 * numel(g))


def grid_sample(out: Shape, taps: int) -> Cost:
    # interpolate's rule at arbitrary sample points: taps multiply-adds per element of
    # out [N, C, *S_out] (per output point and channel); nearest moves data (taps = 0)
    macs = taps * numel(out)
    return Cost(macs, 2 * macs)


def affine_grid(out: Shape, k: int) -> Cost:
    # the base grid [N, H*W, K] (K = 3 in 2-D, 4 in 3-D: coordinates and a 1) times
    # theta^T [N, K, K - 1]: a batched matmul, M*N*K = numel(out) * K (section A)
    macs = numel(out) * k
    return Cost(macs, 2 * macs)


def fft_log2(n: int) -> int:
    """ceil(log2 n): the number of radix-2 stages of a length-n transform (0 for n = 1)."""
    return (n - 1).bit_length()


def fft(signal: Shape, lengths: Shape, real: bool, scaled_out: int = 0) -> Cost:
    """A discrete Fourier transform over ``lengths`` of a signal of shape ``signal``.

    The classic count: 5 * N * log2(N) flops per complex transform of length N. A
    transform over several dims is one length-N_d transform per line along each dim
    d: 5 * numel(signal) * sum(log2 N_d). A length that is not a power of two counts
    ceil(log2 N) stages; a real signal (r2c, c2r) half the complex count, rounded
    down. A normalized transform adds one multiply per output element (``scaled_out``).
    """
    flops = 5 * numel(signal) * sum(fft_log2(n) for n in lengths)
    return Cost(0, (flops // 2 if real else flops) + scaled_out)


def scatter_reduce(src: Shape, out: Shape, reduce: str, scale: bool = False) -> Cost:
    # one op per source element folded into out (add, multiply, max/min comparison);
    # mean divides each element of out by its count; index_add with alpha != 1
    # scales each source element first
    per_source = 2 if scale else 1
    return Cost(0, per_source * numel(src) + (numel(out) if reduce == "mean" else 0))
