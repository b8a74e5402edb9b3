"""The Transformer of "Attention Is All You Need" (Vaswani et al., 2017), encoder-decoder, in one file.

`encode()` runs the encoder once; `decode()` runs the decoder over a whole target prefix (training, re-decoding);
`init_state()` + `decode_step()` decode one token at a time with cached keys/values (beam search).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nmt.config import ModelConfig
from nmt.model.attention import KVCache, MultiHeadAttention
from nmt.model.dropout import Dropout


def sinusoid_table(length: int, d_model: int) -> Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d_model))."""
    position = torch.arange(length, dtype=torch.float32)[:, None]  # (T, 1)
    inv_freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    table = torch.zeros(length, d_model)
    table[:, 0::2] = torch.sin(position * inv_freq)  # (T, d_model/2)
    table[:, 1::2] = torch.cos(position * inv_freq)
    return table


def sinusoid_permutation(d_model: int) -> Tensor:
    """The table of MarianMT (and others) puts all sines before all cosines: its model dimension k holds our dimension
    perm[k], our sines (even) first, then our cosines (odd). Permuting the whole model dimension alike converts a
    model exactly (nmt.export.huggingface, nmt.pretrained.huggingface)."""
    return torch.cat([torch.arange(0, d_model, 2), torch.arange(1, d_model, 2)])


class PositionalEncoding(nn.Module):
    """Sinusoidal (no parameters, any length) or learned (Table 3 row E) position embeddings."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.d_model = config.d_model
        self.learned = nn.Embedding(config.max_positions, config.d_model) if config.learned_positions else None
        self.register_buffer("table", sinusoid_table(256, config.d_model), persistent=False)

    def forward(self, length: int, offset: int = 0) -> Tensor:
        end = offset + length
        if self.learned is not None:
            if end > self.learned.num_embeddings:
                raise ValueError(f"sequence of {end} positions exceeds --max-positions {self.learned.num_embeddings}")
            return self.learned.weight[offset:end]
        if end > self.table.shape[0]:
            # Grow by doubling so that a long input costs one recomputation, not one per step.
            self.table = sinusoid_table(max(end, 2 * self.table.shape[0]), self.d_model).to(self.table.device)
        return self.table[offset:end]  # (T, d_model)


# The feed-forward's nonlinearity by ModelConfig.activation: the paper's ReLU, or what pretrained models use (MarianMT
# and OPUS-MT: swish, that is SiLU; transformers' "gelu" is the exact, erf-based one).
ACTIVATION_FUNCTIONS = {"relu": F.relu, "gelu": F.gelu, "swish": F.silu}


class FeedForward(nn.Module):
    """FFN(x) = max(0, x W1 + b1) W2 + b2 (or another activation in place of max(0, .))."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.linear1 = nn.Linear(config.d_model, config.d_ff)
        self.linear2 = nn.Linear(config.d_ff, config.d_model)
        self.activation = ACTIVATION_FUNCTIONS[config.activation]
        self.activation_dropout = Dropout(config.activation_dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear2(self.activation_dropout(self.activation(self.linear1(x))))


class Sublayer(nn.Module):
    """Residual connection around a sublayer with LayerNorm after (post-norm, the paper) or before (pre-norm)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.norm = nn.LayerNorm(config.d_model)
        self.dropout = Dropout(config.dropout)
        self.pre_norm = config.pre_norm

    def forward(self, x: Tensor, sublayer) -> Tensor:
        if self.pre_norm:
            return x + self.dropout(sublayer(self.norm(x)))
        return self.norm(x + self.dropout(sublayer(x)))  # LayerNorm(x + Dropout(Sublayer(x)))


class EncoderLayer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.self_attn = MultiHeadAttention(config.d_model, config.heads, config.attention_dropout)
        self.ffn = FeedForward(config)
        self.attn_sublayer = Sublayer(config)
        self.ffn_sublayer = Sublayer(config)

    def forward(self, x: Tensor, padding_mask: Tensor) -> Tensor:
        x = self.attn_sublayer(x, lambda h: self.self_attn(h, key_padding_mask=padding_mask))
        return self.ffn_sublayer(x, self.ffn)


def residual(x: Tensor, sublayer_out: Tensor, norm: nn.LayerNorm, pre_norm: bool) -> Tensor:
    """The inference form of Sublayer, without dropout, for a decoding step: post-norm LayerNorm(x + out); pre-norm
    x + out, where out was computed from LayerNorm(x) (see `normed`)."""
    if pre_norm:
        return x + sublayer_out
    return F.layer_norm(x + sublayer_out, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def normed(x: Tensor, norm: nn.LayerNorm, pre_norm: bool) -> Tensor:
    """A sublayer's input in a decoding step: LayerNorm(x) for pre-norm, x itself for post-norm."""
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps) if pre_norm else x


class DecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.self_attn = MultiHeadAttention(config.d_model, config.heads, config.attention_dropout)
        self.cross_attn = MultiHeadAttention(config.d_model, config.heads, config.attention_dropout,
                                             self_attention=False)
        self.ffn = FeedForward(config)
        self.self_attn_sublayer = Sublayer(config)
        self.cross_attn_sublayer = Sublayer(config)
        self.ffn_sublayer = Sublayer(config)

    def forward(self, x: Tensor, memory: Tensor, memory_padding_mask: Tensor) -> Tensor:
        x = self.self_attn_sublayer(x, lambda h: self.self_attn(h, causal=True))
        x = self.cross_attn_sublayer(x, lambda h: self.cross_attn(h, memory, memory_padding_mask))
        return self.ffn_sublayer(x, self.ffn)

    def step(self, x: Tensor, self_cache: KVCache, cross_cache: KVCache, memory_mask: Tensor | None,
             rows_per_source: int = 1, weights_out: list[Tensor] | None = None) -> Tensor:
        """One decoding step, x (R, d_model): the same function as forward() on the newest position, in eval mode,
        written out without the per-call module and closure layers that dominate a step at a few rows."""
        pre = self.self_attn_sublayer.pre_norm
        norm = self.self_attn_sublayer.norm
        x = residual(x, self.self_attn.self_attention_step(normed(x, norm, pre), self_cache), norm, pre)
        norm = self.cross_attn_sublayer.norm
        attended = self.cross_attn.cross_attention_step(normed(x, norm, pre), cross_cache, memory_mask,
                                                        rows_per_source, weights_out)
        x = residual(x, attended, norm, pre)
        norm = self.ffn_sublayer.norm
        hidden = self.ffn.activation(self.ffn.linear1(normed(x, norm, pre)))
        return residual(x, self.ffn.linear2(hidden), norm, pre)


@dataclass
class EncoderOut:
    memory: Tensor  # (B, S, d_model)
    padding_mask: Tensor  # (B, S) bool, True at padding

    def select(self, index: Tensor) -> "EncoderOut":
        return EncoderOut(self.memory.index_select(0, index), self.padding_mask.index_select(0, index))


@dataclass
class DecoderState:
    """Everything incremental decoding carries from one step to the next.

    Rows are hypotheses, `rows_per_source` consecutive ones per source (a sentence's beams): the encoder-decoder
    keys and values, and the padding mask, are kept once per source, not once per row."""

    self_caches: list[KVCache]  # (R, H, T, D) each, R = sources x rows_per_source
    cross_caches: list[KVCache]  # (n, H, S, D) each, n sources
    memory_padding_mask: Tensor  # (n, S), True at padding
    rows_per_source: int = 1  # the rows (beams) that share a source's keys and values
    step: int = 0  # positions decoded so far
    record_attention: bool = False  # keep each step's encoder-decoder attention in `attention`
    attention: Tensor | None = None  # (R, layers, S): the last step's, averaged over heads
    memory_mask: Tensor | None = None  # (n, 1, 1, S), True where a key may be attended; None: no padding at all

    def __post_init__(self) -> None:
        self._update_memory_mask()

    def _update_memory_mask(self) -> None:
        padded = bool(self.memory_padding_mask.any())  # a batch without padding attends unmasked: a faster kernel
        self.memory_mask = ~self.memory_padding_mask[:, None, None, :] if padded else None

    def reorder(self, index: Tensor) -> None:
        """Rows of the self-attention caches for the next step (beam back-pointers, finished sentences dropped)."""
        for cache in self.self_caches:
            cache.reorder(index)

    def select_memory(self, index: Tensor) -> None:
        """Keep the sources in `index` (when sentences leave the batch; beams of one sentence share its source,
        so a back-pointer reorder never needs this)."""
        for cache in self.cross_caches:
            cache.reorder(index)
        self.memory_padding_mask = self.memory_padding_mask.index_select(0, index)
        self._update_memory_mask()


class Transformer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        config.validate()
        if config.vocab_size < 1:
            raise ValueError("ModelConfig.vocab_size must be set from the vocabulary before building the model")
        self.config = config
        # One embedding matrix for source, target and the pre-softmax projection (section 3.4): the vocabulary is a
        # joint SentencePiece model, so the three can be shared. Pretrained models may keep the target's apart
        # (separate vocabularies), project with a matrix of their own and add a bias (MarianMT).
        self.embed_tokens = nn.Embedding(config.vocab_size, config.d_model, padding_idx=config.pad_id)
        self.embed_target_tokens = (nn.Embedding(config.target_vocab_size, config.d_model, padding_idx=config.pad_id)
                                    if config.target_vocab_size else None)
        output_size = config.target_vocab_size or config.vocab_size
        self.output_weight = None if config.tie_output else nn.Parameter(torch.empty(output_size, config.d_model))
        self.output_bias = nn.Parameter(torch.zeros(output_size)) if config.output_bias else None
        self.embed_scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0
        self.embed_positions = PositionalEncoding(config)
        self.embed_dropout = Dropout(config.dropout)
        self.encoder_layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.encoder_layers))
        self.decoder_layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.decoder_layers))
        # Pre-norm leaves the last residual stream unnormalized, so it needs a final LayerNorm; post-norm does not.
        self.encoder_norm = nn.LayerNorm(config.d_model) if config.pre_norm else None
        self.decoder_norm = nn.LayerNorm(config.d_model) if config.pre_norm else None
        # Set by nmt.model.packed.pack_for_cpu_inference: the tied projection with its weight packed for oneDNN.
        self.packed_output_projection: nn.Module | None = None
        # Also set by pack_for_cpu_inference: decode_step over the packed weights as one function.
        self.packed_decode_step = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """As the paper's reference implementations (tensor2tensor, fairseq): Xavier-uniform weights, zero biases,
        embeddings ~ N(0, d_model^-0.5) with a zero padding row."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        for embedding in (self.embed_tokens, self.embed_target_tokens):
            if embedding is not None:
                nn.init.normal_(embedding.weight, mean=0.0, std=self.config.d_model ** -0.5)
                with torch.no_grad():
                    embedding.weight[self.config.pad_id].zero_()
        if self.output_weight is not None:
            nn.init.normal_(self.output_weight, mean=0.0, std=self.config.d_model ** -0.5)
        if self.output_bias is not None:
            nn.init.zeros_(self.output_bias)
        if self.embed_positions.learned is not None:
            nn.init.normal_(self.embed_positions.learned.weight, mean=0.0, std=self.config.d_model ** -0.5)

    @property
    def target_embedding(self) -> nn.Embedding:
        """The decoder's input embedding: the shared one, or the target's own."""
        return self.embed_target_tokens if self.embed_target_tokens is not None else self.embed_tokens

    @property
    def output_matrix(self) -> Tensor:
        """(target vocabulary, d_model): the target embedding (tied, section 3.4) or the projection's own weight."""
        return self.output_weight if self.output_weight is not None else self.target_embedding.weight

    def embed(self, tokens: Tensor, offset: int = 0, table: nn.Embedding | None = None) -> Tensor:
        x = (self.embed_tokens if table is None else table)(tokens) * self.embed_scale  # (B, T, d_model)
        x = x + self.embed_positions(tokens.shape[1], offset)
        return self.embed_dropout(x)

    def encode(self, src_tokens: Tensor) -> EncoderOut:
        """src_tokens (B, S), padded with pad_id on the right, each row ending in eos."""
        padding_mask = src_tokens.eq(self.config.pad_id)  # (B, S)
        x = self.embed(src_tokens)
        for layer in self.encoder_layers:
            x = layer(x, padding_mask)
        if self.encoder_norm is not None:
            x = self.encoder_norm(x)
        return EncoderOut(x, padding_mask)

    def output_projection(self, x: Tensor) -> Tensor:
        if self.packed_output_projection is not None:
            return self.packed_output_projection(x)
        return F.linear(x, self.output_matrix, self.output_bias)  # (B, T, V)

    def decode_hidden(self, prev_tokens: Tensor, encoder_out: EncoderOut) -> Tensor:
        """The decoder stack over a whole prefix: prev_tokens (B, T) -> (B, T, d_model)."""
        x = self.embed(prev_tokens, table=self.target_embedding)
        for layer in self.decoder_layers:
            x = layer(x, encoder_out.memory, encoder_out.padding_mask)
        if self.decoder_norm is not None:
            x = self.decoder_norm(x)
        return x

    def decode(self, prev_tokens: Tensor, encoder_out: EncoderOut) -> Tensor:
        """Teacher-forced decoding of a whole prefix: prev_tokens (B, T) -> logits (B, T, V)."""
        return self.output_projection(self.decode_hidden(prev_tokens, encoder_out))

    def forward(self, src_tokens: Tensor, prev_tokens: Tensor, output_mask: Tensor | None = None) -> Tensor:
        """Logits (B, T, V); with `output_mask` (B, T) only those positions' (N, V): in training the projection onto
        the vocabulary, the largest matrix product of a small model, is then not spent on padding."""
        hidden = self.decode_hidden(prev_tokens, self.encode(src_tokens))  # (B, T, d_model)
        if output_mask is not None:
            hidden = hidden[output_mask]  # (N, d_model)
        return self.output_projection(hidden)

    def init_state(self, encoder_out: EncoderOut, rows_per_source: int = 1) -> DecoderState:
        """A decoding state whose encoder-decoder keys/values are computed now, once, for every layer. Each source
        row of `encoder_out` is decoded by `rows_per_source` consecutive hypothesis rows (its beams)."""
        cross_caches = [layer.cross_attn.memory_cache(encoder_out.memory) for layer in self.decoder_layers]
        # Self-attention caches grow as they go: preallocated ones, written in place and reordered into a second
        # buffer, made a beam search ~5% slower on a CPU (strided keys slow the fused attention kernel more than
        # dropping torch.cat saves; benchmarks/README.md, decode_breakdown).
        return DecoderState([KVCache() for _ in self.decoder_layers], cross_caches, encoder_out.padding_mask,
                            rows_per_source)

    def decode_step(self, tokens: Tensor, state: DecoderState) -> Tensor:
        """One incremental step: tokens (R,) are the last outputs; returns log-probabilities (R, V) in fp32. An
        inference step: no dropout, whatever the module's mode."""
        if self.packed_decode_step is not None and not state.record_attention:
            return self.packed_decode_step(tokens, state)
        x = self.target_embedding(tokens) * self.embed_scale + self.embed_positions(1, state.step)  # (R, d_model)
        weights: list[Tensor] | None = [] if state.record_attention else None
        for layer, self_cache, cross_cache in zip(self.decoder_layers, state.self_caches, state.cross_caches):
            x = layer.step(x, self_cache, cross_cache, state.memory_mask, state.rows_per_source, weights)
        if self.decoder_norm is not None:
            x = self.decoder_norm(x)
        if weights is not None:
            state.attention = torch.stack([w[:, 0] for w in weights], dim=1)  # (R, layers, S)
        state.step += 1
        return F.log_softmax(self.output_projection(x).float(), dim=-1)


def build_model(config: ModelConfig) -> Transformer:
    return Transformer(config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def closed_form_parameter_count(config: ModelConfig) -> int:
    """The parameter count of the architecture, from its shape alone."""
    d, f = config.d_model, config.d_ff
    attention = 4 * d * d + 4 * d  # W^Q, W^K, W^V, W^O and their biases
    ffn = d * f + f + f * d + d
    norm = 2 * d
    encoder_layer = attention + ffn + 2 * norm
    decoder_layer = 2 * attention + ffn + 3 * norm
    target_vocab = config.target_vocab_size or config.vocab_size
    total = config.vocab_size * d + config.encoder_layers * encoder_layer + config.decoder_layers * decoder_layer
    total += config.target_vocab_size * d  # the target's own embedding (separate vocabularies)
    total += (0 if config.tie_output else target_vocab * d) + (target_vocab if config.output_bias else 0)
    if config.learned_positions:
        total += config.max_positions * d
    if config.pre_norm:
        total += 2 * norm
    return total
