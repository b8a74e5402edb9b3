"""CTranslate2 export and decoding: `nmt export ctranslate2 CHECKPOINT OUT_DIR`, `nmt translate --engine ctranslate2`.

The model is written through CTranslate2's own specification API (`ctranslate2.specs.TransformerSpec`), the way its
bundled converters do, so CTranslate2 checks every weight's name and shape. Our layout maps one to one: the fused
(3d, d) self-attention projection is CTranslate2's `linear[0]`, the cross-attention's query and fused key/value
projections its `linear[0]` and `linear[1]`; post-norm or pre-norm as trained; the sinusoid table is written out
rather than left to CTranslate2 (which orders sine and cosine differently); the tied embedding is written three times
(source, target, output projection), as CTranslate2 stores them separately. The SentencePiece model goes beside it
(`spm.model`), with `nmt.json` naming the source checkpoint and languages.

CTranslate2 normalizes beam scores by |Y|^alpha only: `nmt translate --engine ctranslate2` uses `--lenpen-style
length` unless told otherwise (and says so when told another style); this class refuses any other style.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from nmt.atomic import atomic_directory, write_bytes
from nmt.checkpoint import load_model
from nmt.config import SearchConfig
from nmt.data.text import normalize
from nmt.errors import NmtError
from nmt.export.marker import check_export_folder, write_export_marker
from nmt.model.transformer import Transformer
from nmt.translate import TargetLanguage, Translation, translate_windows

MAX_POSITIONS = 1024  # rows of the position table written for sinusoidal models


def _ctranslate2():
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
    ctranslate2 = _ctranslate2()
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


def export_ctranslate2(checkpoint: Path, out_dir: Path, quantization: str | None = None, force: bool = False) -> Path:
    ctranslate2 = _ctranslate2()
    check_export_folder(checkpoint, out_dir, force)
    model, vocab, payload = load_model(checkpoint, "cpu")
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
        write_export_marker(partial, "ctranslate2", checkpoint, {
            "vocab_files": {key: name for key, (name, _) in files.items()},
            "src": payload.get("src"), "tgt": payload.get("tgt"), "model_config": payload["model_config"],
            "quantization": quantization or "float32", "search": payload.get("search")})
    return out_dir


def _marker(model_dir: Path) -> dict:
    try:
        marker = json.loads((model_dir / "nmt.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return marker if isinstance(marker, dict) else {}


def _position_rows(model_dir: Path) -> int:
    """Rows of the exported position table: the model's own for learned positions, else MAX_POSITIONS."""
    config = _marker(model_dir).get("model_config")
    config = config if isinstance(config, dict) else {}
    if config.get("learned_positions") and isinstance(config.get("max_positions"), int):
        return max(2, config["max_positions"])
    return MAX_POSITIONS


class CTranslate2Translator:
    """The `Translator` interface over a CTranslate2 model folder written by `export_ctranslate2`."""

    def __init__(self, model_dir: Path, search: SearchConfig | None = None, device: str | None = None,
                 max_tokens: int = 6000, quantize: str | None = None, threads: int | None = None,
                 precision: str = "fp32", target_language: str | None = None):
        ctranslate2 = _ctranslate2()
        from nmt.vocab import Vocab

        self.search = search or SearchConfig()
        self.search.validate()
        if not (model_dir / "model.bin").is_file() or not (model_dir / "spm.model").is_file():
            hint = ("; an nmt checkpoint decodes with --engine torch (the default), or export it first: "
                    f"nmt export ctranslate2 {model_dir} DIR") if Path(model_dir).is_file() else ""
            raise NmtError(f"{model_dir}: not a model folder written by `nmt export ctranslate2`{hint}")
        if self.search.lenpen_style != "length" and not self.search.sampling:
            raise NmtError("CTranslate2 normalizes scores by |Y|^alpha only: add --lenpen-style length")
        marker = _marker(model_dir)
        self.src_lang, self.tgt_lang = marker.get("src"), marker.get("tgt")  # the language pair, as exported
        files = marker.get("vocab_files")
        self.vocab = Vocab.from_folder(model_dir, files if isinstance(files, dict) else {"spm_model": "spm.model"})
        self.language = TargetLanguage(self.vocab.language_tokens, target_language)
        compute_type = {"int8": "int8", None: "default", "none": "default"}.get(quantize)
        if compute_type is None:
            raise NmtError(f"--quantize must be int8 or none, got {quantize!r}")
        if precision != "fp32":
            if quantize == "int8":
                raise NmtError("--precision bf16/fp16 and --quantize int8 are two ways to decode in less precision: "
                               "choose one")
            compute_type = {"bf16": "bfloat16", "fp16": "float16"}.get(precision)
            if compute_type is None:
                raise NmtError(f"--precision must be fp32, bf16 or fp16, got {precision!r}")
        device = device or ("cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu")
        try:
            self.translator = ctranslate2.Translator(str(model_dir), device=device, compute_type=compute_type,
                                                     intra_threads=threads or 0, inter_threads=1)
        except ValueError as error:  # e.g. a compute type this device does not support
            raise NmtError(f"CTranslate2 cannot load {model_dir} on {device}: {error}") from None
        self.max_tokens = max_tokens
        if self.search.sampling:
            ctranslate2.set_random_seed(self.search.seed)
        # The position table written at export bounds both sides: longer sources are cut (and counted), as the
        # torch engine does, and outputs end within it.
        self.positions = _position_rows(model_dir)
        self.max_source_tokens = min(1024, self.positions)
        self.truncated = 0

    def translate(self, lines: list[str], prefixes: list[str] | None = None, search: SearchConfig | None = None,
                  record_attention: bool | None = None,
                  constraints: list[list[str]] | None = None) -> list[list[Translation]]:
        if prefixes is not None:
            raise NmtError("--prefix-file is not supported with --engine ctranslate2")
        if constraints is not None and any(constraints):
            raise NmtError("constraints (--constraints, --glossary) are not supported with --engine ctranslate2: "
                           "CTranslate2 has no constrained search; use --engine torch")
        if record_attention:
            raise NmtError("the encoder-decoder attention is not available with --engine ctranslate2")
        results: list[list[Translation]] = [[Translation("", 0.0, [])] for _ in lines]
        texts = [normalize(line) for line in lines]
        todo = [i for i, text in enumerate(texts) if text]
        if not todo:
            return results
        piece = self.vocab.source.piece
        sources = [[piece(token) for token in ids]
                   for ids in self.vocab.encode_source(self.language.mark([texts[i] for i in todo]))]
        for position, pieces in enumerate(sources):
            if len(pieces) >= self.max_source_tokens:  # room for the eos CTranslate2 appends
                sources[position] = pieces[: self.max_source_tokens - 1]
                self.truncated += 1
        search = search or self.search
        longest = max(len(s) for s in sources) + 1
        options = dict(max_batch_size=self.max_tokens, batch_type="tokens", num_hypotheses=search.nbest,
                       return_scores=True, length_penalty=search.lenpen, max_input_length=0,
                       max_decoding_length=min(int(longest * search.max_len_a + search.max_len_b),
                                               self.positions - 1),
                       min_decoding_length=max(0, search.min_len - 1),
                       no_repeat_ngram_size=search.no_repeat_ngram_size)
        if search.sampling:
            options.update(beam_size=1, sampling_topk=search.topk, sampling_topp=search.topp,
                           sampling_temperature=search.temperature)
        else:
            options.update(beam_size=search.beam)
        outputs = self.translator.translate_batch(sources, **options)
        for index, source, output in zip(todo, sources, outputs):
            results[index] = [Translation(self.vocab.target.processor.decode_pieces(tokens), float(score),
                                          list(tokens), source)
                              for tokens, score in zip(output.hypotheses, output.scores)]
        return results

    def translate_stream(self, lines: Iterable[str], window: int = 1000, prefixes: Iterable[str] | None = None,
                         constraints=None) -> Iterator[list[Translation]]:
        return translate_windows(self.translate, lines, window, prefixes, constraints)
