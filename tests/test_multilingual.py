"""One model for several pairs: a dataset of several pairs (target-language tokens, a vocabulary balanced by
language, each pair's rows), sampling by temperature, per-pair validation, and translation by --target-language.

The task: English-like words copied as they are (`en-cp`), in capitals (`en-up`), and back from capitals
(`up-en`), so that only the language token says which output is wanted, and a tiny model learns them in seconds."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from conftest import SHARED_MULTI30K, WORDS, requires_multi30k, run_nmt

from nmt.data.binary import load_manifest
from nmt.data.dataset import ParallelDataset
from nmt.train.pairs import Pair, epoch_sentences, sampling_shares
from nmt.vocab import Vocab

PAIRS = {("en", "cp"): (str, str), ("en", "up"): (str, str.upper), ("up", "en"): (str.upper, str)}


def write_pairs_corpus(folder, sizes=(("train", 2000), ("valid", 60), ("test", 40)), seed=0):
    """PREFIX.SRC-TGT.SRC and PREFIX.SRC-TGT.TGT of each pair, as fairseq names the files of several pairs."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in sizes:
        for (src, tgt), (source_form, target_form) in PAIRS.items():
            lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6))) for _ in range(count)]
            for lang, form in ((src, source_form), (tgt, target_form)):
                (folder / f"{split}.{src}-{tgt}.{lang}").write_text("\n".join(map(form, lines)) + "\n",
                                                                     encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def pairs_data(tmp_path_factory):
    corpus = write_pairs_corpus(tmp_path_factory.mktemp("pairs-corpus"))
    out = tmp_path_factory.mktemp("pairs-data")
    result = run_nmt("prepare", "custom", "--pairs", "en-cp,en-up,up-en", "--train", str(corpus / "train"),
                     "--valid", str(corpus / "valid"), "--test", str(corpus / "test"), "--out", str(out),
                     "--vocab-size", "600", "--max-ratio", "4", "--workers", "1")
    return out, corpus, result.stderr


@pytest.fixture(scope="module")
def pairs_run(pairs_data, tmp_path_factory):
    data, _, _ = pairs_data
    save_dir = tmp_path_factory.mktemp("pairs-run")
    run_nmt("train", str(data), "--arch", "transformer_tiny", "--save-dir", str(save_dir), "--max-updates", "400",
            "--save-interval-updates", "200", "--threads", "2", "--max-tokens", "1024")
    return save_dir


def test_several_pairs_make_one_dataset_whose_sources_start_with_their_target_language(pairs_data):
    data, corpus, log = pairs_data
    manifest = load_manifest(data)
    assert (manifest["src"], manifest["tgt"]) == ("mul", "mul")  # several languages on each side
    assert [(p["src"], p["tgt"], p["token"]) for p in manifest["pairs"]] == [
        ("en", "cp", ">>cp<<"), ("en", "up", ">>up<<"), ("up", "en", ">>en<<")]
    assert "en->cp (>>cp<<): train 2,000, valid 60, test 40" in log
    vocab = Vocab.from_folder(data, manifest)
    tokens = vocab.source.language_ids
    assert set(tokens) == {">>cp<<", ">>up<<", ">>en<<"}  # pieces of their own
    for split in ("train", "valid", "test"):
        dataset = ParallelDataset(data, split, manifest)
        for pair in manifest["pairs"]:
            start, end = pair["rows"][split]
            assert {int(dataset.src[row][0]) for row in range(start, end)} == {tokens[pair["token"]]}
            assert tokens[pair["token"]] not in {int(t) for row in range(start, end) for t in dataset.tgt[row]}
    # each pair's raw valid/test files, to translate and score one direction
    up = manifest["pairs"][1]
    assert (data / up["text"]["test"]["tgt"]).read_text() == (corpus / "test.en-up.up").read_text()
    assert (data / "train.src.bin").is_file() and (data / "train.tgt.bin").is_file()  # `mul` on both sides


def test_the_vocabulary_sample_gives_every_language_an_equal_share(pairs_data):
    """English is on a side of every pair: taken as it comes it would be half the sample; balanced, a third."""
    data, _, _ = pairs_data
    stamp = json.loads((data / "work" / "stamps" / "spm.json").read_text())
    # cp and up: 2,000 each, as many as a language has here; en: 2,000 too, a third from each of its 3 sides
    assert stamp["result"]["sample_sentences"] == 2000 + 2000 + 3 * 667
    sample_by_language = stamp["params"]["sample_by"]
    assert sample_by_language.startswith("language")


def test_subword_sampling_keeps_each_sources_language_token(pairs_data):
    from nmt.train.subword import SampledSegmentation

    data, _, _ = pairs_data
    manifest = load_manifest(data)
    dataset, vocab = ParallelDataset(data, "train", manifest), Vocab.from_folder(data, manifest)
    rows = np.arange(1990, 2010)  # the end of en-cp and the start of en-up
    batch = SampledSegmentation(dataset, vocab, alpha=0.3, seed=1).collate(rows)
    assert batch.src_tokens[:, 0].tolist() == [int(dataset.src[row][0]) for row in rows]


def test_temperature_sampling_flattens_the_pairs_shares_and_is_the_same_for_an_epoch():
    pairs = [Pair("en", "de", ">>de<<", {"train": (0, 9000)}), Pair("en", "cs", ">>cs<<", {"train": (9000, 10000)})]
    assert epoch_sentences(pairs, 1.0, seed=1, epoch=1) is None  # T = 1: every sentence once, as one pair
    assert sampling_shares([9000, 1000], 1.0) == pytest.approx([0.9, 0.1])
    assert sampling_shares([9000, 1000], 1e9) == pytest.approx([0.5, 0.5], abs=1e-6)
    rows = epoch_sentences(pairs, 5.0, seed=1, epoch=1)
    shares = sampling_shares([9000, 1000], 5.0)
    small = rows[rows >= 9000]
    assert len(rows) == 10_000 and len(small) == round(shares[1] * 10_000)  # about 39% instead of 10%
    assert set(np.unique(small)) == set(range(9000, 10000))  # every small-pair sentence at least once, some twice
    assert np.array_equal(rows, epoch_sentences(pairs, 5.0, seed=1, epoch=1))  # what a resumed run gets back
    assert not np.array_equal(rows, epoch_sentences(pairs, 5.0, seed=1, epoch=2))  # another draw of the large pair


def test_training_reports_each_pair_and_translates_into_the_language_asked_for(pairs_run, pairs_data):
    records = [json.loads(line) for line in (pairs_run / "metrics.jsonl").read_text().splitlines()]
    validations = [r for r in records if "valid_loss" in r]
    last = validations[-1]
    assert set(last["pairs"]) == {"en-cp", "en-up", "up-en"}
    assert last["valid_loss"] == pytest.approx(sum(p["valid_loss"] for p in last["pairs"].values()) / 3, abs=1e-3)
    assert last["valid_bleu"] == pytest.approx(sum(p["valid_bleu"] for p in last["pairs"].values()) / 3, abs=0.01)
    checkpoint = str(pairs_run / "checkpoint_last.pt")
    outputs = {code: run_nmt("translate", "--checkpoint", checkpoint, "--target-language", code,
                             input=text).stdout.splitlines()
               for code, text in (("cp", "red dog runs\nthe big ball\n"), ("up", "red dog runs\nthe big ball\n"),
                                  ("en", "RED DOG RUNS\nTHE BIG BALL\n"))}
    assert outputs["cp"] == ["red dog runs", "the big ball"]
    assert outputs["up"] == ["RED DOG RUNS", "THE BIG BALL"]
    assert outputs["en"] == ["red dog runs", "the big ball"]
    # a line may carry its own token instead
    mixed = run_nmt("translate", "--checkpoint", checkpoint, input=">>up<< a cat\n>>cp<< a cat\n").stdout
    assert mixed.splitlines() == ["A CAT", "a cat"]


def test_the_report_shows_each_pair(pairs_run):
    pytest.importorskip("matplotlib")
    run_nmt("report", str(pairs_run))
    report = (pairs_run / "report" / "report.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith(("| en-cp |", "| en-up |", "| up-en |"))]
    assert "## Pairs" in report and len(rows) == 3
    assert all(len(row.split("|")) == 7 and " - " not in row for row in rows)  # loss and BLEU, best and last


def test_both_exports_keep_the_languages(pairs_run, tmp_path):
    """CTranslate2's export carries the pairs and translates by --target-language as torch does; the Hugging Face
    export's tokenizer reads the language token as the one piece nmt's vocabulary makes of it, and generates."""
    checkpoint = pairs_run / "checkpoint_last.pt"
    pytest.importorskip("ctranslate2")
    run_nmt("export", "ctranslate2", str(checkpoint), str(tmp_path / "ct2"))
    assert json.loads((tmp_path / "ct2" / "nmt.json").read_text())["pairs"] == [["en", "cp"], ["en", "up"],
                                                                               ["up", "en"]]
    translated = run_nmt("translate", "--engine", "ctranslate2", "--checkpoint", str(tmp_path / "ct2"),
                         "--target-language", "up", input="red dog runs\n")
    assert translated.stdout.strip() == "RED DOG RUNS"

    transformers = pytest.importorskip("transformers")
    import torch

    from nmt.checkpoint import load_model
    run_nmt("export", "huggingface", str(checkpoint), str(tmp_path / "hf"))
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(str(tmp_path / "hf")).eval()
    _, vocab, _ = load_model(checkpoint)
    batch = tokenizer([">>up<< red dog runs"], return_tensors="pt")
    assert batch["input_ids"][0].tolist() == vocab.encode_source([">>up<< red dog runs"])[0] + [vocab.eos_id]
    with torch.no_grad():
        generated = model.generate(**batch, num_beams=1, max_length=20)
    assert tokenizer.batch_decode(generated, skip_special_tokens=True) == ["RED DOG RUNS"]


@pytest.mark.parametrize("given, message", [
    ([], "this model is multilingual: start each text with its output language's token, e.g. >>cp<< (one of cp, en, "
         "up)"),
    (["--target-language", "fr"], "--target-language fr: not a language of this model (it has cp, en, up)"),
])
def test_a_missing_or_unknown_language_is_one_line_naming_the_models_languages(pairs_run, given, message):
    result = run_nmt("translate", "--checkpoint", str(pairs_run / "checkpoint_last.pt"), *given, input="red dog\n",
                     check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith(f"error: {message}"), result.stderr


@pytest.mark.parametrize("pairs, message", [
    ("en-cp,en_up", "--pairs: 'en_up' is not SRC-TGT"),
    ("en-en", "--pairs: en-en translates a language into itself"),
    ("en-cp,en-cp", "--pairs: en-cp is named twice"),
    ("en-cp,en-xx", "en-xx.en: file not found"),
])
def test_pairs_that_cannot_make_a_dataset_are_one_line(pairs_data, tmp_path, pairs, message):
    _, corpus, _ = pairs_data
    result = run_nmt("prepare", "custom", "--pairs", pairs, "--train", str(corpus / "train"), "--valid",
                     str(corpus / "valid"), "--out", str(tmp_path / "out"), check=False)
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_vocabulary_without_the_language_tokens_is_refused(pairs_data, trained_checkpoint, tmp_path):
    """--vocab of a bilingual model has no >>cp<< piece: its sources could not start with one."""
    _, corpus, _ = pairs_data
    result = run_nmt("prepare", "custom", "--pairs", "en-cp,en-up,up-en", "--train", str(corpus / "train"), "--valid",
                     str(corpus / "valid"), "--out", str(tmp_path / "out"), "--vocab", str(trained_checkpoint),
                     check=False)
    assert result.returncode == 1, result.stderr
    assert "has no piece for the language tokens >>cp<<, >>en<<, >>up<<" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out" / "manifest.json").exists()


def test_recipes_that_clean_differently_are_not_one_dataset(tmp_path):
    result = run_nmt("prepare", "multi30k-en-de", "wmt14-en-fr", "--out", str(tmp_path / "x"), check=False)
    assert result.returncode == 1 and "clean their corpora differently" in result.stderr
    assert not (tmp_path / "x").exists()


@requires_multi30k
def test_multi30k_pairs_prepare_as_one_dataset_from_the_mirror(tmp_path):
    out = tmp_path / "m30k"
    result = run_nmt("prepare", "multi30k-en-de", "multi30k-en-fr", "--out", str(out), "--mirror",
                     str(SHARED_MULTI30K), "--vocab-size", "2000")
    manifest = load_manifest(out)
    assert [p["token"] for p in manifest["pairs"]] == [">>de<<", ">>fr<<"]
    assert [p["rows"]["valid"] for p in manifest["pairs"]] == [[0, 1014], [1014, 2028]]
    assert "en->fr (>>fr<<): train 29,000, valid 1,014, test 1,000" in result.stderr
    assert (out / "test.en-fr.fr").read_text(encoding="utf-8").startswith("Un homme avec un chapeau orange")


# --- one server for several models ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_models(pairs_run, trained_checkpoint):
    """The multilingual model (en->cp, en->up, up->en) and a bilingual one (src->tgt, the copy task) side by side."""
    from test_serve import KEY, ServerProcess

    server = ServerProcess(pairs_run / "checkpoint_last.pt", "--checkpoint", str(trained_checkpoint),
                           env={"NMT_API_KEY": KEY})
    yield server
    assert server.stop() == 0, server.log


def test_languages_lists_every_pair_and_the_model_that_serves_it(two_models, pairs_run, trained_checkpoint):
    import httpx

    listed = {entry["code"]: entry for entry in httpx.get(two_models.url + "/languages", timeout=10).json()}
    assert {code: entry["targets"] for code, entry in listed.items()} == {
        "en": ["cp", "up"], "src": ["tgt"], "up": ["cp", "en"], "cp": [], "tgt": []}
    multilingual, bilingual = str(pairs_run / "checkpoint_last.pt"), str(trained_checkpoint)  # named by path:
    assert listed["en"]["served_by"] == {"cp": multilingual, "up": multilingual}  # both are checkpoint_last.pt
    assert listed["src"]["served_by"] == {"tgt": bilingual}
    assert listed["up"]["served_by"]["cp"] == f"{multilingual} + {multilingual} (through en)"
    assert "up->cp: " in two_models.log and "(through en)" in two_models.log  # the start-up log says it too


def test_a_libretranslate_client_gets_every_listed_pair_and_a_pivot(two_models, pairs_run, trained_checkpoint):
    import httpx

    from test_serve import KEY
    libretranslatepy = pytest.importorskip("libretranslatepy")
    client = libretranslatepy.LibreTranslateAPI(two_models.url, api_key=KEY)
    asked = {("en", "cp"): "red dog runs", ("en", "up"): "red dog runs", ("up", "en"): "RED DOG RUNS",
             ("up", "cp"): "RED DOG RUNS", ("src", "tgt"): "red dog runs"}
    listed = [(entry["code"], target) for entry in client.languages() for target in entry["targets"]]
    assert sorted(listed) == sorted(asked)
    answers = {pair: client.translate(text, *pair) for pair, text in asked.items()}
    assert answers == {("en", "cp"): "red dog runs", ("en", "up"): "RED DOG RUNS", ("up", "en"): "red dog runs",
                       ("up", "cp"): "red dog runs", ("src", "tgt"): "red dog runs"}
    pivoted = httpx.post(two_models.url + "/translate", json={"q": "BIG BALL", "source": "up", "target": "cp",
                                                              "api_key": KEY}, timeout=60).json()
    assert pivoted == {"translatedText": "big ball", "pivot": "en"}
    assert two_models.metric("nmt_pivoted_requests_total", pivot="en", source="up", target="cp") == 2
    for model in (pairs_run / "checkpoint_last.pt", trained_checkpoint):  # each model's own count
        assert two_models.metric("nmt_model_translated_sentences_total", model=str(model)) > 0


@pytest.mark.parametrize("body, message", [
    ({"q": "red dog", "source": "cp", "target": "en"}, "cp->en is not served: this server translates en->cp, "
                                                       "en->up, src->tgt, up->cp, up->en"),
    ({"q": "red dog", "source": "auto", "target": "en"}, None),  # one source reaches en: up, chosen
    ({"q": "red dog", "source": "auto", "target": "cp"}, "name the source language"),
])
def test_a_pair_no_model_serves_is_a_400_naming_those_served(two_models, body, message):
    import httpx

    from test_serve import KEY
    answer = httpx.post(two_models.url + "/translate", json={**body, "api_key": KEY}, timeout=60)
    if message is None:
        assert answer.status_code == 200 and answer.json()["detectedLanguage"]["language"] == "up"
    else:
        assert answer.status_code == 400 and message in answer.json()["error"], answer.text


def test_concurrent_clients_on_different_pairs_get_what_translate_gives(two_models, pairs_run, trained_checkpoint):
    import concurrent.futures

    import httpx

    from test_serve import KEY
    sentences = ["red dog runs near the water", "a small cat plays with the ball", "the big man", "green bike"]
    asked = [("en", "cp", sentences), ("en", "up", sentences), ("up", "en", [s.upper() for s in sentences]),
             ("src", "tgt", sentences)]
    expected = {}
    for source, target, texts in asked:
        options = ["--checkpoint", str(trained_checkpoint)] if source == "src" else \
            ["--checkpoint", str(pairs_run / "checkpoint_last.pt"), "--target-language", target]
        expected[source, target] = run_nmt("translate", *options, input="\n".join(texts) + "\n").stdout.splitlines()

    def ask(source, target, text):
        answer = httpx.post(two_models.url + "/v1/translate", json={"text": text, "source": source, "target": target},
                            headers={"X-API-Key": KEY}, timeout=60)
        assert answer.status_code == 200, answer.text
        return answer.json()["translations"][0]["text"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = {(source, target, n): pool.submit(ask, source, target, text)
                   for _ in range(2) for source, target, texts in asked for n, text in enumerate(texts)}
    for (source, target, n), future in futures.items():
        assert future.result() == expected[source, target][n], (source, target, n)


def test_a_model_dir_with_a_non_checkpoint_is_one_line(pairs_run, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "a.pt").write_bytes((pairs_run / "checkpoint_last.pt").read_bytes())
    (folder / "notes.txt").write_text("which model is which\n")
    result = run_nmt("serve", "--model-dir", str(folder), "--port", "1", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: --model-dir {folder}: notes.txt is not checkpoints (.pt files); keep only the models to serve there"]


def test_the_page_offers_the_pairs_and_translates_the_one_chosen(two_models):
    """The page's menus come from /languages; a pivoted target is marked, and translating it shows the result."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from test_serve import KEY, chromium_driver
    driver = chromium_driver()
    try:
        driver.get(two_models.url + "/")
        WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "languages").is_displayed())
        sources = Select(driver.find_element(By.ID, "from"))
        assert [o.get_attribute("value") for o in sources.options] == ["en", "src", "up"]
        sources.select_by_value("up")
        targets = Select(driver.find_element(By.ID, "to"))
        assert [(o.get_attribute("value"), o.text) for o in targets.options] == [
            ("cp", "cp (through English)"), ("en", "English")]
        targets.select_by_value("cp")
        driver.find_element(By.ID, "key").send_keys(KEY)
        driver.execute_script("document.getElementById('source').value = arguments[0]", "RED DOG RUNS")
        driver.find_element(By.ID, "translate").click()
        WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "translation").text)
        assert driver.find_element(By.ID, "translation").text == "red dog runs"
        assert driver.find_element(By.ID, "status").text == ""  # no error: the pivot was asked without attention
    finally:
        driver.quit()
