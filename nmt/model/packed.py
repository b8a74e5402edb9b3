"""Linear layers with their weights packed for oneDNN, the CPU matrix-product library PyTorch ships: for decoding.

A decoding step multiplies a few hundred rows (hypotheses) by each weight matrix. `F.linear` hands the weight to the
BLAS as it is stored, and at those row counts it ran at ~60% of this CPU's peak; oneDNN's linear on a weight
reordered once into its blocked layout ran 1.5-3.7x faster per product here (2 cores, AMD EPYC; 16-1,600 rows, the
widths of transformer_small and the 8,000-piece output projection). That is the packing CTranslate2 does.

Packed weights are for inference only: they are not parameters (no gradient, not in the state dict), and they stay
fp32, so a model decoding under bf16/fp16 autocast, or with int8 linear layers, is left as it is. Each layer also
keeps its weight transposed, for calls at a few rows (a single sentence's decoding steps), except the output
projection: those weights twice in memory where the model had them once.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# What the weight's blocked layout is chosen for; any row count works, this one suits beam search's batches.
ROWS_HINT = 256
# oneDNN's linear costs ~20 us a call whatever its size on some CPUs (2 cores, Intel Xeon): at up to this many rows
# (a sentence's beams), a plain matrix product with the weight stored transposed was faster there, 6.5 against 25 us
# for 4 x 256 x 256. On others (AMD EPYC, 2 threads) the packed layout was faster at every row count: a
# transformer_base sentence took 181-188 ms packed against 296-329 ms so. Hence `pack_for_cpu_inference` times both
# on the model's own layers, at the thread count it runs with, and keeps the faster. Not for the output projection
# (d_model -> vocabulary): there the packed layout was faster at every row count on both, 0.35 against 1.08 ms for
# 4 x 256 x 8,000 (AMD EPYC, 1 thread), so it is packed only.
SMALL_ROWS = 32


def packing_available() -> bool:
    return (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))


class PackedLinear(nn.Module):
    """y = x W^T + b with W reordered once for oneDNN; x of any leading shape, fp32, on the CPU."""

    def __init__(self, weight: Tensor, bias: Tensor | None, small_rows: int = SMALL_ROWS):
        super().__init__()
        self.small_rows = small_rows
        self.out_features, self.in_features = weight.shape
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach().float().contiguous(), ROWS_HINT)
        self.bias = bias.detach().float().contiguous() if bias is not None else None
        # (in, out), for calls at up to small_rows rows
        self.transposed = weight.detach().float().t().contiguous() if small_rows else None

    def forward(self, x: Tensor) -> Tensor:
        return (_small if x.dim() == 2 and x.shape[0] <= self.small_rows else _large)(self, x)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, packed for oneDNN"


def _small(linear: PackedLinear, x: Tensor) -> Tensor:
    """x (rows, in) at up to SMALL_ROWS rows, times the transposed weight."""
    if linear.bias is None:
        return torch.mm(x, linear.transposed)
    return torch.addmm(linear.bias, x, linear.transposed)


def _large(linear: PackedLinear, x: Tensor) -> Tensor:
    """x of any leading shape, through oneDNN's packed weight."""
    return torch.ops.mkldnn._linear_pointwise(x, linear.packed, linear.bias, "none", [], "")


class PackedDecoderStep:
    """`Transformer.decode_step` of a packed model, written as one function over its weights.

    The same arithmetic as `DecoderLayer.step` (the test holds them equal), without a module call, a closure or an
    attribute lookup per product: at a single sentence's four beams a step is a few hundred small operations, and
    their Python overhead was a sixth of its time. Each product picks its kernel once a step (`small_rows`)."""

    def __init__(self, model: nn.Module, small_rows: int = SMALL_ROWS):
        config = model.config
        self.model = model
        self.small_rows = small_rows
        self.heads, self.head_dim = config.heads, config.d_model // config.heads
        self.pre_norm = config.pre_norm
        self.activation = model.decoder_layers[0].ffn.activation
        self.layers = [(layer.self_attn.qkv_proj, layer.self_attn.out_proj, layer.self_attn_sublayer.norm,
                        layer.cross_attn.q_proj, layer.cross_attn.out_proj, layer.cross_attn_sublayer.norm,
                        layer.ffn.linear1, layer.ffn.linear2, layer.ffn_sublayer.norm)
                       for layer in model.decoder_layers]
        if not all(isinstance(module, (PackedLinear, nn.LayerNorm)) for layer in self.layers for module in layer):
            raise TypeError("PackedDecoderStep needs a model packed by pack_for_cpu_inference")

    def __call__(self, tokens: Tensor, state) -> Tensor:
        model, H, D, pre = self.model, self.heads, self.head_dim, self.pre_norm
        x = model.target_embedding(tokens) * model.embed_scale + model.embed_positions(1, state.step)  # (R, d)
        R, d = x.shape
        g = state.rows_per_source  # a source's rows (beams), which share its keys and values
        linear = _small if R <= self.small_rows else _large
        activation = self.activation
        for (qkv, out, norm1, q_proj, cross_out, norm2, ffn1, ffn2, norm3), self_cache, cross_cache in zip(
                self.layers, state.self_caches, state.cross_caches):
            h = F.layer_norm(x, (d,), norm1.weight, norm1.bias, norm1.eps) if pre else x
            q, k, v = linear(qkv, h).view(R, 3, H, 1, D).unbind(1)  # each (R, H, 1, D)
            k, v = self_cache.update(k, v)
            h = linear(out, F.scaled_dot_product_attention(q, k, v).reshape(R, d))
            x = x + h if pre else F.layer_norm(x + h, (d,), norm1.weight, norm1.bias, norm1.eps)

            h = F.layer_norm(x, (d,), norm2.weight, norm2.bias, norm2.eps) if pre else x
            q = linear(q_proj, h).view(R // g, g, H, D).transpose(1, 2)  # (n, H, g, D)
            h = F.scaled_dot_product_attention(q, cross_cache.keys, cross_cache.values, attn_mask=state.memory_mask)
            h = linear(cross_out, h.transpose(1, 2).reshape(R, d))
            x = x + h if pre else F.layer_norm(x + h, (d,), norm2.weight, norm2.bias, norm2.eps)

            h = F.layer_norm(x, (d,), norm3.weight, norm3.bias, norm3.eps) if pre else x
            h = linear(ffn2, activation(linear(ffn1, h)))
            x = x + h if pre else F.layer_norm(x + h, (d,), norm3.weight, norm3.bias, norm3.eps)
        if model.decoder_norm is not None:
            x = model.decoder_norm(x)
        state.step += 1
        return F.log_softmax(model.output_projection(x), dim=-1)


def pack_output_projection(model: nn.Module) -> bool:
    """Only the output projection (what int8 dynamic quantization leaves in fp32); False where not possible."""
    if not packing_available():
        return False
    try:
        model.packed_output_projection = PackedLinear(model.output_matrix, model.output_bias, small_rows=0)
    except RuntimeError:  # a oneDNN that refuses this CPU: F.linear as before
        return False
    return True


def transposed_is_faster(layers: list[PackedLinear], rows: int = 4, calls: int = 10) -> bool:
    """Whether `layers` (one decoder layer's products) run faster at a sentence's `rows` with the transposed weight
    than with oneDNN's packed one, on this CPU at the current thread count: the best of `calls` of each, a few
    milliseconds in all."""
    inputs = [torch.randn(rows, layer.in_features) for layer in layers]

    def best(kernel) -> float:
        times = []
        for _ in range(calls + 1):  # the first call warms up
            started = time.perf_counter()
            for layer, x in zip(layers, inputs):
                kernel(layer, x)
            times.append(time.perf_counter() - started)
        return min(times[1:])
    return best(_small) < best(_large)


def pack_for_cpu_inference(model: nn.Module, small_rows: int | None = None) -> bool:
    """Replace, in place, every nn.Linear of `model` (and its tied output projection) by a PackedLinear; False, with
    the model untouched, where this torch has no oneDNN linear. `small_rows`: up to how many rows the transposed
    weight is used; None: SMALL_ROWS where `transposed_is_faster` on the first decoder layer, else 0."""
    if not packing_available():
        return False
    try:  # packed first, swapped in after: a oneDNN that refuses this CPU leaves the model as it was
        replacements = [(module, name, PackedLinear(child.weight, child.bias))
                        for module in model.modules() for name, child in module.named_children()
                        if type(child) is nn.Linear]
        output = PackedLinear(model.output_matrix, model.output_bias, small_rows=0) \
            if hasattr(model, "output_matrix") else None
    except RuntimeError:
        return False
    for module, name, packed in replacements:
        setattr(module, name, packed)
    if output is not None:  # the output projection (tied: the embedding matrix, section 3.4) is no nn.Linear
        model.packed_output_projection = output
    if small_rows is None:
        first = [m for m in model.decoder_layers[0].modules() if isinstance(m, PackedLinear)] \
            if hasattr(model, "decoder_layers") else []
        small_rows = SMALL_ROWS if first and transposed_is_faster(first) else 0
    for _, _, packed in replacements:
        packed.small_rows = small_rows
        if not small_rows:
            packed.transposed = None  # not used: the memory back
    if hasattr(model, "decoder_layers"):
        model.packed_decode_step = PackedDecoderStep(model, small_rows)
    return True
