"""What an imported MarianMT folder must hold before a model is built from it: config.json's settings in the ranges
nmt builds, the weights' shapes those settings imply, shard names inside the folder, generation settings nmt can
decode with. Each refusal names the file and the key or tensor, not a command-line option the user never gave."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from nmt.config import ModelConfig, SearchConfig
from nmt.errors import ConfigError, NmtError
from nmt.ranges import field_range

ACTIVATIONS = {"swish": "swish", "silu": "swish", "gelu": "gelu", "relu": "relu"}
# config.json's names for the ModelConfig fields it sets
CONFIG_KEYS = {"d_model": "d_model", "encoder_layers": "encoder_layers", "decoder_layers": "decoder_layers",
               "heads": "encoder_attention_heads", "d_ff": "encoder_ffn_dim", "vocab_size": "vocab_size",
               "dropout": "dropout", "attention_dropout": "attention_dropout",
               "activation_dropout": "activation_dropout"}


def read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise NmtError(f"{path}: not found; a MarianMT folder has {what}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise NmtError(f"{path}: not readable JSON ({str(error).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise NmtError(f"{path}: not a JSON object")
    return data


def read_marian_config(folder: Path) -> dict:
    """config.json, checked to describe a model the import represents exactly."""
    if not folder.is_dir():
        raise NmtError(f"{folder}: no such folder (give the folder `hf download` or save_pretrained wrote)")
    path = folder / "config.json"
    config = read_json(path, "config.json (the model's architecture)")
    kind = config.get("model_type")
    if kind != "marian":
        raise NmtError(f"{path}: model_type {kind!r} is not MarianMT: nmt imports MarianMT (OPUS-MT) models only")

    def refuse(setting: str, why: str):
        raise NmtError(f"{path}: {setting} = {config.get(setting)!r} has no exact nmt counterpart ({why})")

    for setting in ("normalize_before", "normalize_embedding", "add_final_layer_norm"):
        if config.get(setting):
            refuse(setting, "nmt's MarianMT layers are post-norm without extra layer norms")
    if config.get("static_position_embeddings") is False:
        refuse("static_position_embeddings", "nmt's positions are sinusoids")
    if ACTIVATIONS.get(config.get("activation_function", "swish")) is None:
        refuse("activation_function", f"nmt has {', '.join(sorted(set(ACTIVATIONS)))}")
    for ours, (encoder, decoder) in {"heads": ("encoder_attention_heads", "decoder_attention_heads"),
                                     "d_ff": ("encoder_ffn_dim", "decoder_ffn_dim")}.items():
        if config.get(encoder) != config.get(decoder):
            refuse(decoder, f"nmt has one {ours} for both stacks, and {encoder} is {config.get(encoder)!r}")
    for setting in ("d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads", "encoder_ffn_dim",
                    "vocab_size", "pad_token_id", "eos_token_id"):
        if not isinstance(config.get(setting), int) or isinstance(config.get(setting), bool):
            raise NmtError(f"{path}: {setting} is {config.get(setting)!r}, not a number (damaged?)")
    for setting in ("dropout", "attention_dropout", "activation_dropout"):
        if setting in config and (not isinstance(config[setting], (int, float)) or isinstance(config[setting], bool)):
            raise NmtError(f"{path}: {setting} is {config[setting]!r}, not a number (damaged?)")
    for ours, key in CONFIG_KEYS.items():
        limits = field_range(ModelConfig, ours)
        if key in config and not limits.holds(config[key]):
            raise NmtError(f"{path}: {key} = {config[key]!r} is outside what nmt builds (it must be "
                           f"{limits.describe()})")
    if config["d_model"] % 2 or config["d_model"] % config["encoder_attention_heads"]:
        refuse("d_model", "it must be even and divisible by the number of heads")
    return config



def shard_files(index_path: Path) -> list[Path]:
    """The safetensors shards model.safetensors.index.json names: a table of tensor -> file of this folder."""
    weight_map = read_json(index_path, "").get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise NmtError(f"{index_path}: weight_map is not a table of tensor names to shard files (damaged?)")
    names = sorted(set(weight_map.values()))
    for name in names:
        if Path(name).name != name or name in ("", ".", ".."):
            raise NmtError(f"{index_path}: the shard {name!r} is not a file name of this folder")
    return [index_path.parent / name for name in names]


def check_weight_shapes(weights: dict[str, torch.Tensor], config: dict, path: Path) -> None:
    """The weights' width, layer counts and feed-forward width against config.json, before anything is built."""
    embedding = weights.get("model.shared.weight", weights.get("model.encoder.embed_tokens.weight"))
    if embedding is None or embedding.dim() != 2:
        raise NmtError(f"{path.parent}: the weights hold no embedding matrix (model.shared.weight; not a MarianMT "
                       "model, or damaged)")
    if embedding.shape[1] != config["d_model"]:
        raise NmtError(f"{path}: d_model = {config['d_model']}, but the weights are {embedding.shape[1]} wide "
                       f"(model.shared.weight is {tuple(embedding.shape)})")
    for stack in ("encoder", "decoder"):
        layers = {int(m.group(1)) for name in weights if (m := re.match(rf"model\.{stack}\.layers\.(\d+)\.", name))}
        if len(layers) != config[f"{stack}_layers"]:
            raise NmtError(f"{path}: {stack}_layers = {config[f'{stack}_layers']}, but the weights hold "
                           f"{len(layers)} {stack} layers")
        fc1 = weights.get(f"model.{stack}.layers.0.fc1.weight")
        if fc1 is not None and tuple(fc1.shape) != (config[f"{stack}_ffn_dim"], config["d_model"]):
            raise NmtError(f"{path}: {stack}_ffn_dim = {config[f'{stack}_ffn_dim']}, but "
                           f"model.{stack}.layers.0.fc1.weight is {tuple(fc1.shape)}")


def check_model_config(config: ModelConfig, path: Path) -> ModelConfig:
    """CONFIG checked as `nmt train` checks its own, a value out of range named by its config.json key."""
    try:
        config.validate(lambda name: f"{path}: {CONFIG_KEYS.get(name, name)}")
    except ConfigError as error:
        raise NmtError(str(error)) from None
    return config


def check_generation(beam: int, alpha: float, path: Path) -> None:
    """num_beams and length_penalty in the ranges `nmt translate` decodes with."""
    for key, value, field in (("num_beams", beam, "beam"), ("length_penalty", alpha, "lenpen")):
        limits = field_range(SearchConfig, field)
        if not limits.holds(value):
            raise NmtError(f"{path}: {key} = {value!r} is not a value nmt decodes with (it must be "
                           f"{limits.describe()}); correct it in the file and import again")
