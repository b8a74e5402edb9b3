"""What search needs of a model: the seam between `nmt.search` and whatever decodes.

`nmt.model.transformer.Transformer` and `nmt.search.ensemble.Ensemble` both satisfy these protocols; beam search and
sampling are typed against them and use nothing else, so another decoder (a compiled step, another architecture)
plugs in by providing the same five members.
"""

from __future__ import annotations

from typing import Protocol

from torch import Tensor

from nmt.config import ModelConfig


class EncoderOutput(Protocol):
    """The encoded sources, one row per hypothesis once expanded to the beam."""

    def select(self, index: Tensor) -> "EncoderOutput":
        """The rows in `index` (beams of a sentence share its source row)."""
        ...


class DecodingState(Protocol):
    """What incremental decoding carries from one step to the next (key/value caches, the step count)."""

    record_attention: bool  # set before decoding: keep each step's encoder-decoder attention in `attention`
    attention: Tensor | None  # (rows, decoder layers, S): the last step's, averaged over heads

    def reorder(self, index: Tensor) -> None:
        """Rows of the self-attention caches for the next step (beam back-pointers, finished rows dropped)."""
        ...

    def select_memory(self, index: Tensor) -> None:
        """Keep the sources in `index` (when sentences leave the batch); their hypothesis rows are reordered
        separately, by `reorder`."""
        ...


class DecodingModel(Protocol):
    config: ModelConfig  # pad_id, bos_id, eos_id, vocab_size, learned_positions, max_positions

    def encode(self, src_tokens: Tensor) -> EncoderOutput:
        """src_tokens (B, S), padded with pad_id, each row ending in eos."""
        ...

    def init_state(self, encoder_out: EncoderOutput, rows_per_source: int = 1) -> DecodingState:
        """A decoding state whose encoder-decoder keys and values are computed once, now; each source row of
        `encoder_out` is decoded by `rows_per_source` consecutive hypothesis rows (a sentence's beams)."""
        ...

    def decode_step(self, tokens: Tensor, state: DecodingState) -> Tensor:
        """tokens (rows,), the last outputs -> log-probabilities (rows, V) in fp32; advances `state`."""
        ...

    def decode(self, prev_tokens: Tensor, encoder_out: EncoderOutput) -> Tensor:
        """Uncached decoding of whole prefixes (rows, T) -> logits or log-probabilities (rows, T, V)."""
        ...
