"""Corpus recipes as data: where each file comes from, its checksum, and which files make each split."""

from __future__ import annotations

from dataclasses import dataclass, field

from nmt.data.download import RemoteFile
from nmt.data.sources import Source
from nmt.data.text import CleaningOptions
from nmt.errors import NmtError


@dataclass(frozen=True)
class Corpus:
    """One parallel corpus of a split: its name and where each side's lines come from. In a dataset of several
    language pairs, its `pair` (source, target) and the token its source lines start with (`tag`, `>>de<<`)."""
    name: str
    src: Source
    tgt: Source
    pair: tuple[str, str] | None = None
    tag: str = ""


@dataclass(frozen=True)
class Recipe:
    name: str
    src: str
    tgt: str
    description: str
    files: dict[str, RemoteFile]  # by upstream file name (also the name under a --mirror)
    splits: dict[str, list[Corpus]]  # "train", "valid", "test" -> the corpora concatenated in that order
    vocab_size: int = 8000
    cleaning: CleaningOptions = field(default_factory=CleaningOptions)

    def download_size(self) -> tuple[int, int]:
        """(bytes published, files whose size is not published)."""
        return (sum(f.size or 0 for f in self.files.values()), sum(f.size is None for f in self.files.values()))


# Multi30k task 1 (Elliott et al. 2016), pinned to one commit of https://github.com/multi30k/dataset.
_MULTI30K_COMMIT = "a3d2e0d26b56f3846f66a952536ffed4e401d05a"
_MULTI30K_URL = f"https://raw.githubusercontent.com/multi30k/dataset/{_MULTI30K_COMMIT}/data/task1/raw"
_MULTI30K_FILES = {  # name: (bytes, sha256)
    "train.en.gz": (568929, "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f"),
    "train.de.gz": (637044, "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6"),
    "train.fr.gz": (604242, "622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c"),
    "train.cs.gz": (593827, "a65adb8b32e3bc664f21ecba7a6e7f6950fd1f405e135f7c312faabdb6255077"),
    "val.en.gz": (21650, "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28"),
    "val.de.gz": (24681, "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a"),
    "val.fr.gz": (23001, "ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9"),
    "val.cs.gz": (22096, "b63226e05c4bd5dd6a42897d74b86a1b9d2c31498252c572b1ea7f7996927fcc"),
    "test_2016_flickr.en.gz": (21077, "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9"),
    "test_2016_flickr.de.gz": (22890, "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8"),
    "test_2016_flickr.fr.gz": (22310, "6d326e188d259fb1d04ac19eae3af956559b3a0b93d7635e56c90987c40c8b90"),
    "test_2016_flickr.cs.gz": (22572, "200a4a74cc9560f051924abb9803be008d1908d77f747e9141aeb86dfd2797f1"),
}


def _multi30k(src: str, tgt: str) -> Recipe:
    files = {}
    splits = {}
    for split, stem in (("train", "train"), ("valid", "val"), ("test", "test_2016_flickr")):
        names = (f"{stem}.{src}.gz", f"{stem}.{tgt}.gz")
        for name in names:
            size, sha256 = _MULTI30K_FILES[name]
            files[name] = RemoteFile(name, f"{_MULTI30K_URL}/{name}", sha256, size)
        splits[split] = [Corpus(stem, Source(names[0]), Source(names[1]))]
    return Recipe(
        name=f"multi30k-{src}-{tgt}", src=src, tgt=tgt,
        description=f"Multi30k task 1 {src}->{tgt}: 29,000 train, 1,014 valid (val), 1,000 test (test_2016_flickr)",
        files=files, splits=splits, vocab_size=8000,
        # Image captions are short; the 1.5 ratio meant for WMT would drop a few per cent of good pairs here.
        cleaning=CleaningOptions(max_tokens=250, max_ratio=3.0),
    )


# WMT 2014 (Bojar et al. 2014), the data of the paper: the archives fairseq's prepare-wmt14en2de.sh --icml17 and
# prepare-wmt14en2fr.sh download. Sizes and SHA-256 as tensorflow-datasets' url_checksums (wmt13/wmt14/wmt15) publish
# them; test-full.tgz's MD5 as sacreBLEU's dataset list publishes it; dev.tgz has no published checksum (its SHA-256
# is recorded in the manifest).
_WMT_FILES = {
    "training-parallel-europarl-v7.tgz": RemoteFile(
        "training-parallel-europarl-v7.tgz", "http://www.statmt.org/wmt13/training-parallel-europarl-v7.tgz",
        "0224c7c710c8a063dfd893b0cc0830202d61f4c75c17eb8e31836103d27d96e7", 657632379),
    "training-parallel-commoncrawl.tgz": RemoteFile(
        "training-parallel-commoncrawl.tgz", "http://www.statmt.org/wmt13/training-parallel-commoncrawl.tgz",
        "c7a74e2ea01ac6c920123108627e35278d4ccb5701e15428ffa34de86fa3a9e5", 918311367),
    "training-parallel-nc-v9.tgz": RemoteFile(
        "training-parallel-nc-v9.tgz", "http://www.statmt.org/wmt14/training-parallel-nc-v9.tgz",
        "cb8953f292298e6877ae433c98912b927cb0766b303f4540512ddd286c748485", 80418416),
    "training-parallel-un.tgz": RemoteFile(
        "training-parallel-un.tgz", "http://www.statmt.org/wmt13/training-parallel-un.tgz",
        "29141b5c1eba149a94f7a59d3b1a834b2e47fe0f8758d68dcd77a3d3f497ee47", 2365634246),
    "training-giga-fren.tar": RemoteFile(
        "training-giga-fren.tar", "http://www.statmt.org/wmt10/training-giga-fren.tar",
        "3ff8319f6919393520559bfbc7ad6a747ec81b3abc7be9993b338d4b017b4d9a", 2595102720),
    "dev.tgz": RemoteFile("dev.tgz", "http://www.statmt.org/wmt14/dev.tgz"),
    "test-full.tgz": RemoteFile("test-full.tgz", "http://www.statmt.org/wmt14/test-full.tgz",
                                md5="a8cd784e006feb32ac6f3d9ec7eb389a"),
}


def _wmt14_training(other: str) -> list[Corpus]:
    """The training corpora of English-`other` as (English member, `other` member) pairs."""
    pair = f"{other}-en"
    corpora = [
        ("europarl-v7", "training-parallel-europarl-v7.tgz", f"training/europarl-v7.{pair}"),
        ("commoncrawl", "training-parallel-commoncrawl.tgz", f"commoncrawl.{pair}"),
    ]
    if other == "fr":
        corpora.append(("un", "training-parallel-un.tgz", f"un/undoc.2000.{pair}"))
    corpora.append(("news-commentary-v9", "training-parallel-nc-v9.tgz", f"training/news-commentary-v9.{pair}"))
    result = [Corpus(name, Source(archive, f"{stem}.en"), Source(archive, f"{stem}.{other}"))
              for name, archive, stem in corpora]
    if other == "fr":
        result.append(Corpus("giga-fren", Source("training-giga-fren.tar", "giga-fren.release2.fixed.en.gz"),
                             Source("training-giga-fren.tar", "giga-fren.release2.fixed.fr.gz")))
    return result


def _wmt14(src: str, tgt: str) -> Recipe:
    other = tgt if src == "en" else src

    def sgm(archive: str, folder: str, stem: str, lang: str) -> Source:
        # newstest2013 is a multi-way set (every language a "src"); newstest2014's files are per pair, and the
        # source side of the direction we translate is "src", the other "ref", as fairseq and sacreBLEU read them.
        role = "src" if lang == src else "ref"
        return Source(archive, f"{folder}/{stem}-{role}.{lang}.sgm")

    splits = {
        "train": [c if src == "en" else Corpus(c.name, c.tgt, c.src) for c in _wmt14_training(other)],
        "valid": [Corpus("newstest2013", sgm("dev.tgz", "dev", "newstest2013", src),
                         sgm("dev.tgz", "dev", "newstest2013", tgt))],
        "test": [Corpus("newstest2014", sgm("test-full.tgz", "test-full", f"newstest2014-{other}en", src),
                        sgm("test-full.tgz", "test-full", f"newstest2014-{other}en", tgt))],
    }
    names = {source.file for corpora in splits.values() for corpus in corpora for source in (corpus.src, corpus.tgt)}
    paper = {"de": "4.5M pairs, 37k shared BPE vocabulary", "fr": "36M pairs, 32k shared vocabulary"}[other]
    return Recipe(
        name=f"wmt14-{src}-{tgt}", src=src, tgt=tgt,
        description=(f"WMT 2014 {src}->{tgt} as in the paper ({paper}): "
                     + ", ".join(corpus.name for corpus in splits["train"])
                     + "; valid newstest2013, test newstest2014 (full, 3003)"),
        files={name: _WMT_FILES[name] for name in _WMT_FILES if name in names},
        splits=splits,
        vocab_size=37000 if other == "de" else 32000,
        # fairseq's recipe: 1-250 pieces per side and a 1.5 length ratio applied to every pair (clean-corpus-n.perl
        # after BPE); a web-crawled line that is not UTF-8 is dropped and counted rather than stopping the run.
        cleaning=CleaningOptions(max_chars=4096, max_tokens=250, max_ratio=1.5, ratio_min_tokens=0,
                                 invalid_utf8="drop"),
    )


RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for make, pairs in ((_multi30k, (("en", "de"), ("en", "fr"), ("en", "cs"))), (_wmt14, (("en", "de"), ("en", "fr"))))
    for pair in pairs
    for recipe in (make(*pair), make(*reversed(pair)))
}


def combine(recipes: list[Recipe]) -> Recipe:
    """Several recipes as one multilingual recipe: each pair's corpora in every split, their source lines starting
    with the target language's token (`>>de<<`, as OPUS-MT's multilingual models), the files of all. The source
    (target) language is the one all pairs share, else `mul` (ISO 639-2: several languages)."""
    from nmt.vocab import language_token

    if len(recipes) == 1:
        return recipes[0]
    pairs = [(recipe.src, recipe.tgt) for recipe in recipes]
    for pair in pairs:
        if pairs.count(pair) > 1:
            raise NmtError(f"{pair[0]}-{pair[1]} is named twice: each pair once")
    files: dict[str, RemoteFile] = {}
    for recipe in recipes:
        for name, remote in recipe.files.items():
            if files.setdefault(name, remote) != remote:
                raise NmtError(f"{name}: two recipes name different files by this name")
    if any(recipe.cleaning != recipes[0].cleaning for recipe in recipes):
        raise NmtError("the recipes clean their corpora differently (" + ", ".join(r.name for r in recipes)
                       + "): prepare recipes of one family together")
    splits: dict[str, list[Corpus]] = {}
    for recipe in recipes:
        for split, corpora in recipe.splits.items():
            splits.setdefault(split, []).extend(
                Corpus(f"{recipe.src}-{recipe.tgt}/{corpus.name}", corpus.src, corpus.tgt, (recipe.src, recipe.tgt),
                       language_token(recipe.tgt)) for corpus in corpora)
    sources, targets = {src for src, _ in pairs}, {tgt for _, tgt in pairs}
    return Recipe(
        name="+".join(recipe.name for recipe in recipes),
        src=sources.pop() if len(sources) == 1 else "mul", tgt=targets.pop() if len(targets) == 1 else "mul",
        description="; ".join(recipe.description for recipe in recipes),
        files=files, splits=splits, vocab_size=max(recipe.vocab_size for recipe in recipes),
        cleaning=recipes[0].cleaning)
