"""Several models decoding as one: at every step the mean of their probabilities, as log-probabilities.

log p(y | ...) = log (1/M sum_m p_m(y | ...)), computed as logsumexp over the models' log-probabilities minus log M
(fairseq's and Marian's ensembles). The models must share the vocabulary and its special ids; their architectures
may differ. `Ensemble` follows the decoding protocol of `nmt.model.transformer.Transformer`, so beam search and
sampling take it as they take one model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from nmt.errors import NmtError
from nmt.model.transformer import DecoderState, EncoderOut, Transformer


@dataclass
class EnsembleEncoderOut:
    parts: list[EncoderOut]

    def select(self, index: Tensor) -> "EnsembleEncoderOut":
        return EnsembleEncoderOut([part.select(index) for part in self.parts])


@dataclass
class EnsembleState:
    parts: list[DecoderState]
    record_attention: bool = False
    attention: Tensor | None = None  # (B, layers, S) of the first model (layer counts may differ between models)

    def reorder(self, index: Tensor) -> None:
        for part in self.parts:
            part.reorder(index)

    def select_memory(self, index: Tensor) -> None:
        for part in self.parts:
            part.select_memory(index)


class Ensemble:
    def __init__(self, models: list[Transformer]):
        if not models:
            raise NmtError("an ensemble needs at least one model")
        first = models[0].config
        for model in models[1:]:
            special = ("vocab_size", "pad_id", "bos_id", "eos_id")
            if any(getattr(model.config, name) != getattr(first, name) for name in special):
                raise NmtError("the models of an ensemble must share one vocabulary")
        self.models = models
        self.config = first

    def encode(self, src_tokens: Tensor) -> EnsembleEncoderOut:
        return EnsembleEncoderOut([model.encode(src_tokens) for model in self.models])

    def init_state(self, encoder_out: EnsembleEncoderOut) -> EnsembleState:
        return EnsembleState([model.init_state(part) for model, part in zip(self.models, encoder_out.parts)])

    def _mean(self, logprobs: list[Tensor]) -> Tensor:
        return torch.logsumexp(torch.stack(logprobs), dim=0) - math.log(len(logprobs))

    def decode_step(self, tokens: Tensor, state: EnsembleState) -> Tensor:
        for part in state.parts:
            part.record_attention = state.record_attention
        logprobs = self._mean([model.decode_step(tokens, part) for model, part in zip(self.models, state.parts)])
        state.attention = state.parts[0].attention
        return logprobs

    def decode(self, prev_tokens: Tensor, encoder_out: EnsembleEncoderOut) -> Tensor:
        """Uncached decoding of a whole prefix: (B, T, V) log-probabilities (normalized, so usable as logits)."""
        return self._mean([torch.log_softmax(model.decode(prev_tokens, part).float(), dim=-1)
                           for model, part in zip(self.models, encoder_out.parts)])
