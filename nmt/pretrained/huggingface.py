"""Hugging Face import: `nmt import huggingface DIR --output CHECKPOINT`, a MarianMT folder (OPUS-MT and the like,
as `hf download` or `save_pretrained` writes it) read into an nmt checkpoint.

The conversion is exact or refused, never approximate:
- MarianMT's sinusoid table puts all sines before all cosines; ours interleaves them. The model dimension is permuted
  back (the inverse of the export's permutation, nmt.export.huggingface), which changes no attention score,
  activation or logit.
- q_proj, k_proj and v_proj become our fused projections; activation (swish, gelu, relu), the embedding scale, the
  final-logits bias, separate or shared embeddings and an untied output projection become model options.
- The tokenizer's source.spm and target.spm, and vocab.json (target_vocab.json with separate vocabularies), become
  the checkpoint's vocabulary, the special ids those the model was trained with (the decoder starts from pad).
- Weights are read from safetensors, or from pytorch_model.bin with torch.load(weights_only=True): a pickle that
  would run code is refused.
- Search defaults come from the model's generation settings (beam, |Y|^alpha length penalty): `nmt translate`
  uses them unless told otherwise, as after `nmt tune`.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from nmt.checkpoint import make_payload, save_checkpoint
from nmt.config import ModelConfig
from nmt.errors import NmtError
from nmt.model.transformer import Transformer, sinusoid_permutation
from nmt.pretrained.marian_checks import (ACTIVATIONS, check_generation, check_model_config, check_weight_shapes,
                                          read_json, read_marian_config, shard_files)
from nmt.vocab import Vocab

SPECIAL_PIECES = ("<pad>", "</s>", "<unk>")


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The state dict, from model.safetensors (or its shards) or pytorch_model.bin, without running pickled code."""
    safetensors_path, index_path = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if safetensors_path.is_file() or index_path.is_file():
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        files = [safetensors_path] if safetensors_path.is_file() else shard_files(index_path)
        weights = {}
        for path in files:
            try:
                weights.update(load_file(str(path)))
            except (SafetensorError, OSError) as error:
                raise NmtError(f"{path}: not a readable safetensors file ({str(error).splitlines()[0]})") from None
        return weights
    path = folder / "pytorch_model.bin"
    if not path.is_file():
        raise NmtError(f"{folder}: no weights (model.safetensors or pytorch_model.bin)")
    try:
        weights = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise NmtError(f"{path}: refused to load: it holds objects other than tensors (a pickle that could run "
                       "code); convert it to model.safetensors with transformers, or use a trusted copy") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as error:
        raise NmtError(f"{path}: not a readable weights file ({str(error).strip().splitlines()[0]})") from None
    if not isinstance(weights, dict) or not all(isinstance(t, torch.Tensor) for t in weights.values()):
        raise NmtError(f"{path}: not a table of named tensors")
    return weights


def _table(path: Path) -> list[str]:
    """vocab.json ({piece: id}) as the list of pieces by id; the ids must be 0..n-1."""
    mapping = read_json(path, "the tokenizer's vocab.json")
    pieces = [None] * len(mapping)
    for piece, index in mapping.items():
        if not isinstance(index, int) or not 0 <= index < len(mapping) or pieces[index] is not None:
            raise NmtError(f"{path}: the ids are not 0..{len(mapping) - 1}, each once (damaged?)")
        pieces[index] = piece
    return pieces


def read_vocabulary(folder: Path, config: dict) -> Vocab:
    """source.spm, target.spm and vocab.json (and target_vocab.json) as a Vocab over the model's ids."""
    tokenizer_config = folder / "tokenizer_config.json"
    settings = read_json(tokenizer_config, "tokenizer_config.json") if tokenizer_config.is_file() else {}
    models = []
    for name in ("source.spm", "target.spm"):
        path = folder / name
        if not path.is_file():
            raise NmtError(f"{path}: not found; a MarianMT folder has source.spm and target.spm (the tokenizer's "
                           "SentencePiece models)")
        models.append(path.read_bytes())
    source = _table(folder / "vocab.json")
    separate = bool(settings.get("separate_vocabs"))
    target = _table(folder / "target_vocab.json") if separate else None
    pad, eos = config["pad_token_id"], config["eos_token_id"]
    start = config.get("decoder_start_token_id", pad)
    for name, table in (("vocab.json", source), ("target_vocab.json", target)):
        if table is None:
            continue
        for piece in SPECIAL_PIECES:
            if piece not in table:
                raise NmtError(f"{folder / name}: has no {piece} piece")
        for setting, token in (("pad_token_id", pad), ("eos_token_id", eos), ("decoder_start_token_id", start)):
            if not isinstance(token, int) or not 0 <= token < len(table):
                raise NmtError(f"{folder / 'config.json'}: {setting} {token!r} is not an id of {folder / name}'s "
                               f"{len(table)} pieces")
        if table[pad] != "<pad>" or table[eos] != "</s>":
            raise NmtError(f"{folder / name}: pad_token_id {pad} is {table[pad]!r} and eos_token_id {eos} is "
                           f"{table[eos]!r}, not <pad> and </s>: the tokenizer does not belong to this model")
    try:
        return Vocab(models[0], models[1], {"source": source, **({"target": target} if target else {}),
                                            "specials": {"pad": pad, "unk": source.index("<unk>"), "bos": start,
                                                         "eos": eos}})
    except NmtError as error:
        raise NmtError(f"{folder}: {error}") from None


def model_config(config: dict, vocab: Vocab, weights: dict[str, torch.Tensor]) -> ModelConfig:
    shared = bool(config.get("share_encoder_decoder_embeddings", True))
    bias = weights.get("final_logits_bias")
    return ModelConfig(
        vocab_size=len(vocab), target_vocab_size=0 if shared else vocab.target_size,
        encoder_layers=config["encoder_layers"], decoder_layers=config["decoder_layers"], d_model=config["d_model"],
        d_ff=config["encoder_ffn_dim"], heads=config["encoder_attention_heads"],
        dropout=float(config.get("dropout", 0.1)), attention_dropout=float(config.get("attention_dropout", 0.0)),
        activation_dropout=float(config.get("activation_dropout", 0.0)),
        activation=ACTIVATIONS[config.get("activation_function", "swish")],
        scale_embedding=bool(config.get("scale_embedding", False)),
        tie_output=bool(config.get("tie_word_embeddings", True)),
        output_bias=bias is not None and bool(bias.abs().sum() > 0),
        pad_id=vocab.pad_id, bos_id=vocab.bos_id, eos_id=vocab.eos_id)


def nmt_state_dict(weights: dict[str, torch.Tensor], config: ModelConfig, shared: bool) -> dict[str, torch.Tensor]:
    """MarianMTModel's weights under our names, the model dimension permuted back to interleaved sinusoids."""
    d = config.d_model
    inverse = torch.argsort(sinusoid_permutation(d))  # our dimension k is MarianMT's inverse[k]
    state: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def get(name: str) -> torch.Tensor:
        if name not in weights:
            raise NmtError(f"the weights lack {name} (not a MarianMT model, or damaged)")
        used.add(name)
        return weights[name].float()

    def reads(name: str) -> torch.Tensor:  # a matrix reading the residual stream: its input columns
        return get(name)[:, inverse].contiguous()

    def writes(name: str) -> torch.Tensor:  # a weight or bias writing the residual stream: its output rows
        return get(name)[inverse].contiguous()

    def norm(ours: str, theirs: str) -> None:
        state[f"{ours}.weight"], state[f"{ours}.bias"] = writes(f"{theirs}.weight"), writes(f"{theirs}.bias")

    def fused(ours: str, theirs: str, names: tuple[str, ...]) -> None:
        state[f"{ours}.weight"] = torch.cat([reads(f"{theirs}.{n}.weight") for n in names])
        state[f"{ours}.bias"] = torch.cat([get(f"{theirs}.{n}.bias") for n in names])

    def output(ours: str, theirs: str) -> None:
        state[f"{ours}.weight"], state[f"{ours}.bias"] = writes(f"{theirs}.weight"), writes(f"{theirs}.bias")

    def ffn(ours: str, theirs: str) -> None:
        state[f"{ours}.ffn.linear1.weight"] = reads(f"{theirs}.fc1.weight")
        state[f"{ours}.ffn.linear1.bias"] = get(f"{theirs}.fc1.bias")
        output(f"{ours}.ffn.linear2", f"{theirs}.fc2")

    if shared:
        state["embed_tokens.weight"] = reads("model.shared.weight")
        decoder_embedding = "model.shared.weight"
    else:
        state["embed_tokens.weight"] = reads("model.encoder.embed_tokens.weight")
        state["embed_target_tokens.weight"] = reads("model.decoder.embed_tokens.weight")
        decoder_embedding = "model.decoder.embed_tokens.weight"
    for i in range(config.encoder_layers):
        ours, theirs = f"encoder_layers.{i}", f"model.encoder.layers.{i}"
        fused(f"{ours}.self_attn.qkv_proj", f"{theirs}.self_attn", ("q_proj", "k_proj", "v_proj"))
        output(f"{ours}.self_attn.out_proj", f"{theirs}.self_attn.out_proj")
        norm(f"{ours}.attn_sublayer.norm", f"{theirs}.self_attn_layer_norm")
        ffn(ours, theirs)
        norm(f"{ours}.ffn_sublayer.norm", f"{theirs}.final_layer_norm")
    for i in range(config.decoder_layers):
        ours, theirs = f"decoder_layers.{i}", f"model.decoder.layers.{i}"
        fused(f"{ours}.self_attn.qkv_proj", f"{theirs}.self_attn", ("q_proj", "k_proj", "v_proj"))
        output(f"{ours}.self_attn.out_proj", f"{theirs}.self_attn.out_proj")
        norm(f"{ours}.self_attn_sublayer.norm", f"{theirs}.self_attn_layer_norm")
        fused(f"{ours}.cross_attn.q_proj", f"{theirs}.encoder_attn", ("q_proj",))
        fused(f"{ours}.cross_attn.kv_proj", f"{theirs}.encoder_attn", ("k_proj", "v_proj"))
        output(f"{ours}.cross_attn.out_proj", f"{theirs}.encoder_attn.out_proj")
        norm(f"{ours}.cross_attn_sublayer.norm", f"{theirs}.encoder_attn_layer_norm")
        ffn(ours, theirs)
        norm(f"{ours}.ffn_sublayer.norm", f"{theirs}.final_layer_norm")
    if not config.tie_output:
        state["output_weight"] = reads("lm_head.weight" if "lm_head.weight" in weights else decoder_embedding)
    else:
        used.add("lm_head.weight")  # a tied copy, where the file has one
    if "final_logits_bias" in weights:
        bias = get("final_logits_bias").reshape(-1)
        if config.output_bias:
            state["output_bias"] = bias
    # Position tables (sinusoids, rebuilt by both) and the tied copies of the embedding carry nothing else.
    leftover = [name for name in weights if name not in used and not name.endswith("embed_positions.weight")
                and name not in ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight")]
    if leftover:
        raise NmtError(f"the weights hold {len(leftover)} tensors nmt's MarianMT has no place for, e.g. "
                       f"{leftover[0]}: another architecture")
    return state


def import_huggingface(folder: Path, output: Path, force: bool = False) -> dict:
    """Read the MarianMT folder and write `output`, an nmt checkpoint; returns the checkpoint's payload."""
    folder, output = Path(folder), Path(output)
    if output.exists() and folder.is_dir() and any(output.samefile(path) for path in folder.iterdir()):
        raise NmtError(f"--output {output} is a file of the model being imported; write the checkpoint elsewhere")
    if output.exists() and not force:
        raise NmtError(f"{output}: exists; add --force to replace it")
    config = read_marian_config(folder)
    vocab = read_vocabulary(folder, config)
    weights = read_weights(folder)
    shared = bool(config.get("share_encoder_decoder_embeddings", True))
    check_weight_shapes(weights, config, folder / "config.json")  # before a model of config.json's size is built
    ours = check_model_config(model_config(config, vocab, weights), folder / "config.json")
    embedding = weights.get("model.shared.weight" if shared else "model.encoder.embed_tokens.weight")
    if embedding is not None and embedding.shape[0] != len(vocab):
        raise NmtError(f"{folder / 'vocab.json'}: {len(vocab)} pieces, but the weights embed {embedding.shape[0]}: "
                       "the tokenizer files do not belong to these weights")
    if not shared:
        target = weights.get("model.decoder.embed_tokens.weight")
        if target is not None and target.shape[0] != vocab.target_size:
            raise NmtError(f"{folder / 'target_vocab.json'}: {vocab.target_size} pieces, but the weights embed "
                           f"{target.shape[0]} target pieces: the tokenizer files do not belong to these weights")
    model = Transformer(ours)
    try:
        model.load_state_dict(nmt_state_dict(weights, ours, shared))
    except RuntimeError as error:
        raise NmtError(f"{folder}: the weights do not fit config.json: {str(error).splitlines()[1:2] or error}") \
            from None
    settings = _tokenizer_settings(folder)
    payload = make_payload(model, vocab, None, settings.get("source_lang"), settings.get("target_lang"), 0, 0,
                           imported_from={"format": "huggingface-marian", "folder": str(folder.resolve())})
    search = generation_search(folder, config)
    if search:
        payload["search"] = search
    save_checkpoint(payload, output)
    return payload


def _tokenizer_settings(folder: Path) -> dict:
    path = folder / "tokenizer_config.json"
    return read_json(path, "") if path.is_file() else {}


def generation_search(folder: Path, config: dict) -> dict:
    """The model's own beam and length penalty (generation_config.json, else config.json) as search defaults;
    transformers divides by |Y|^alpha, our `length` style."""
    path = folder / "generation_config.json"
    generation = read_json(path, "") if path.is_file() else config
    beam, alpha = generation.get("num_beams", 1), generation.get("length_penalty", 1.0)
    if not isinstance(beam, int) or isinstance(beam, bool) or beam < 1 or not isinstance(alpha, (int, float)):
        return {}
    check_generation(beam, alpha, path if path.is_file() else folder / "config.json")
    return {"beam": beam, "lenpen": float(alpha), "lenpen_style": "length",
            "length_style": {"beam": beam, "lenpen": float(alpha)}, "imported_from": path.name if path.is_file()
            else "config.json"}
