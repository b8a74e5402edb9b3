"""Hugging Face export: `nmt export huggingface CHECKPOINT DIR`, a MarianMT folder that `transformers` loads offline
(`AutoModelForSeq2SeqLM.from_pretrained(DIR)`, `AutoTokenizer.from_pretrained(DIR)`, `pipeline("translation")`).

MarianMT is the paper's post-norm Transformer with sinusoidal positions, tied embeddings and a final-logits bias, so
the conversion is exact. What MarianMT lays out differently is converted, not approximated:

- Its sinusoid table puts all sines before all cosines (and is rebuilt at load); ours interleaves them. Permuting the
  model dimension by the same permutation everywhere (embedding columns, every projection's input columns, the rows
  of the projections that write the residual stream, every LayerNorm) is an exact equivalence: attention scores,
  feed-forward activations and logits do not depend on the order of the model dimension.
- Our fused query/key/value projections are split into MarianMT's q_proj, k_proj and v_proj.
- Our decoder starts from bos (MarianMT's default is pad): decoder_start_token_id says so. The options a model
  imported from MarianMT keeps (activation, embedding scale, output bias, untied output, separate vocabularies and
  special ids) are written back as they came, so an import exports to the weights it was read from.
- Generation is set to our search as far as transformers allows: beam 4 (or the tuned beam), the length penalty as
  |Y|^alpha (the tuned alpha of that style, else 0.6), early stopping once the beam is full, pad and bos never
  generated, a fixed maximum length (ours is a * source + b per sentence).

Learned positions and pre-norm have no MarianMT counterpart: refused.
"""

from __future__ import annotations

import json
import math
import tempfile
import warnings
from pathlib import Path

import torch

from nmt import __version__
from nmt.atomic import atomic_directory, readable_by_all, write_bytes, write_text
from nmt.checkpoint import load_model, search_defaults
from nmt.errors import NmtError
from nmt.export.marker import check_export_folder, write_export_marker
from nmt.model.transformer import Transformer, count_parameters, sinusoid_permutation

MAX_LENGTH = 512  # generation's maximum length (MarianMT's usual); ours is per sentence


def _transformers():
    try:
        import transformers
    except ImportError:
        raise NmtError("Hugging Face transformers is not installed: pip install 'nmt[hf]'") from None
    transformers.utils.logging.disable_progress_bar()  # its bars for writing one shard are noise here
    transformers.utils.logging.set_verbosity_error()
    return transformers


def check_exportable(model: Transformer, checkpoint: Path) -> None:
    config = model.config
    if config.learned_positions:
        raise NmtError(f"{checkpoint}: learned positions (--learned-positions) have no MarianMT counterpart: "
                       "MarianMT's positions are sinusoids")
    if config.pre_norm:
        raise NmtError(f"{checkpoint}: pre-norm layers (--pre-norm) have no MarianMT counterpart: MarianMT is "
                       "post-norm, as the paper")
    if config.d_model % 2:
        raise NmtError(f"{checkpoint}: an odd d_model ({config.d_model}) orders its sinusoids unlike MarianMT")


def marian_state_dict(model: Transformer) -> dict[str, torch.Tensor]:
    """Our weights under MarianMTModel's names, the model dimension permuted (see the module docstring)."""
    d = model.config.d_model
    perm = sinusoid_permutation(d)
    state: dict[str, torch.Tensor] = {}

    def reads(weight):  # a projection reading the residual stream: its input columns
        return weight.detach()[:, perm].contiguous()

    def writes(weight, bias):  # a projection writing the residual stream: its output rows
        return weight.detach()[perm].contiguous(), bias.detach()[perm].contiguous()

    def norm(prefix, layer_norm):
        state[f"{prefix}.weight"] = layer_norm.weight.detach()[perm].contiguous()
        state[f"{prefix}.bias"] = layer_norm.bias.detach()[perm].contiguous()

    def linear_reads(prefix, weight, bias):
        state[f"{prefix}.weight"], state[f"{prefix}.bias"] = reads(weight), bias.detach().contiguous()

    def linear_writes(prefix, linear):  # its input is head space or d_ff: not permuted
        state[f"{prefix}.weight"], state[f"{prefix}.bias"] = writes(linear.weight, linear.bias)

    def attention(prefix, q, k, v, out_proj):
        for name, (weight, bias) in (("q_proj", q), ("k_proj", k), ("v_proj", v)):
            linear_reads(f"{prefix}.{name}", weight, bias)
        linear_writes(f"{prefix}.out_proj", out_proj)

    def self_attention(prefix, module):  # our fused (3d, d) projection: queries, keys, values
        w, b = module.qkv_proj.weight, module.qkv_proj.bias
        attention(prefix, (w[:d], b[:d]), (w[d:2 * d], b[d:2 * d]), (w[2 * d:], b[2 * d:]), module.out_proj)

    def ffn(prefix, layer):
        linear_reads(f"{prefix}.fc1", layer.ffn.linear1.weight, layer.ffn.linear1.bias)
        linear_writes(f"{prefix}.fc2", layer.ffn.linear2)

    if model.embed_target_tokens is None:
        state["model.shared.weight"] = reads(model.embed_tokens.weight)
    else:  # separate vocabularies
        state["model.encoder.embed_tokens.weight"] = reads(model.embed_tokens.weight)
        state["model.decoder.embed_tokens.weight"] = reads(model.embed_target_tokens.weight)
    if model.output_weight is not None:
        state["lm_head.weight"] = reads(model.output_weight)
    if model.output_bias is not None:
        state["final_logits_bias"] = model.output_bias.detach()[None].contiguous()
    for i, layer in enumerate(model.encoder_layers):
        prefix = f"model.encoder.layers.{i}"
        self_attention(f"{prefix}.self_attn", layer.self_attn)
        norm(f"{prefix}.self_attn_layer_norm", layer.attn_sublayer.norm)
        ffn(prefix, layer)
        norm(f"{prefix}.final_layer_norm", layer.ffn_sublayer.norm)
    for i, layer in enumerate(model.decoder_layers):
        prefix = f"model.decoder.layers.{i}"
        self_attention(f"{prefix}.self_attn", layer.self_attn)
        norm(f"{prefix}.self_attn_layer_norm", layer.self_attn_sublayer.norm)
        cross = layer.cross_attn
        kv_w, kv_b = cross.kv_proj.weight, cross.kv_proj.bias
        attention(f"{prefix}.encoder_attn", (cross.q_proj.weight, cross.q_proj.bias), (kv_w[:d], kv_b[:d]),
                  (kv_w[d:], kv_b[d:]), cross.out_proj)
        norm(f"{prefix}.encoder_attn_layer_norm", layer.cross_attn_sublayer.norm)
        ffn(prefix, layer)
        norm(f"{prefix}.final_layer_norm", layer.ffn_sublayer.norm)
    return state


def marian_config(model: Transformer, generation: dict):
    transformers = _transformers()
    config = model.config
    return transformers.MarianConfig(
        vocab_size=config.vocab_size, decoder_vocab_size=config.target_vocab_size or config.vocab_size,
        d_model=config.d_model, encoder_layers=config.encoder_layers, decoder_layers=config.decoder_layers,
        encoder_attention_heads=config.heads, decoder_attention_heads=config.heads,
        encoder_ffn_dim=config.d_ff, decoder_ffn_dim=config.d_ff, activation_function=config.activation,
        dropout=config.dropout, attention_dropout=config.attention_dropout,
        activation_dropout=config.activation_dropout, max_position_embeddings=MAX_LENGTH,
        scale_embedding=config.scale_embedding, pad_token_id=config.pad_id, eos_token_id=config.eos_id,
        bos_token_id=config.bos_id, decoder_start_token_id=config.bos_id, forced_eos_token_id=config.eos_id,
        share_encoder_decoder_embeddings=not config.target_vocab_size, tie_word_embeddings=config.tie_output,
        num_beams=generation["num_beams"], max_length=MAX_LENGTH)


def generation_settings(model: Transformer, payload: dict) -> dict:
    tuned = search_defaults(payload, style="length")
    config = model.config
    return {"num_beams": tuned.get("beam", 4), "length_penalty": float(tuned.get("lenpen", 0.6)),
            "early_stopping": True, "max_length": MAX_LENGTH, "decoder_start_token_id": config.bos_id,
            "bos_token_id": config.bos_id, "eos_token_id": config.eos_id, "pad_token_id": config.pad_id,
            "forced_eos_token_id": config.eos_id, "suppress_tokens": [config.pad_id, config.bos_id]}


def export_huggingface(checkpoint: Path, out_dir: Path, force: bool = False) -> Path:
    """Write `checkpoint` as a MarianMT folder for Hugging Face transformers (config.json, model.safetensors,
    MarianTokenizer files, generation_config.json, a model card); `force` replaces an earlier export at `out_dir`.
    Returns `out_dir`."""
    transformers = _transformers()
    check_export_folder(checkpoint, out_dir, force)
    model, vocab, payload = load_model(checkpoint, "cpu")
    check_exportable(model, checkpoint)
    generation = generation_settings(model, payload)
    hf_model = transformers.MarianMTModel(marian_config(model, generation)).eval()
    converted = marian_state_dict(model)
    missing, unexpected = hf_model.load_state_dict(converted, strict=False)
    # Left to MarianMT itself: the position tables (rebuilt at load), a zero output bias and the tied copies.
    leftover = [name for name in missing if not (name.endswith("embed_positions.weight") or name in (
        "final_logits_bias", "lm_head.weight", "model.encoder.embed_tokens.weight",
        "model.decoder.embed_tokens.weight", "model.shared.weight"))]
    if leftover or unexpected:
        raise NmtError(f"transformers {transformers.__version__}'s MarianMT does not lay out its weights as this "
                       f"exporter expects (missing {leftover[:3]}, unexpected {unexpected[:3]})")
    hf_model.generation_config = transformers.GenerationConfig(**generation)
    src, tgt = payload.get("src"), payload.get("tgt")
    with atomic_directory(out_dir) as partial:
        from safetensors import SafetensorError
        try:
            with warnings.catch_warnings():
                # config.json keeps the generation settings for older transformers; newer ones warn that
                # generation_config.json holds them now, which it does (written just before)
                warnings.filterwarnings("ignore", message="Moving the following attributes", category=UserWarning)
                hf_model.save_pretrained(partial, safe_serialization=True)
        except SafetensorError as error:  # a full disk reaches us as this, not as an OSError
            raise NmtError(f"{out_dir}: cannot write model.safetensors ({str(error).strip().splitlines()[0]})") \
                from None
        readable_by_all(partial / "model.safetensors")  # safetensors writes it 0600, unlike every other file
        with tempfile.TemporaryDirectory() as scratch:
            write_tokenizer_files(vocab, Path(scratch))
            tokenizer = transformers.MarianTokenizer(
                str(Path(scratch) / "source.spm"), str(Path(scratch) / "target.spm"), str(Path(scratch) / "vocab.json"),
                target_vocab_file=str(Path(scratch) / "target_vocab.json") if not vocab.shared else None,
                separate_vocabs=not vocab.shared, source_lang=src, target_lang=tgt, model_max_length=MAX_LENGTH)
            tokenizer.save_pretrained(partial)
        write_text(partial / "README.md", model_card(model, payload, checkpoint, generation, out_dir))
        write_export_marker(partial, "huggingface", checkpoint, {
            "src": src, "tgt": tgt, "model_config": payload["model_config"], "search": payload.get("search"),
            "transformers": transformers.__version__})
    return out_dir


def write_tokenizer_files(vocab, folder: Path) -> None:
    """MarianTokenizer's files: source.spm and target.spm (our joint model serves both sides where we have one),
    vocab.json ({piece: id}), and target_vocab.json for separate vocabularies."""
    write_bytes(folder / "source.spm", vocab.model_proto)
    write_bytes(folder / "target.spm", vocab.target_proto or vocab.model_proto)

    def table(side, size: int) -> str:
        return json.dumps({side.piece(i): i for i in range(size)}, ensure_ascii=False, indent=1)
    write_text(folder / "vocab.json", table(vocab.source, len(vocab)))
    if not vocab.shared:
        write_text(folder / "target_vocab.json", table(vocab.target, vocab.target_size))


def model_card(model: Transformer, payload: dict, checkpoint: Path, generation: dict, out_dir: Path) -> str:
    """A README for the Hub: what the model is, how it scored (with sacreBLEU's signature where the run saved one),
    how to use it."""
    config = model.config
    src, tgt = payload.get("src") or "source", payload.get("tgt") or "target"
    score_path = Path(checkpoint).parent / "score.json"
    score = ""
    try:
        scores = json.loads(score_path.read_text(encoding="utf-8"))
        bleu = scores.get("bleu") if isinstance(scores, dict) else None
        if isinstance(bleu, dict) and isinstance(bleu.get("score"), (int, float)) and math.isfinite(bleu["score"]):
            score = f"\n## Evaluation\n\nBLEU {bleu['score']:.2f} (sacreBLEU, `{bleu.get('signature', '')}`), " \
                    "decoded with `nmt translate` before export.\n"
    except (OSError, ValueError):
        pass
    averaged = payload.get("averaged_from")
    trained = (f"the average of {len(averaged)} checkpoints" if isinstance(averaged, list)
               else f"update {payload.get('update', '?')}")
    tags = [tag for tag in (payload.get("src"), payload.get("tgt")) if tag]
    vocabulary = (f"tied embeddings over a joint vocabulary of {config.vocab_size} pieces" if not
                  config.target_vocab_size and config.tie_output else
                  f"vocabularies of {config.vocab_size} source and {config.target_vocab_size or config.vocab_size} "
                  "target pieces")
    header = "---\n" + ("language:\n" + "".join(f"- {t}\n" for t in tags) if tags else "") + \
             "library_name: transformers\npipeline_tag: translation\ntags:\n- marian\n- nmt\n---\n\n"
    return header + f"""# {src}-{tgt} Transformer, trained with nmt

A Transformer (Vaswani et al., 2017) trained with nmt {__version__}, a command-line toolkit for it (`nmt.json` in
this folder names the checkpoint), and exported to the MarianMT architecture: {config.encoder_layers} encoder and {config.decoder_layers} decoder layers, d_model {config.d_model},
d_ff {config.d_ff}, {config.heads} heads, {config.activation} activation, post-norm, sinusoidal positions,
{vocabulary}; {count_parameters(model):,} parameters; {trained}.
{score}
## Use

```python
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, pipeline

tokenizer = AutoTokenizer.from_pretrained("{out_dir.name}")
model = AutoModelForSeq2SeqLM.from_pretrained("{out_dir.name}")
batch = tokenizer(["..."], return_tensors="pt", padding=True)
translations = tokenizer.batch_decode(model.generate(**batch), skip_special_tokens=True)

# transformers 4.x also has the translation pipeline (5.x removed it):
translated = pipeline("translation", model="{out_dir.name}")("...")[0]["translation_text"]
```

Generation defaults: beam {generation['num_beams']}, length penalty |Y|^{generation['length_penalty']:g}, at most
{generation['max_length']} pieces. `nmt translate` bounds each output by its source's length instead (a * |source|
+ b) and by default uses the GNMT length penalty, which transformers does not implement; `--lenpen-style length`
decodes as this export does.
"""
