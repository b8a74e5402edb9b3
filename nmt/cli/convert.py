"""`nmt export ctranslate2|huggingface` and `nmt import huggingface`: a model to and from other toolkits' formats."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from nmt.cli.app import app, command, console, dry_run
from nmt.cli.options import ExportCheckpoint, config_number
from nmt.export.shortlist import ShortlistConfig

export_app = typer.Typer(help="Write a trained model in another toolkit's format.", no_args_is_help=True)
app.add_typer(export_app, name="export")
import_app = typer.Typer(help="Read a pretrained model of another toolkit into an nmt checkpoint.",
                         no_args_is_help=True)
app.add_typer(import_app, name="import")


@command("ctranslate2", export_app, "export ctranslate2")
def export_ctranslate2_command(
    checkpoint: ExportCheckpoint,
    out_dir: Annotated[Path, typer.Argument(help="The CTranslate2 model folder to write.")],
    quantization: Annotated[Optional[str], typer.Option(
        help="Store weights as int8, int8_float32, float16, ... (default: float32; translate can still quantize "
             "at load time).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace OUT_DIR if an earlier export is there.")] = False,
    shortlist: Annotated[Optional[Path], typer.Option(
        help="A DATA_DIR prepared in the checkpoint's vocabulary (e.g. the training data): a lexical shortlist "
             "built from its training split goes beside the model, and each batch then decodes over the target "
             "pieces its sources map to (faster for small models; docs/export.md).")] = None,
    shortlist_frequent: Annotated[int, config_number(
        ShortlistConfig, "frequent", "With --shortlist: the most frequent target pieces, allowed in every batch.")
    ] = ShortlistConfig.frequent,
    shortlist_per_source: Annotated[int, config_number(
        ShortlistConfig, "per_source", "With --shortlist: target pieces each source piece allows (those most "
                                       "often in the same training pairs).")] = ShortlistConfig.per_source,
) -> None:
    """A CTranslate2 model (its own spec API) with the SentencePiece model beside it, for `--engine ctranslate2`."""
    from nmt.export.ctranslate2 import export_ctranslate2

    if dry_run("export ctranslate2", {"checkpoint": checkpoint, "out_dir": out_dir, "shortlist": shortlist}):
        return
    config = ShortlistConfig(frequent=shortlist_frequent, per_source=shortlist_per_source)
    export_ctranslate2(checkpoint, out_dir, quantization=quantization, force=force, shortlist=shortlist,
                       shortlist_config=config)
    console.print(f"wrote {out_dir} (CTranslate2); try: nmt translate --engine ctranslate2 --checkpoint {out_dir}")


@command("huggingface", export_app, "export huggingface")
def export_huggingface_command(
    checkpoint: ExportCheckpoint,
    out_dir: Annotated[Path, typer.Argument(help="The Hugging Face model folder to write.")],
    force: Annotated[bool, typer.Option("--force", help="Replace OUT_DIR if an earlier export is there.")] = False,
) -> None:
    """A MarianMT folder for Hugging Face transformers (config, safetensors weights, MarianTokenizer files,
    generation settings, a model card), loaded offline with AutoModelForSeq2SeqLM / AutoTokenizer / pipeline."""
    from nmt.export.huggingface import export_huggingface

    if dry_run("export huggingface", {"checkpoint": checkpoint, "out_dir": out_dir}):
        return
    export_huggingface(checkpoint, out_dir, force=force)
    console.print(f"wrote {out_dir} (MarianMT for transformers); try: python -c \"from transformers import pipeline; "
                  f"print(pipeline('translation', model='{out_dir}')('...'))\"", highlight=False, soft_wrap=True)


@command("huggingface", import_app, "import huggingface")
def import_huggingface_command(
    folder: Annotated[Path, typer.Argument(help="A MarianMT folder (e.g. an OPUS-MT model from `hf download`).")],
    output: Annotated[Path, typer.Option(help="The nmt checkpoint to write.")],
    force: Annotated[bool, typer.Option("--force", help="Replace OUTPUT if it exists.")] = False,
) -> None:
    """An nmt checkpoint of a MarianMT model (weights, both SentencePiece models, its vocabulary and special ids,
    its beam and length penalty as search defaults): translate, score, export and fine-tune it as any other."""
    from nmt.checkpoint import vocab_from_payload
    from nmt.pretrained.huggingface import import_huggingface

    if dry_run("import huggingface", {"folder": folder, "output": output}):
        return
    payload = import_huggingface(folder, output, force=force)
    config = payload["model_config"]
    multilingual = vocab_from_payload(payload, output).language_tokens
    console.print(f"wrote {output}: MarianMT, {config['encoder_layers']}+{config['decoder_layers']} layers, d_model "
                  f"{config['d_model']}, {config['activation']}"
                  + (f", multilingual ({len(multilingual)} target languages: --target-language)" if multilingual
                     else "")
                  + f"; try: echo 'text' | nmt translate --checkpoint {output}", highlight=False, soft_wrap=True)
