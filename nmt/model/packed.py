"""Linear layers with their weights packed for oneDNN, the CPU matrix-product library PyTorch ships: for decoding.

A decoding step multiplies a few hundred rows (hypotheses) by each weight matrix. `F.linear` hands the weight to the
BLAS as it is stored, and at those row counts it ran at ~60% of this CPU's peak; oneDNN's linear on a weight
reordered once into its blocked layout ran 1.5-3.7x faster per product here (2 cores, AMD EPYC; 16-1,600 rows, the
widths of transformer_small and the 8,000-piece output projection). That is the packing CTranslate2 does.

Packed weights are for inference only: they are not parameters (no gradient, not in the state dict), and they stay
fp32, so a model decoding under bf16/fp16 autocast, or with int8 linear layers, is left as it is.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# What the weight's blocked layout is chosen for; any row count works, this one suits beam search's batches.
ROWS_HINT = 256


def packing_available() -> bool:
    return (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))


class PackedLinear(nn.Module):
    """y = x W^T + b with W reordered once for oneDNN; x of any leading shape, fp32, on the CPU."""

    def __init__(self, weight: Tensor, bias: Tensor | None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach().float().contiguous(), ROWS_HINT)
        self.bias = bias.detach().float().contiguous() if bias is not None else None

    def forward(self, x: Tensor) -> Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, packed for oneDNN"


def pack_output_projection(model: nn.Module) -> bool:
    """Only the tied output projection (what int8 dynamic quantization leaves in fp32); False where not possible."""
    if not packing_available():
        return False
    try:
        model.packed_output_projection = PackedLinear(model.embed_tokens.weight, None)
    except RuntimeError:  # a oneDNN that refuses this CPU: F.linear as before
        return False
    return True


def pack_for_cpu_inference(model: nn.Module) -> bool:
    """Replace, in place, every nn.Linear of `model` (and its tied output projection) by a PackedLinear; False, with
    the model untouched, where this torch has no oneDNN linear."""
    if not packing_available():
        return False
    try:  # packed first, swapped in after: a oneDNN that refuses this CPU leaves the model as it was
        replacements = [(module, name, PackedLinear(child.weight, child.bias))
                        for module in model.modules() for name, child in module.named_children()
                        if type(child) is nn.Linear]
        output = PackedLinear(model.embed_tokens.weight, None) if hasattr(model, "embed_tokens") else None
    except RuntimeError:
        return False
    for module, name, packed in replacements:
        setattr(module, name, packed)
    if output is not None:  # the output projection shares the embedding matrix (section 3.4)
        model.packed_output_projection = output
    return True
