"""The whole wmt14-en-de recipe, from download to binarized data, against a real HTTP server on 127.0.0.1.

The server holds small fixture archives with the real upstream file names and internal layout (tgz files with the
real member paths next to members the recipe must skip, SGML dev and test sets). The recipe under test is the real
one; only each file's published size and checksum are replaced by the fixture's, since the fixtures are not the
gigabyte originals.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import random
import tarfile

import numpy as np
import pytest

from conftest import WORDS, FileServer, run_nmt
from nmt.data.dataset import ParallelDataset
from nmt.data.prepare import PrepareOptions, prepare_recipe
from nmt.data.recipes import RECIPES
from nmt.data.sources import sgml_segments
from nmt.errors import NmtError
from nmt.vocab import Vocab

GERMAN = {word: word.upper()[::-1] + "en" for word in WORDS}  # a made-up "translation", one word for one word


def sentences(rng: random.Random, count: int) -> tuple[list[str], list[str]]:
    english = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(count)]
    return english, [" ".join(GERMAN[word] for word in line.split()) for line in english]


def text(lines) -> bytes:
    return "".join(line + "\n" for line in lines).encode()


def sgml(lines: list[str], kind: str, lang: str) -> bytes:
    """A WMT SGML file: documents of <seg>s."""
    out = [f'<{kind}set setid="newstest" srclang="any" trglang="{lang}">']
    for doc_start in range(0, len(lines), 20):
        out.append(f'<doc sysid="ref" docid="doc{doc_start}" genre="news" origlang="en">\n<p>')
        for number, line in enumerate(lines[doc_start:doc_start + 20], start=1):
            out.append(f'<seg id="{number}">{line}</seg>')
        out.append("</p>\n</doc>")
    out.append(f"</{kind}set>")
    return text(out)


def tgz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def write_wmt14_fixtures(folder) -> dict:
    """The five en-de archives under their upstream names; returns what they hold, for the assertions."""
    rng = random.Random(7)
    europarl_en, europarl_de = sentences(rng, 1500)
    crawl_en, crawl_de = sentences(rng, 800)
    crawl_lines = (text(crawl_en) + b"an empty german side\n" + b"broken \xff\xfe bytes\n",
                   text(crawl_de) + b"\n" + b"kaputt\n")  # one empty pair, one pair not UTF-8
    news_en, news_de = sentences(rng, 400)
    dev_en, dev_de = sentences(rng, 40)
    test_en, test_de = sentences(rng, 45)
    test_en[3] = "R&D  spending  rose  <b>sharply</b>?"  # kept verbatim, as sacreBLEU reads the SGML
    files = {
        "training-parallel-europarl-v7.tgz": tgz({
            "training/europarl-v7.fr-en.en": text(europarl_en[:10]),  # other pairs: skipped
            "training/europarl-v7.de-en.de": text(europarl_de),
            "training/europarl-v7.de-en.en": text(europarl_en),
            "training/europarl-v7.fr-en.fr": text(europarl_de[:10]),
        }),
        "training-parallel-commoncrawl.tgz": tgz({
            "commoncrawl.de-en.annotation": b"annotation\n" * 802,
            "commoncrawl.de-en.de": crawl_lines[1],
            "commoncrawl.de-en.en": crawl_lines[0],
        }),
        "training-parallel-nc-v9.tgz": tgz({
            "training/news-commentary-v9.de-en.de": text(news_de),
            "training/news-commentary-v9.de-en.en": text(news_en),
        }),
        "dev.tgz": tgz({
            "dev/newstest2013.en": text(dev_en),  # plain copies beside the SGML: the recipe reads the SGML
            "dev/newstest2013-src.en.sgm": sgml(dev_en, "src", "en"),
            "dev/newstest2013-ref.de.sgm": sgml(dev_de, "ref", "de"),
        }),
        "test-full.tgz": tgz({
            "test-full/newstest2014-deen-src.en.sgm": sgml(test_en, "src", "en"),
            "test-full/newstest2014-deen-ref.de.sgm": sgml(test_de, "ref", "de"),
            "test-full/newstest2014-deen-src.de.sgm": sgml(test_de, "src", "de"),
        }),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return {"train_pairs": 1500 + 802 + 400, "dev": (dev_en, dev_de), "test": (test_en, test_de),
            "europarl": (europarl_en, europarl_de)}


def fixture_recipe(folder, recipe_name="wmt14-en-de"):
    """The real recipe with the fixtures' sizes and checksums in place of the originals'."""
    recipe = RECIPES[recipe_name]
    files = {}
    for name, remote in recipe.files.items():
        data = (folder / name).read_bytes()
        files[name] = dataclasses.replace(remote, sha256=hashlib.sha256(data).hexdigest(), size=len(data), md5=None)
    return dataclasses.replace(recipe, files=files)


@pytest.fixture
def wmt14(file_server):
    return file_server, write_wmt14_fixtures(file_server.root), fixture_recipe(file_server.root)


OPTIONS = dict(vocab_size=400, workers=1)


def test_the_recipe_runs_from_download_to_binarized_data_through_a_dropped_connection(wmt14, tmp_path):
    server, held, recipe = wmt14
    assert recipe.splits["train"][0].src.member == "training/europarl-v7.de-en.en"  # the real layout
    FileServer.drop_once = {"/training-parallel-europarl-v7.tgz"}
    prepared = prepare_recipe(recipe, tmp_path / "data", PrepareOptions(**OPTIONS), mirror=server.url)
    manifest = prepared.manifest
    ranges = [r for path, r in FileServer.requests if path == "/training-parallel-europarl-v7.tgz" and r]
    assert ranges and ranges[0] != "bytes=0-", "the dropped download was resumed with a Range request"

    report = manifest["cleaning"]["train"]
    assert report["dropped"]["invalid_utf8"] == 1 and report["dropped"]["empty"] == 1
    assert report["kept"] + sum(report["dropped"].values()) == held["train_pairs"]
    assert manifest["splits"]["train"]["sentences"] == report["kept"] > 2000
    assert manifest["corpora"]["train"] == ["europarl-v7", "commoncrawl", "news-commentary-v9"]

    out = tmp_path / "data"
    for split, (english, german) in (("valid", held["dev"]), ("test", held["test"])):
        assert (out / f"{split}.en").read_text().splitlines() == english  # verbatim, never filtered
        assert (out / f"{split}.de").read_text().splitlines() == german
        assert manifest["splits"][split]["sentences"] == len(english)
    train = ParallelDataset(out, "train")
    vocab = Vocab.from_file(out / "spm.model")
    europarl_en, europarl_de = held["europarl"]
    assert vocab.decode([train.src[0][:-1].tolist()])[0] == europarl_en[0]  # corpora in the recipe's order
    assert vocab.decode([train.tgt[0][:-1].tolist()])[0] == europarl_de[0]
    assert isinstance(train.src.tokens, np.memmap)
    assert manifest["sources"]["dev.tgz"]["sha256"] == hashlib.sha256((server.root / "dev.tgz").read_bytes()).hexdigest()
    assert not list(out.glob("**/*.part")) and not list(out.glob("**/*.tmp"))


def test_a_second_run_does_nothing(wmt14, tmp_path):
    server, _, recipe = wmt14
    out = tmp_path / "data"
    first = prepare_recipe(recipe, out, PrepareOptions(**OPTIONS), mirror=server.url)
    assert all(step["status"] == "ran" for step in first.steps.values())
    before = {path: path.stat().st_mtime_ns for path in out.rglob("*")}
    requests = len(FileServer.requests)
    second = prepare_recipe(recipe, out, PrepareOptions(**OPTIONS), mirror=server.url)
    assert {step["status"] for step in second.steps.values()} == {"skipped"}
    assert len(FileServer.requests) == requests, "nothing downloaded again"
    assert {path: path.stat().st_mtime_ns for path in out.rglob("*")} == before, "no file touched"
    assert second.manifest == first.manifest


def test_a_changed_vocab_size_redoes_sentencepiece_and_binarization_only(wmt14, tmp_path):
    server, _, recipe = wmt14
    out = tmp_path / "data"
    prepare_recipe(recipe, out, PrepareOptions(**OPTIONS), mirror=server.url)
    archives = {path: path.stat().st_mtime_ns for path in (out / "work" / "extracted").iterdir()}
    changed = prepare_recipe(recipe, out, PrepareOptions(**{**OPTIONS, "vocab_size": 500}), mirror=server.url)
    ran = {name for name, step in changed.steps.items() if step["status"] == "ran"}
    assert ran == {"spm", "binarize/train", "binarize/valid", "binarize/test"}
    assert {path: path.stat().st_mtime_ns for path in (out / "work" / "extracted").iterdir()} == archives
    assert changed.manifest["vocab_size"] > 400 and changed.manifest["spm"]["vocab_size"] == 500


def test_a_checksum_mismatch_stops_with_a_clear_error_and_keeps_no_corrupt_file(wmt14, tmp_path):
    server, _, recipe = wmt14
    name = "training-parallel-nc-v9.tgz"
    wrong = dataclasses.replace(recipe, files={**recipe.files,
                                               name: dataclasses.replace(recipe.files[name], sha256="0" * 64)})
    with pytest.raises(NmtError, match=f"{name} from .*SHA-256"):
        prepare_recipe(wrong, tmp_path / "data", PrepareOptions(**OPTIONS), mirror=server.url)
    downloads = tmp_path / "data" / "downloads"
    assert not (downloads / name).exists() and not (downloads / f"{name}.part").exists()
    assert not (tmp_path / "data" / "manifest.json").exists()


def test_a_damaged_output_is_rebuilt_by_the_step_that_made_it(wmt14, tmp_path):
    server, _, recipe = wmt14
    out = tmp_path / "data"
    first = prepare_recipe(recipe, out, PrepareOptions(**OPTIONS), mirror=server.url)
    (out / "train.de.bin").unlink()
    again = prepare_recipe(recipe, out, PrepareOptions(**OPTIONS), mirror=server.url)
    assert {name for name, step in again.steps.items() if step["status"] == "ran"} == {"binarize/train"}
    assert again.manifest["splits"]["train"] == first.manifest["splits"]["train"]


def test_two_workers_give_the_same_data_as_one(wmt14, tmp_path, monkeypatch):
    server, _, recipe = wmt14
    import nmt.data.corpus_steps as corpus_steps
    monkeypatch.setattr(corpus_steps, "SHARD_LINES", 500)  # several shards from a small corpus
    one = prepare_recipe(recipe, tmp_path / "one", PrepareOptions(**OPTIONS), mirror=server.url)
    two = prepare_recipe(recipe, tmp_path / "two", PrepareOptions(**{**OPTIONS, "workers": 2}), mirror=server.url)
    assert one.manifest["splits"] == two.manifest["splits"]
    for name in ("train.en.bin", "train.en.idx", "train.de.bin", "train.de.idx"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_sides_of_different_lengths_in_an_archive_name_the_members(wmt14, tmp_path):
    server, _, _ = wmt14
    (server.root / "training-parallel-nc-v9.tgz").write_bytes(tgz({
        "training/news-commentary-v9.de-en.de": b"eins\nzwei\n",
        "training/news-commentary-v9.de-en.en": b"one\ntwo\nthree\n"}))
    recipe = fixture_recipe(server.root)
    with pytest.raises(NmtError, match=r"news-commentary-v9.de-en.en has 3 lines but .*de-en.de has 2"):
        prepare_recipe(recipe, tmp_path / "data", PrepareOptions(**OPTIONS), mirror=server.url)


def test_sgml_segments_are_read_as_sacrebleu_reads_them():
    lines = [b'<doc docid="a">\n', b'<seg id="1"> A &amp; B </seg>\n', b"<p>\n", b'<seg id="2"></seg>\n']
    assert list(sgml_segments(lines, "x.sgm")) == [b"A &amp; B", b""]


def test_the_command_line_prepares_from_a_mirror_url_without_verification(wmt14, tmp_path):
    server, held, _ = wmt14
    result = run_nmt("prepare", "wmt14-en-de", "--mirror", server.url, "--no-verify", "--vocab-size", "400",
                     "--workers", "2", "--out", str(tmp_path / "data"), cwd=tmp_path)
    assert "--no-verify" in result.stderr and "prepared" in result.stderr
    assert (tmp_path / "data" / "test.de").read_text().splitlines() == held["test"][1]
    again = run_nmt("prepare", "wmt14-en-de", "--mirror", server.url, "--no-verify", "--vocab-size", "400",
                    "--out", str(tmp_path / "data"), cwd=tmp_path)
    assert "up to date" in again.stderr


def test_the_list_shows_the_wmt14_recipes_with_sizes_and_sources():
    listing = run_nmt("prepare", "--list").stdout
    for name in ("wmt14-en-de", "wmt14-en-fr", "multi30k-en-de"):
        assert name in listing
    assert "1,656.4 MB" in listing and "www.statmt.org" in listing


def test_the_en_fr_recipe_reads_un_and_the_gzipped_giga_fren_members_of_a_plain_tar(file_server, tmp_path):
    rng = random.Random(3)
    root = file_server.root
    corpora = {}
    for name, archive, stem in (("europarl-v7", "training-parallel-europarl-v7.tgz", "training/europarl-v7.fr-en"),
                                ("commoncrawl", "training-parallel-commoncrawl.tgz", "commoncrawl.fr-en"),
                                ("un", "training-parallel-un.tgz", "un/undoc.2000.fr-en"),
                                ("news-commentary-v9", "training-parallel-nc-v9.tgz",
                                 "training/news-commentary-v9.fr-en")):
        english, french = sentences(rng, 300)
        corpora[name] = english
        (root / archive).write_bytes(tgz({f"{stem}.en": text(english), f"{stem}.fr": text(french)}))
    english, french = sentences(rng, 300)
    corpora["giga-fren"] = english
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:  # an uncompressed tar of gzipped text, as upstream
        for lang, lines in (("en", english), ("fr", french)):
            data = gzip.compress(text(lines))
            info = tarfile.TarInfo(f"giga-fren.release2.fixed.{lang}.gz")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    (root / "training-giga-fren.tar").write_bytes(buffer.getvalue())
    dev_en, dev_fr = sentences(rng, 30)
    test_en, test_fr = sentences(rng, 30)
    (root / "dev.tgz").write_bytes(tgz({"dev/newstest2013-src.en.sgm": sgml(dev_en, "src", "en"),
                                        "dev/newstest2013-ref.fr.sgm": sgml(dev_fr, "ref", "fr")}))
    (root / "test-full.tgz").write_bytes(tgz({"test-full/newstest2014-fren-src.en.sgm": sgml(test_en, "src", "en"),
                                              "test-full/newstest2014-fren-ref.fr.sgm": sgml(test_fr, "ref", "fr")}))

    manifest = prepare_recipe(fixture_recipe(root, "wmt14-en-fr"), tmp_path / "data", PrepareOptions(**OPTIONS),
                              mirror=file_server.url).manifest
    assert manifest["corpora"]["train"] == ["europarl-v7", "commoncrawl", "un", "news-commentary-v9", "giga-fren"]
    report = manifest["cleaning"]["train"]
    assert report["kept"] + sum(report["dropped"].values()) == 1500
    train = ParallelDataset(tmp_path / "data", "train")
    vocab = Vocab.from_file(tmp_path / "data" / "spm.model")
    assert vocab.decode([train.src[len(train) - 1][:-1].tolist()])[0] in corpora["giga-fren"]
    assert (tmp_path / "data" / "test.fr").read_text().splitlines() == test_fr
