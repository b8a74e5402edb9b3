"""MarianMT models with OPUS-MT's layout, built and trained here with transformers itself (no network): separate
source and target SentencePiece models trained on Multi30k, a vocab.json over both (or one per side), swish, a
non-zero final_logits_bias, the decoder starting from pad, eos at 0 and pad last."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import sentencepiece as spm
import torch

from conftest import SHARED_MULTI30K

LANGUAGES = {"deu": "de", "fra": "fr"}


def multi30k_lines(lang: str, start: int, count: int) -> list[str]:
    with gzip.open(SHARED_MULTI30K / f"train.{lang}.gz", "rt", encoding="utf-8") as handle:
        return [line.strip() for i, line in enumerate(handle) if start <= i < start + count]


def train_spm(lines: list[str], prefix: Path, size: int) -> Path:
    text = prefix.with_suffix(".txt")
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    # OPUS-MT's SentencePiece models are unigram models with their own specials; ids are vocab.json's, not these.
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(prefix), vocab_size=size, model_type="unigram",
                                   character_coverage=1.0, minloglevel=2, num_threads=1)
    return prefix.with_suffix(".model")


def spm_pieces(model: Path) -> list[str]:
    processor = spm.SentencePieceProcessor(model_file=str(model))
    return [processor.id_to_piece(i) for i in range(processor.get_piece_size())
            if not (processor.is_control(i) or processor.is_unknown(i))]


def table(*piece_lists: list[str], extra: tuple[str, ...] = ()) -> dict[str, int]:
    """OPUS-MT's vocab.json: </s> 0, <unk> 1, (language tokens), the pieces, <pad> last."""
    pieces = ["</s>", "<unk>", *extra]
    for pieces_of_one in piece_lists:
        pieces += [p for p in pieces_of_one if p not in pieces]
    pieces.append("<pad>")
    return {p: i for i, p in enumerate(dict.fromkeys(pieces))}


def build_marian(folder: Path, separate_vocabs: bool = False, scale_embedding: bool = True,
                 multilingual: bool = False, updates: int = 400, seed: int = 0) -> Path:
    """A trained MarianMT folder (save_pretrained), en -> de (multilingual: en -> de and fr by >>deu<< / >>fra<<)."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    folder.mkdir(parents=True, exist_ok=True)
    scratch = folder.parent / f"{folder.name}-spm"
    scratch.mkdir(exist_ok=True)
    targets = ["de", "fr"] if multilingual else ["de"]
    english = multi30k_lines("en", 0, 4000)
    foreign = {lang: multi30k_lines(lang, 0, 4000) for lang in targets}
    source_model = train_spm(english, scratch / "source", 400)
    target_model = train_spm([line for lang in targets for line in foreign[lang]], scratch / "target", 400)
    codes = tuple(f">>{code}<<" for code, lang in LANGUAGES.items() if lang in targets) if multilingual else ()
    if separate_vocabs:
        source_vocab, target_vocab = table(spm_pieces(source_model), extra=codes), table(spm_pieces(target_model))
        size = max(len(source_vocab), len(target_vocab))  # transformers' MarianMT needs equal sizes: pad both
        for vocab in (source_vocab, target_vocab):
            pad = vocab.pop("<pad>")
            filler = [f"<unused{i}>" for i in range(size - len(vocab) - 1)]
            vocab.update({p: pad + i for i, p in enumerate(filler)})
            vocab["<pad>"] = size - 1
        (folder / "target_vocab.json").write_text(json.dumps(target_vocab, ensure_ascii=False), encoding="utf-8")
    else:
        source_vocab = table(spm_pieces(source_model), spm_pieces(target_model), extra=codes)
        size = len(source_vocab)
    (folder / "vocab.json").write_text(json.dumps(source_vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "source.spm").write_bytes(source_model.read_bytes())
    (folder / "target.spm").write_bytes(target_model.read_bytes())
    tokenizer = transformers.MarianTokenizer(
        str(folder / "source.spm"), str(folder / "target.spm"), str(folder / "vocab.json"),
        target_vocab_file=str(folder / "target_vocab.json") if separate_vocabs else None,
        separate_vocabs=separate_vocabs, model_max_length=128)
    pad = size - 1
    config = transformers.MarianConfig(
        vocab_size=size, decoder_vocab_size=size, d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
        activation_function="swish", scale_embedding=scale_embedding, max_position_embeddings=128, dropout=0.0,
        pad_token_id=pad, eos_token_id=0, decoder_start_token_id=pad, forced_eos_token_id=0,
        share_encoder_decoder_embeddings=not separate_vocabs, num_beams=4, bad_words_ids=[[pad]])
    torch.manual_seed(seed)
    model = transformers.MarianMTModel(config)
    with torch.no_grad():  # a buffer transformers never trains: set as OPUS-MT models have it, non-zero
        model.final_logits_bias.normal_(0.0, 0.5)
    pairs = [(f"{code} {en}" if multilingual else en, foreign[LANGUAGES[code[2:-2]] if multilingual else "de"][i])
             for i, en in enumerate(english)
             for code in (codes if multilingual else ("",))]
    encoded = tokenizer([p[0] for p in pairs], text_target=[p[1] for p in pairs])  # once: the tokenizer is slow
    sources, labels = encoded["input_ids"], encoded["labels"]
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(updates):
        chosen = torch.randint(len(pairs), (32,), generator=generator).tolist()
        source = torch.nn.utils.rnn.pad_sequence([torch.tensor(sources[i]) for i in chosen], True, pad)
        label = torch.nn.utils.rnn.pad_sequence([torch.tensor(labels[i]) for i in chosen], True, -100)
        loss = model(input_ids=source, attention_mask=source.ne(pad).long(), labels=label).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder
