"""`nmt import huggingface`: MarianMT (OPUS-MT) models, built and trained here with the real transformers library,
read into nmt checkpoints that compute what transformers computes, translate, export back and fine-tune."""

import json
import math
import os

import pytest
import torch

from conftest import requires_multi30k, run_nmt
from marian_models import build_marian, multi30k_lines
from nmt.checkpoint import load_model
from nmt.config import SearchConfig
from nmt.engines.pytorch import Translator

pytestmark = requires_multi30k
transformers = pytest.importorskip("transformers")

VARIANTS = {
    "opus-mt": {},  # shared vocab.json over two SentencePiece models, swish, final_logits_bias, scaled embeddings
    "separate-vocabs": {"separate_vocabs": True},
    "unscaled": {"scale_embedding": False},
    "multilingual": {"multilingual": True},  # >>deu<< / >>fra<< start the source
}


@pytest.fixture(scope="module")
def marian(tmp_path_factory):
    """variant -> (MarianMT folder, the nmt checkpoint imported from it), built once per variant."""
    built = {}
    root = tmp_path_factory.mktemp("marian")

    def get(variant: str):
        if variant not in built:
            folder = build_marian(root / variant, **VARIANTS[variant])
            checkpoint = root / f"{variant}.pt"
            run_nmt("import", "huggingface", str(folder), "--output", str(checkpoint))
            built[variant] = folder, checkpoint
        return built[variant]
    return get


def sources(variant: str, lines: list[str]) -> list[str]:
    return [f">>fra<< {line}" for line in lines] if variant == "multilingual" else lines


def hf_model(folder):
    return (transformers.AutoModelForSeq2SeqLM.from_pretrained(folder).eval(),
            transformers.AutoTokenizer.from_pretrained(folder))


@pytest.mark.parametrize("variant", VARIANTS)
def test_imported_logits_equal_transformers_on_a_padded_batch(marian, variant):
    folder, checkpoint = marian(variant)
    hf, tokenizer = hf_model(folder)
    model, vocab, _ = load_model(checkpoint)
    lines = ["A man rides a bike down the street.", "Two dogs play.", "A little girl in a pink dress is climbing."]
    targets = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee auf der Wiese.", "Ein Mädchen klettert."]
    batch = tokenizer(sources(variant, lines), text_target=targets, return_tensors="pt", padding=True)
    pad = model.config.pad_id
    # The same source ids through our own encoding, language token included
    ours = [ids + [vocab.eos_id] for ids in vocab.encode_source(sources(variant, lines))]
    assert [row[row.ne(pad)].tolist() for row in batch["input_ids"]] == ours
    assert [row[row.ne(pad)].tolist() for row in batch["labels"]] == [ids + [vocab.eos_id]
                                                                      for ids in vocab.encode_target(targets)]
    labels = batch["labels"]
    prev = torch.cat([torch.full((len(lines), 1), model.config.bos_id), labels[:, :-1]], dim=1)
    with torch.no_grad():
        theirs = hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    decoder_input_ids=prev).logits
        mine = model(batch["input_ids"], prev)
    mask = labels.ne(pad)
    assert mask.sum() > 20 and not mask.all()  # a padded batch
    assert (theirs[mask] - mine[mask]).abs().max().item() < 1e-4


def hf_greedy_pieces(hf, tokenizer, vocab, line: str) -> list[str]:
    batch = tokenizer([line], return_tensors="pt")
    limit = int(batch["input_ids"].shape[1] + 50)  # nmt translate's default: source (eos in) + 50
    with torch.no_grad():
        ids = hf.generate(**batch, num_beams=1, do_sample=False, max_length=limit + 1)[0].tolist()
    return [vocab.target.piece(i) for i in ids[1:] if i not in (vocab.eos_id, vocab.pad_id)]


@pytest.mark.parametrize("variant", VARIANTS)
def test_imported_greedy_outputs_equal_transformers_on_100_sentences(marian, variant):
    folder, checkpoint = marian(variant)
    hf, tokenizer = hf_model(folder)
    lines = multi30k_lines("en", 20_000, 100)
    translator = Translator(checkpoint, SearchConfig(beam=1, lenpen=0.0),
                            target_language="fra" if variant == "multilingual" else None)
    vocab = translator.vocab
    ours = [[p for p in t[0].tokens if p != "</s>"] for t in translator.translate(lines)]
    theirs = [hf_greedy_pieces(hf, tokenizer, vocab, line) for line in sources(variant, lines)]
    assert ours == theirs
    assert len({" ".join(o) for o in ours}) > 50  # outputs depend on the input
    ended = sum(len(o) < len(vocab.encode_source([line])[0]) + 50 for o, line in zip(ours, lines))
    assert ended > 60  # and most end before the length limit


def test_import_translate_and_the_models_own_search_settings(marian, tmp_path):
    folder, checkpoint = marian("opus-mt")
    hf, tokenizer = hf_model(folder)
    lines = multi30k_lines("en", 20_000, 30)
    source = tmp_path / "src.en"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run_nmt("translate", "--checkpoint", str(checkpoint), "--input", str(source), "--beam", "1")
    batch = tokenizer(lines, return_tensors="pt", padding=True)
    with torch.no_grad():
        ids = hf.generate(**batch, num_beams=1, max_new_tokens=60)
    expected = tokenizer.batch_decode(ids, skip_special_tokens=True)
    got = result.stdout.splitlines()
    # Outputs cut by the length limits (different here) aside, the text is transformers' decoding of the same ids
    same = [a == b for a, b, row in zip(got, expected, ids.tolist()) if 0 in row[:-1]]  # ended before the limit
    assert len(same) >= 10 and all(same)
    # Without --beam, the model's own generation settings decide (beam 4, |Y|^1.0) and the user is told so
    result = run_nmt("translate", "--checkpoint", str(checkpoint), input="A dog runs.\n")
    assert "imported model's generation settings: beam 4, lenpen 1.0, the length style" in result.stderr


def test_a_multilingual_model_needs_its_target_language(marian):
    _, checkpoint = marian("multilingual")
    refused = run_nmt("translate", "--checkpoint", str(checkpoint), "--beam", "1", input="A dog runs.\n",
                      check=False)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    error = refused.stderr.strip().splitlines()[-1]  # after the note on the model's own search settings
    assert error.startswith("error:") and "--target-language" in error
    assert "deu" in error and "fra" in error
    unknown = run_nmt("translate", "--checkpoint", str(checkpoint), "--target-language", "ita", "--beam", "1",
                      input="A dog.\n", check=False)
    assert unknown.returncode == 1 and "not a language of this model" in unknown.stderr
    french = run_nmt("translate", "--checkpoint", str(checkpoint), "--target-language", "fra", "--beam", "1",
                     input="A dog runs.\n")
    german = run_nmt("translate", "--checkpoint", str(checkpoint), "--target-language", "deu", "--beam", "1",
                     input="A dog runs.\n")
    marked = run_nmt("translate", "--checkpoint", str(checkpoint), "--beam", "1", input=">>fra<< A dog runs.\n")
    assert french.stdout == marked.stdout != german.stdout


def test_a_multilingual_model_is_served_with_a_message_a_client_can_act_on(marian):
    """Without a language for all, a text without its >>xx<< token gets a 400 saying to add one; with
    `nmt serve --target-language`, LibreTranslate's clients get translations."""
    httpx = pytest.importorskip("httpx")
    from test_serve import ServerProcess
    _, checkpoint = marian("multilingual")
    server = ServerProcess(checkpoint, "--beam", "1")
    try:
        refused = httpx.post(server.url + "/v1/translate", json={"text": "A dog runs."}, timeout=60)
        marked = httpx.post(server.url + "/v1/translate", json={"text": ">>fra<< A dog runs."}, timeout=60)
        asked = httpx.post(server.url + "/v1/translate", json={"text": "A dog runs.", "target": "fra"}, timeout=60)
        libre = httpx.post(server.url + "/translate", json={"q": "A dog runs.", "source": "en", "target": "fra"},
                           timeout=60)
        languages = httpx.get(server.url + "/languages", timeout=60).json()
    finally:
        server.stop()
    assert refused.status_code == 400 and "start each text with" in refused.json()["error"]
    assert ">>deu<<" in refused.json()["error"]
    assert marked.status_code == 200
    # Its tokens are its languages: a client names the target, as LibreTranslate's clients do.
    french = marked.json()["translations"][0]["text"]
    assert asked.json()["translations"][0]["text"] == french and libre.json()["translatedText"] == french
    assert languages[0]["code"] == "auto" and languages[0]["targets"] == ["deu", "fra"]
    french = ServerProcess(checkpoint, "--beam", "1", "--target-language", "fra")
    try:
        answer = httpx.post(french.url + "/v1/translate", json={"text": "A dog runs."}, timeout=60)
    finally:
        french.stop()
    assert answer.status_code == 200 and answer.json()["translations"][0]["text"] == \
        marked.json()["translations"][0]["text"]


@pytest.mark.parametrize("variant", ["opus-mt", "separate-vocabs", "unscaled"])
def test_an_imported_model_exports_back_to_the_weights_it_came_from(marian, variant, tmp_path):
    from safetensors.torch import load_file

    folder, checkpoint = marian(variant)
    run_nmt("export", "huggingface", str(checkpoint), str(tmp_path / "back"))
    original = load_file(str(folder / "model.safetensors"))
    exported = load_file(str(tmp_path / "back" / "model.safetensors"))
    assert set(original) == set(exported)
    assert all(torch.equal(original[name], exported[name]) for name in original)
    config = json.loads((tmp_path / "back" / "config.json").read_text())
    assert config["activation_function"] == "swish"
    assert config["scale_embedding"] == (variant != "unscaled")
    assert config["share_encoder_decoder_embeddings"] == (variant != "separate-vocabs")
    for name in ("source.spm", "target.spm", "vocab.json"):
        assert (tmp_path / "back" / name).read_bytes() == (folder / name).read_bytes() or \
            json.loads((tmp_path / "back" / name).read_text()) == json.loads((folder / name).read_text())


@pytest.mark.parametrize("variant", ["opus-mt", "multilingual"])
def test_an_imported_model_decodes_in_ctranslate2_to_transformers_greedy_outputs(marian, variant, tmp_path):
    pytest.importorskip("ctranslate2")
    from nmt.engines.ctranslate2 import CTranslate2Translator

    folder, checkpoint = marian(variant)
    run_nmt("export", "ctranslate2", str(checkpoint), str(tmp_path / "ct2"))
    hf, tokenizer = hf_model(folder)
    translator = CTranslate2Translator(tmp_path / "ct2", SearchConfig(beam=1, lenpen=0.0, lenpen_style="length"),
                                       "cpu", target_language="fra" if variant == "multilingual" else None)
    lines = multi30k_lines("en", 20_000, 100)
    ours = [[p for p in translator.translate([line])[0][0].tokens if p != "</s>"] for line in lines]
    theirs = [hf_greedy_pieces(hf, tokenizer, translator.vocab, line) for line in sources(variant, lines)]
    # The two bound an output's length differently: an output that runs to the limit agrees up to the shorter one.
    limit = [len(translator.vocab.encode_source([line])[0]) + 50 for line in sources(variant, lines)]
    ended = [i for i, (a, b) in enumerate(zip(ours, theirs)) if len(b) < limit[i] - 2]
    assert len(ended) > 60
    assert [ours[i] for i in ended] == [theirs[i] for i in ended]
    assert all(a[:len(b)] == b[:len(a)] for a, b in zip(ours, theirs))


def test_an_imported_model_fine_tunes_on_data_prepared_with_its_vocabulary(marian, tmp_path):
    folder, checkpoint = marian("opus-mt")
    _, tokenizer = hf_model(folder)
    for split, start, count in (("train", 24_000, 600), ("valid", 24_600, 50)):
        for lang in ("en", "de"):
            (tmp_path / f"{split}.{lang}").write_text("\n".join(multi30k_lines(lang, start, count)) + "\n",
                                                      encoding="utf-8")
    run_nmt("prepare", "custom", "--src", "en", "--tgt", "de", "--train", str(tmp_path / "train"), "--valid",
            str(tmp_path / "valid"), "--vocab", str(checkpoint), "--out", str(tmp_path / "data"))
    data = tmp_path / "data"
    manifest = json.loads((data / "manifest.json").read_text())
    model, vocab, _ = load_model(checkpoint)
    assert manifest["special_ids"] == {"pad": vocab.pad_id, "unk": vocab.unk_id, "bos": vocab.pad_id, "eos": 0}
    assert (data / manifest["spm_model"]).read_bytes() == (folder / "source.spm").read_bytes()
    assert (data / manifest["target_spm_model"]).read_bytes() == (folder / "target.spm").read_bytes()
    # The binarized pairs are the ids the model's own tokenizer gives
    from nmt.data.dataset import ParallelDataset
    valid = ParallelDataset(data, "valid")
    lines = (data / "valid.en").read_text(encoding="utf-8").splitlines()
    targets = (data / "valid.de").read_text(encoding="utf-8").splitlines()
    encoded = tokenizer(lines[:5], text_target=targets[:5])
    assert [valid.src[i].tolist() for i in range(5)] == encoded["input_ids"]
    assert [valid.tgt[i].tolist() for i in range(5)] == encoded["labels"]

    run_nmt("train", str(data), "--init-from", str(checkpoint), "--save-dir", str(tmp_path / "tuned"),
            "--max-updates", "4", "--max-tokens", "1024", "--log-interval", "1", "--no-valid-bleu",
            "--save-interval-updates", "4", "--lr", "0.1", "--warmup", "10", "--threads", "2")
    first = json.loads((tmp_path / "tuned" / "metrics.jsonl").read_text().splitlines()[0])
    assert first["nll_loss"] < 0.6 * math.log(model.config.vocab_size)  # the parent's weights, not a fresh model
    tuned, tuned_vocab, payload = load_model(tmp_path / "tuned" / "checkpoint_last.pt")
    assert tuned.config == model.config and tuned_vocab.fingerprint == vocab.fingerprint
    assert not all(torch.equal(a, b) for a, b in zip(tuned.parameters(), model.parameters()))  # and it trained
    result = run_nmt("translate", "--checkpoint", str(tmp_path / "tuned" / "checkpoint_last.pt"),
                     input="A dog runs.\n")
    assert result.stdout.strip()


# --- what the import refuses, in one line each ---------------------------------------------------------------------

def copy_folder(source, target):
    target.mkdir()
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def refused(folder, tmp_path):
    result = run_nmt("import", "huggingface", str(folder), "--output", str(tmp_path / "out.pt"), check=False)
    assert result.returncode == 1, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out.pt").exists()
    return result.stderr


def test_another_architecture_is_refused_naming_its_config(marian, tmp_path):
    folder = copy_folder(marian("opus-mt")[0], tmp_path / "bart")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "bart"}))
    message = refused(folder, tmp_path)
    assert "config.json" in message and "'bart'" in message and "MarianMT" in message


@pytest.mark.parametrize("setting, value", [("normalize_before", True), ("normalize_embedding", True),
                                            ("static_position_embeddings", False), ("activation_function", "gelu_new"),
                                            ("decoder_ffn_dim", 128), ("decoder_attention_heads", 2)])
def test_settings_without_an_exact_counterpart_are_refused_by_name(marian, tmp_path, setting, value):
    folder = copy_folder(marian("opus-mt")[0], tmp_path / "variant")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, setting: value}))
    message = refused(folder, tmp_path)
    assert f"{setting} = {value!r}" in message and "no exact nmt counterpart" in message


@pytest.mark.parametrize("changes, needles", [
    ({"encoder_attention_heads": 0, "decoder_attention_heads": 0}, ["encoder_attention_heads = 0", "between 1"]),
    ({"encoder_attention_heads": -2, "decoder_attention_heads": -2}, ["encoder_attention_heads = -2"]),
    ({"d_model": 512}, ["d_model = 512", "the weights are 32 wide"]),
    ({"d_model": 8192, "encoder_layers": 12, "decoder_layers": 12}, ["d_model = 8192", "32 wide"]),
    ({"encoder_layers": 3}, ["encoder_layers = 3", "the weights hold 2 encoder layers"]),
    ({"dropout": "0.1"}, ["dropout is '0.1', not a number"]),
    ({"dropout": 1.5}, ["dropout = 1.5 is outside what nmt builds", "less than 1"]),
], ids=["heads-0", "heads-negative", "narrower-weights", "huge-over-narrow-weights", "layers", "dropout-text",
        "dropout-range"])
def test_a_config_that_does_not_describe_its_weights_is_named_before_a_model_is_built(marian, tmp_path, changes,
                                                                                     needles):
    folder = copy_folder(marian("opus-mt")[0], tmp_path / "variant")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))
    message = refused(folder, tmp_path)
    for needle in needles:
        assert needle in message, message
    assert "--" not in message  # a config.json key, not an option nobody gave


@pytest.mark.parametrize("length_penalty", ["NaN", "1e308", "-Infinity"])
def test_generation_settings_nmt_cannot_decode_with_are_refused(marian, tmp_path, length_penalty):
    folder = copy_folder(marian("opus-mt")[0], tmp_path / "variant")
    generation = {"num_beams": 4, "max_length": 64}
    (folder / "generation_config.json").write_text(json.dumps(generation)[:-1] + f', "length_penalty": '
                                                   f'{length_penalty}}}')
    message = refused(folder, tmp_path)
    assert "generation_config.json: length_penalty" in message and "between -10 and 10" in message


@pytest.mark.parametrize("weight_map", [["model.safetensors"], {"x": "../model.safetensors"}, {"x": 3}])
def test_a_shard_index_is_read_as_a_table_of_this_folders_files(marian, tmp_path, weight_map):
    folder = copy_folder(marian("opus-mt")[0], tmp_path / "sharded")
    (folder / "model.safetensors").rename(folder / "model-00001-of-00001.safetensors")
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    assert "model.safetensors.index.json" in refused(folder, tmp_path)


def test_missing_tokenizer_files_are_named(marian, tmp_path):
    folder = copy_folder(marian("opus-mt")[0], tmp_path / "no-spm")
    (folder / "source.spm").unlink()
    assert "source.spm" in refused(folder, tmp_path)


@pytest.mark.parametrize("name", ["model.safetensors", "source.spm", "vocab.json"])
def test_import_never_writes_over_the_model_it_reads_even_with_force(marian, tmp_path, name):
    folder = copy_folder(marian("opus-mt")[0], tmp_path / "model")
    before = (folder / name).read_bytes()
    result = run_nmt("import", "huggingface", str(folder), "--output", str(folder / name), "--force", check=False)
    assert result.returncode == 1 and "is a file of the model being imported" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and (folder / name).read_bytes() == before


def test_a_vocabulary_that_does_not_match_the_weights_is_refused(marian, tmp_path):
    folder = copy_folder(marian("opus-mt")[0], tmp_path / "other-vocab")
    table = json.loads((folder / "vocab.json").read_text())
    pieces = sorted(table, key=table.get)
    kept = pieces[:-11] + ["<pad>"]  # ten pieces fewer, <pad> still last
    (folder / "vocab.json").write_text(json.dumps({p: i for i, p in enumerate(kept)}))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "pad_token_id": len(kept) - 1,
                                                    "decoder_start_token_id": len(kept) - 1}))
    message = refused(folder, tmp_path)
    assert "vocab.json" in message and f"{len(kept)} pieces" in message and f"{len(pieces)}" in message


def test_a_weights_pickle_that_would_run_code_is_refused(marian, tmp_path):
    folder = copy_folder(marian("opus-mt")[0], tmp_path / "pickle")
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)
    (folder / "model.safetensors").unlink()
    torch.save({"model.shared.weight": Payload()}, folder / "pytorch_model.bin")
    message = refused(folder, tmp_path)
    assert "pytorch_model.bin" in message and "refused" in message
    assert not marker.exists()


# --- the same options for a model trained from scratch --------------------------------------------------------------

def test_swish_and_separate_vocabularies_train_from_scratch_and_resume_exactly(copy_corpus, tmp_path):
    """The options imports need are nmt's own too: `--separate-vocabs` learns a SentencePiece model per side,
    `--activation swish` the feed-forward of OPUS-MT; a run stopped and resumed equals the uninterrupted one."""
    prefixes = [str(copy_corpus / split) for split in ("train", "valid")]
    run_nmt("prepare", "custom", "--src", "src", "--tgt", "tgt", "--train", prefixes[0], "--valid", prefixes[1],
            "--vocab-size", "300", "--separate-vocabs", "--out", str(tmp_path / "data"))
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert manifest["target_spm_model"] == "spm.target.model" and (tmp_path / "data" / "spm.target.model").is_file()
    assert manifest["target_vocab_size"] > 0  # (the copy task's two sides are alike, and so are their models)

    def train(save_dir, updates, *more):
        return run_nmt("train", str(tmp_path / "data"), "--arch", "transformer_tiny", "--activation", "swish",
                       "--save-dir", str(tmp_path / save_dir), "--max-updates", str(updates), "--max-tokens", "512",
                       "--log-interval", "10", "--save-interval-updates", "30", "--no-valid-bleu", "--threads", "1",
                       *more)
    train("straight", 60)
    train("resumed", 30)
    train("resumed", 60, "--resume")
    assert losses(tmp_path / "resumed") == losses(tmp_path / "straight")
    model, vocab, _ = load_model(tmp_path / "straight" / "checkpoint_last.pt")
    assert model.config.activation == "swish" and model.config.target_vocab_size == vocab.target_size > 0
    assert model.embed_target_tokens is not None and not vocab.shared
    line = (copy_corpus / "test.src").read_text().splitlines()[0]
    result = run_nmt("translate", "--checkpoint", str(tmp_path / "straight" / "checkpoint_last.pt"), input=line)
    assert result.stdout.strip()


def losses(save_dir):
    records = [json.loads(line) for line in (save_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["update"]: r["loss"] for r in records if "loss" in r}


def test_the_new_options_refuse_bad_values_in_one_line(copy_corpus, trained_checkpoint, copy_data, tmp_path):
    both = run_nmt("prepare", "custom", "--src", "src", "--tgt", "tgt", "--train", str(copy_corpus / "train"),
                   "--valid", str(copy_corpus / "valid"), "--separate-vocabs", "--vocab", str(trained_checkpoint),
                   "--out", str(tmp_path / "data"), check=False)
    activation = run_nmt("train", str(copy_data), "--arch", "transformer_tiny", "--activation", "tanh",
                         "--save-dir", str(tmp_path / "run"), check=False)
    for result, words in ((both, "choose one"), (activation, "--activation must be one of relu, gelu, swish")):
        assert result.returncode != 0 and words in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "run").exists()
