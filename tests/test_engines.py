"""The engine seam: the search a command runs (given, else stored by `nmt tune`, else the paper's), what an engine
refuses before any model loads, and the input side both engines share."""

import shutil

import pytest

from nmt.engines.base import encode_lines
from nmt.vocab import TargetLanguage
from nmt.engines.spec import check_engine_options, resolve_search
from nmt.errors import NmtError
from nmt.tune import store_settings
from nmt.vocab import Vocab

TUNED = {"beam": 6, "lenpen": 1.4, "lenpen_style": "gnmt", "valid_bleu": 50.0,
         "length_style": {"beam": 6, "lenpen": 0.8, "valid_bleu": 49.0}, "tuned_on": "valid"}


@pytest.fixture(scope="module")
def tuned_checkpoint(trained_checkpoint, tmp_path_factory):
    path = tmp_path_factory.mktemp("tuned") / "tuned.pt"
    shutil.copy(trained_checkpoint, path)
    store_settings(path, TUNED)
    return path


def test_without_options_the_stored_settings_decide_and_say_who_chose_them(tuned_checkpoint):
    resolved = resolve_search([tuned_checkpoint], "torch")
    assert (resolved.search.beam, resolved.search.lenpen, resolved.search.lenpen_style) == (6, 1.4, "gnmt")
    assert resolved.stored_by == "the search settings `nmt tune` stored"


def test_options_override_what_is_stored_one_by_one(tuned_checkpoint):
    resolved = resolve_search([tuned_checkpoint], "torch", beam=2)
    assert (resolved.search.beam, resolved.search.lenpen) == (2, 1.4)
    everything = resolve_search([tuned_checkpoint], "torch", beam=2, lenpen=0.6, lenpen_style="length")
    assert (everything.search.beam, everything.search.lenpen, everything.search.lenpen_style) == (2, 0.6, "length")
    assert everything.stored_by == ""  # nothing stored was used, so nothing to credit


def test_the_papers_settings_where_nothing_is_stored_and_for_an_ensemble(trained_checkpoint, tuned_checkpoint,
                                                                         tmp_path):
    plain = resolve_search([trained_checkpoint], "torch")
    assert (plain.search.beam, plain.search.lenpen, plain.search.lenpen_style, plain.stored_by) == (4, 0.6, "gnmt", "")
    ensemble = resolve_search([tuned_checkpoint, tuned_checkpoint], "torch")
    assert ensemble.search.beam == 4  # members may disagree: no member's settings are taken
    missing = resolve_search([tmp_path / "nowhere.pt"], "torch")  # the load reports it, not the settings
    assert missing.search.beam == 4


def test_ctranslate2_runs_the_length_style_and_says_so_when_told_another(trained_checkpoint):
    quiet = resolve_search([trained_checkpoint], "ctranslate2")
    assert quiet.search.lenpen_style == "length" and not quiet.style_replaced
    told = resolve_search([trained_checkpoint], "ctranslate2", lenpen_style="gnmt")
    assert told.search.lenpen_style == "length" and told.style_replaced and told.stored_style == "gnmt"


def test_search_options_are_checked_where_they_are_resolved(trained_checkpoint):
    with pytest.raises(NmtError, match="--beam"):
        resolve_search([trained_checkpoint], "torch", beam=0)


def test_what_ctranslate2_cannot_do_is_refused_by_name_before_a_model_loads():
    check_engine_options("ctranslate2", prefix_file=None, print_alignment=False)
    with pytest.raises(NmtError, match=r"^--prefix-file, --glossary: not with --engine ctranslate2 \(CTranslate2 has "
                                       r"no constrained search\)$"):
        check_engine_options("ctranslate2", prefix_file="p.txt", print_alignment=False, glossary="g.tsv")
    check_engine_options("torch", prefix_file="p.txt", glossary="g.tsv")
    with pytest.raises(NmtError, match="--engine must be torch or ctranslate2, got 'onnx'"):
        check_engine_options("onnx")


def test_both_engines_see_the_same_normalized_encoded_and_cut_lines(copy_data):
    vocab = Vocab.from_file(copy_data / "spm.model")
    long_line = " ".join(["red dog"] * 40)
    encoded = encode_lines(["  a red  dog ", "", long_line], vocab, TargetLanguage([], None), max_source_tokens=10)
    assert encoded.todo == [0, 2]
    assert encoded.texts[0] == "a red dog" and encoded.texts[1] == ""
    assert encoded.ids[0] == vocab.encode_source(["a red dog"])[0]
    assert len(encoded.ids[1]) == 9 and encoded.truncated == 1  # room left for eos
    assert [r[0].text for r in encoded.results] == ["", "", ""]  # filled by the engine; empty lines stay empty
