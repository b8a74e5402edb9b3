"""CTranslate2 export: `nmt export ctranslate2 CHECKPOINT OUT_DIR` (decoding it: nmt.engines.ctranslate2).

The model is written through CTranslate2's own specification API (`ctranslate2.specs.TransformerSpec`), the way its
bundled converters do, so CTranslate2 checks every weight's name and shape. Our layout maps one to one: the fused
(3d, d) self-attention projection is CTranslate2's `linear[0]`, the cross-attention's query and fused key/value
projections its `linear[0]` and `linear[1]`; post-norm or pre-norm as trained; the sinusoid table is written out
rather than left to CTranslate2 (which orders sine and cosine differently); the tied embedding is written three times
(source, target, output projection), as CTranslate2 stores them separately. The SentencePiece model goes beside it
(`spm.model`), with `nmt.json` naming the source checkpoint and languages.

The folder's nmt.json (`read_marker`) carries the languages, the vocabulary files, the model config and the search
settings `nmt tune` stored, for the engine that loads it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nmt.atomic import atomic_directory, write_bytes
from nmt.checkpoint import load_model
from nmt.errors import NmtError
from nmt.export.marker import check_export_folder, write_export_marker
from nmt.export.shortlist import VMAP_FILE, ShortlistConfig, build_vocabulary_map
from nmt.model.transformer import Transformer

MAX_POSITIONS = 1024  # rows of the position table written for sinusoidal models


def import_ctranslate2():
    try:
        import ctranslate2
    except ImportError:
        raise NmtError("CTranslate2 is not installed: pip install 'nmt[ctranslate2]'") from None
    return ctranslate2


def _numpy(tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy()


def _linear(spec, linear) -> None:
    spec.weight = _numpy(linear.weight)
    if linear.bias is not None:
        spec.bias = _numpy(linear.bias)


def _norm(spec, norm) -> None:
    spec.gamma = _numpy(norm.weight)
    spec.beta = _numpy(norm.bias)


def _inputs(spec, model: Transformer, embedding) -> None:
    embeddings = spec.embeddings[0] if isinstance(spec.embeddings, list) else spec.embeddings
    embeddings.weight = _numpy(embedding.weight)
    spec.scale_embeddings = model.embed_scale  # sqrt(d_model) (section 3.4), or 1 where the model does not scale
    if model.embed_positions.learned is not None:
        spec.position_encodings.encodings = _numpy(model.embed_positions.learned.weight)
    else:
        spec.position_encodings.encodings = _numpy(model.embed_positions(MAX_POSITIONS))


def _self_attention_and_ffn(layer_spec, layer, attention_norm) -> None:
    """What encoder and decoder layers share: fused self-attention projections, the FFN and their norms."""
    _linear(layer_spec.self_attention.linear[0], layer.self_attn.qkv_proj)
    _linear(layer_spec.self_attention.linear[1], layer.self_attn.out_proj)
    _norm(layer_spec.self_attention.layer_norm, attention_norm)
    _linear(layer_spec.ffn.linear_0, layer.ffn.linear1)
    _linear(layer_spec.ffn.linear_1, layer.ffn.linear2)
    _norm(layer_spec.ffn.layer_norm, layer.ffn_sublayer.norm)


def build_spec(model: Transformer, source_pieces: list[str], target_pieces: list[str]):
    """The CTranslate2 TransformerSpec holding `model`'s weights and vocabulary."""
    ctranslate2 = import_ctranslate2()
    specs = ctranslate2.specs
    config = model.config
    activation = {"relu": specs.Activation.RELU, "gelu": specs.Activation.GELU,
                  "swish": specs.Activation.SWISH}[config.activation]
    spec = specs.TransformerSpec.from_config((config.encoder_layers, config.decoder_layers), config.heads,
                                             pre_norm=config.pre_norm, activation=activation)
    _inputs(spec.encoder, model, model.embed_tokens)
    for layer_spec, layer in zip(spec.encoder.layer, model.encoder_layers):
        _self_attention_and_ffn(layer_spec, layer, layer.attn_sublayer.norm)
    _inputs(spec.decoder, model, model.target_embedding)
    spec.decoder.projection.weight = _numpy(model.output_matrix)  # the target embedding where tied
    if model.output_bias is not None:
        spec.decoder.projection.bias = _numpy(model.output_bias)
    for layer_spec, layer in zip(spec.decoder.layer, model.decoder_layers):
        _self_attention_and_ffn(layer_spec, layer, layer.self_attn_sublayer.norm)
        _linear(layer_spec.attention.linear[0], layer.cross_attn.q_proj)
        _linear(layer_spec.attention.linear[1], layer.cross_attn.kv_proj)
        _linear(layer_spec.attention.linear[2], layer.cross_attn.out_proj)
        _norm(layer_spec.attention.layer_norm, layer.cross_attn_sublayer.norm)
    if config.pre_norm:
        _norm(spec.encoder.layer_norm, model.encoder_norm)
        _norm(spec.decoder.layer_norm, model.decoder_norm)
    spec.register_source_vocabulary(source_pieces)
    spec.register_target_vocabulary(target_pieces)
    specials = _special_tokens(target_pieces, config)
    spec.config.unk_token, spec.config.bos_token, spec.config.eos_token = specials
    spec.config.decoder_start_token = target_pieces[config.bos_id]  # bos (ours), or what the model starts from
    spec.config.add_source_eos = True  # our sources end with eos
    spec.config.layer_norm_epsilon = model.decoder_layers[0].ffn_sublayer.norm.eps
    return spec


def _special_tokens(pieces: list[str], config) -> tuple[str, str, str]:
    """unk, bos and eos as CTranslate2 names them (its bos is only added to sources on request; never here)."""
    unk = "<unk>" if "<unk>" in pieces else pieces[1]
    return unk, pieces[config.bos_id], pieces[config.eos_id]


def export_ctranslate2(checkpoint: Path, out_dir: Path, quantization: str | None = None, force: bool = False,
                       shortlist: Path | None = None, shortlist_config: ShortlistConfig | None = None) -> Path:
    """Write `checkpoint` as a CTranslate2 model folder (weights stored as `quantization`, default float32), with
    its SentencePiece model(s) and nmt.json; `force` replaces an earlier export at `out_dir`. With `shortlist` (a
    prepared DATA_DIR in the checkpoint's vocabulary) the folder gets a vocabulary map built from its training
    split, which the engine then decodes with (nmt.export.shortlist). Returns `out_dir`."""
    ctranslate2 = import_ctranslate2()
    check_export_folder(checkpoint, out_dir, force)
    model, vocab, payload = load_model(checkpoint, "cpu")
    vocabulary_map, shortlist_facts = (build_vocabulary_map(shortlist, vocab, shortlist_config or ShortlistConfig())
                                       if shortlist is not None else (None, None))
    spec = build_spec(model, [vocab.source.piece(i) for i in range(len(vocab))],
                      [vocab.target.piece(i) for i in range(vocab.target_size)])

    class _Converter(ctranslate2.converters.Converter):
        def _load(self):
            return spec

    # Built in a hidden sibling folder that replaces OUT_DIR once complete: an interrupted export leaves the old
    # export (or nothing) under OUT_DIR, never half a model.
    with atomic_directory(out_dir) as partial:
        try:
            _Converter().convert(str(partial), quantization=quantization, force=True)
        except (ValueError, RuntimeError) as error:
            raise NmtError(f"CTranslate2 refused the model: {error}") from None
        files = vocab.file_entries()
        for name, data in files.values():
            write_bytes(partial / name, data)
        if vocabulary_map is not None:
            write_bytes(partial / VMAP_FILE, vocabulary_map.encode("utf-8"))
        write_export_marker(partial, "ctranslate2", checkpoint, {
            "vocab_files": {key: name for key, (name, _) in files.items()},
            "src": payload.get("src"), "tgt": payload.get("tgt"), "model_config": payload["model_config"],
            **({"pairs": payload["pairs"]} if payload.get("pairs") else {}),
            "quantization": quantization or "float32", "search": payload.get("search"),
            **({"shortlist": shortlist_facts} if shortlist_facts else {})})
    return out_dir


def read_marker(model_dir: Path) -> dict:
    """The nmt.json an export wrote beside the model ({} where it is missing or unreadable)."""
    try:
        marker = json.loads((model_dir / "nmt.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return marker if isinstance(marker, dict) else {}


def position_rows(model_dir: Path) -> int:
    """Rows of the exported position table: the model's own for learned positions, else MAX_POSITIONS."""
    config = read_marker(model_dir).get("model_config")
    config = config if isinstance(config, dict) else {}
    if config.get("learned_positions") and isinstance(config.get("max_positions"), int):
        return max(2, config["max_positions"])
    return MAX_POSITIONS
