"""Several models decoding as one, combined at every step in one of two ways:

- `logprob` (the default): the mean of the models' log-probabilities, 1/M sum_m log p_m(y | ...), a log-linear
  combination as Marian's ensembles (with equal weights). It rewards what every model finds likely.
- `prob`: the log of the mean of their probabilities, log (1/M sum_m p_m(y | ...)), computed as logsumexp minus
  log M, as fairseq's ensembles. It is a proper distribution and more forgiving of one model's doubt.

The models must share the vocabulary and its special ids; their architectures may differ. `Ensemble` satisfies
`nmt.search.protocol.DecodingModel`, so beam search and sampling take it as they take one model.
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


COMBINATIONS = ("logprob", "prob")


class Ensemble:
    def __init__(self, models: list[Transformer], combine: str = "logprob"):
        if not models:
            raise NmtError("an ensemble needs at least one model")
        if combine not in COMBINATIONS:
            raise NmtError(f"--ensemble-combine must be logprob or prob, got {combine!r}")
        self.combine = combine
        first = models[0].config
        for model in models[1:]:
            special = ("vocab_size", "target_vocab_size", "pad_id", "bos_id", "eos_id")
            if any(getattr(model.config, name) != getattr(first, name) for name in special):
                raise NmtError("the models of an ensemble must share one vocabulary")
        self.models = models
        self.config = first

    def encode(self, src_tokens: Tensor) -> EnsembleEncoderOut:
        return EnsembleEncoderOut([model.encode(src_tokens) for model in self.models])

    def init_state(self, encoder_out: EnsembleEncoderOut, rows_per_source: int = 1) -> EnsembleState:
        return EnsembleState([model.init_state(part, rows_per_source)
                              for model, part in zip(self.models, encoder_out.parts)])

    def _mean(self, logprobs: list[Tensor]) -> Tensor:
        if self.combine == "logprob":
            return torch.stack(logprobs).mean(dim=0)
        return torch.logsumexp(torch.stack(logprobs), dim=0) - math.log(len(logprobs))

    def decode_step(self, tokens: Tensor, state: EnsembleState) -> Tensor:
        for part in state.parts:
            part.record_attention = state.record_attention
        logprobs = self._mean([model.decode_step(tokens, part) for model, part in zip(self.models, state.parts)])
        state.attention = state.parts[0].attention
        return logprobs

    def decode(self, prev_tokens: Tensor, encoder_out: EnsembleEncoderOut) -> Tensor:
        """Uncached decoding of a whole prefix: (B, T, V) combined log-probabilities (usable as logits)."""
        return self._mean([torch.log_softmax(model.decode(prev_tokens, part).float(), dim=-1)
                           for model, part in zip(self.models, encoder_out.parts)])
