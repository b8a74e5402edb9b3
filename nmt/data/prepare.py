"""raw corpora -> plain text -> index -> joint SentencePiece BPE -> cleaned, binarized shards -> splits + manifest.

Steps, each skipped when its stamp says it is done with the same inputs and options (`nmt.data.stamps`):

  download/NAME    fetch and verify each recipe file (or check it in a --mirror folder)
  extract/NAME     stream each archive once, writing the wanted members as plain text (gunzipped, SGML parsed)
  index            count the lines of each training corpus (both sides must agree) and cut it into shards
  references       copy valid/test lines verbatim to DATA_DIR/{split}.{lang}: the references to score against
  spm              sample --spm-sample sentences of normalized training text and train SentencePiece on them
  binarize/train   clean + encode + filter + write each shard in --workers processes, then merge the shards
  binarize/SPLIT   encode valid/test line for line (never filtered)

The steps live in nmt.data.corpus_steps, nmt.data.vocabulary_steps and nmt.data.binarize_steps, run by
nmt.data.step_runner; this module holds the options and the order. Nothing holds a corpus in memory: corpora are
streamed, shards are a bounded number of lines, SentencePiece sees a sample. Every file is written under a temporary
name and renamed when complete, and the manifest is written last: a DATA_DIR with a manifest.json is complete, and
an interrupted run picks up at the step it was in.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from nmt.atomic import write_json
from nmt.data.binarize_steps import binarize_reference, binarize_train
from nmt.data.binary import MANIFEST_FORMAT, MANIFEST_VERSION, token_dtype
from nmt.data.corpus_steps import ReferenceFiles, copy_references, extract_texts, index_training
from nmt.data.download import fetch_verified
from nmt.data.recipes import Corpus, Recipe
from nmt.data.sources import Progress, Source
from nmt.data.stamps import file_fingerprint
from nmt.data.step_runner import Log, StepRunner
from nmt.data.prepare_options import PrepareOptions
from nmt.data.text import CleaningOptions, check_input_file
from nmt.data.vocabulary_steps import check_language_tokens, vocabulary_step
from nmt.errors import NmtError
from nmt.vocab import Vocab


@dataclass
class Prepared:
    """A prepared DATA_DIR: its manifest, and what each step did this time."""

    manifest: dict
    steps: dict[str, dict]  # step -> {"status": "ran" | "skipped", "seconds", "peak_rss_mb", ...}


def prepare_recipe(recipe: Recipe, out_dir: Path, options: PrepareOptions, mirror: str | None = None,
                   verify_checksum: bool = True, progress: Progress | None = None,
                   log: Log = lambda message: None) -> Prepared:
    """Fetch a recipe's files (or take them from `mirror`) and prepare them into `out_dir`."""
    options = options.resolved(recipe.vocab_size, recipe.cleaning)
    runner = StepRunner(Path(out_dir), log, progress)
    files = {}
    for name, remote in recipe.files.items():
        params = {"name": name, "url": mirror or remote.url, "sha256": remote.sha256, "md5": remote.md5,
                  "size": remote.size, "verify": verify_checksum}

        def download(remote=remote) -> tuple[list[Path], dict]:
            path, sha256 = fetch_verified(remote, runner.out_dir / "downloads", mirror, verify_checksum,
                                          progress)
            return [path], {"path": str(path.resolve()), "sha256": sha256}

        result = runner.step(f"download/{name}", params, download, quiet=True)
        files[name] = (Path(result["path"]), result["sha256"])
    provenance = {"recipe": recipe.name,
                  "sources": {name: {"url": remote.url, "sha256": files[name][1]}
                              for name, remote in recipe.files.items()}}
    if mirror:
        provenance["mirror"] = mirror
    return _run(runner, recipe.src, recipe.tgt, recipe.splits, files, options, provenance)


def prepare_corpus(out_dir: Path, src: str, tgt: str, split_paths: dict[str, tuple[Path, Path]],
                   options: PrepareOptions, provenance: dict, log: Log = lambda message: None,
                   progress: Progress | None = None) -> Prepared:
    """Prepare your own files: `split_paths` is {"train": (src_file, tgt_file), "valid": ..., "test": ...}."""
    options = options.resolved(8000, CleaningOptions())
    for paths in split_paths.values():
        for path in paths:
            check_input_file(path)
    splits = {split: [Corpus(split, Source(str(Path(s).resolve())), Source(str(Path(t).resolve())))]
              for split, (s, t) in split_paths.items()}
    # Your own files are fingerprinted by size and modification time: an edited file is prepared again.
    files = {str(Path(p).resolve()): (Path(p).resolve(), file_fingerprint(Path(p)))
             for paths in split_paths.values() for p in paths}
    provenance = {**provenance, "inputs": {split: [str(p) for p in paths] for split, paths in split_paths.items()}}
    return _run(StepRunner(Path(out_dir), log, progress), src, tgt, splits, files, options, provenance)


def parse_pairs(text: str) -> list[tuple[str, str]]:
    """`en-de,en-fr` as [("en", "de"), ("en", "fr")]: language codes of letters, digits and `_`, each pair once."""
    pairs = []
    for item in text.split(","):
        src, _, tgt = item.strip().partition("-")
        if not (src and tgt and all(code.replace("_", "").isalnum() and code.isascii() for code in (src, tgt))):
            raise NmtError(f"--pairs: {item.strip()!r} is not SRC-TGT (language codes of letters and digits, e.g. "
                           "en-de)")
        if src == tgt:
            raise NmtError(f"--pairs: {item.strip()} translates a language into itself")
        if (src, tgt) in pairs:
            raise NmtError(f"--pairs: {src}-{tgt} is named twice")
        pairs.append((src, tgt))
    return pairs


def custom_pairs(out_dir: Path, pairs_text: str, prefixes: dict[str, str | None], options: PrepareOptions,
                 log: Log = lambda message: None, progress: Progress | None = None) -> Prepared:
    """Your own files of several pairs as one multilingual dataset: PREFIX.SRC-TGT.SRC and .TGT per pair and split."""
    from nmt.vocab import language_token

    pairs = parse_pairs(pairs_text)
    options = options.resolved(8000, CleaningOptions())
    splits: dict[str, list[Corpus]] = {}
    files = {}
    for split, prefix in prefixes.items():
        if not prefix:
            continue
        for src, tgt in pairs:
            paths = [find_side(f"{prefix}.{src}-{tgt}", lang) for lang in (src, tgt)]
            for path in paths:
                check_input_file(path)
                files[str(path.resolve())] = (path.resolve(), file_fingerprint(path))
            splits.setdefault(split, []).append(Corpus(
                f"{src}-{tgt}/{split}", Source(str(paths[0].resolve())), Source(str(paths[1].resolve())), (src, tgt),
                language_token(tgt)))
    sources, targets = {src for src, _ in pairs}, {tgt for _, tgt in pairs}
    provenance = {"recipe": "custom", "inputs": files_by_split(splits)}
    return _run(StepRunner(Path(out_dir), log, progress), sources.pop() if len(sources) == 1 else "mul",
                targets.pop() if len(targets) == 1 else "mul", splits, files, options, provenance)


def files_by_split(splits: dict[str, list[Corpus]]) -> dict[str, list[str]]:
    return {split: [path for corpus in corpora for path in (corpus.src.file, corpus.tgt.file)]
            for split, corpora in splits.items()}


def pair_entries(splits: dict[str, list[Corpus]], train_sentences: list[int],
                 references: dict[str, ReferenceFiles]) -> list[dict]:
    """The manifest's `pairs` of a multilingual dataset: each pair's languages, the token its sources start with,
    the rows of each split that are its (the corpora of a pair follow one another), and its raw valid/test files."""
    counts = {"train": train_sentences, **{split: ref.corpus_lines for split, ref in references.items()}}
    entries: dict[tuple[str, str], dict] = {}
    for split, corpora in splits.items():
        row = 0
        for corpus, count in zip(corpora, counts[split]):
            entry = entries.setdefault(corpus.pair, {"src": corpus.pair[0], "tgt": corpus.pair[1], "token": corpus.tag,
                                                     "rows": {}, "text": {}})
            start, end = entry["rows"].get(split, [row, row])
            if end != row:
                raise NmtError(f"{corpus.pair[0]}-{corpus.pair[1]}: its {split} corpora must follow one another")
            entry["rows"][split] = [start, row + count]
            row += count
            if split != "train":
                name = f"{split}.{corpus.pair[0]}-{corpus.pair[1]}"
                entry["text"][split] = {"src": f"{name}.{corpus.pair[0]}", "tgt": f"{name}.{corpus.pair[1]}"}
    for entry in entries.values():
        for split in ("train", "valid"):
            if entry["rows"].get(split, [0, 0])[1] == entry["rows"].get(split, [0, 0])[0]:
                raise NmtError(f"{entry['src']}-{entry['tgt']}: no {split} pairs"
                               + (" left after cleaning" if split == "train" else "")
                               + "; every pair of a multilingual dataset needs training and validation data")
    return list(entries.values())


def find_side(prefix: str, lang: str) -> Path:
    """PREFIX.lang or PREFIX.lang.gz, whichever exists."""
    for candidate in (Path(f"{prefix}.{lang}"), Path(f"{prefix}.{lang}.gz")):
        if candidate.is_file():
            return candidate
    raise NmtError(f"{prefix}.{lang}: file not found (nor {prefix}.{lang}.gz)")


def add_synthetic(splits: dict[str, list[Corpus]], files: dict[str, tuple[Path, str]], options: PrepareOptions,
                  src: str, tgt: str) -> tuple[dict, dict, tuple[str, ...]]:
    """The training split with the --synthetic corpora after the parallel ones, their files, and the tags the
    vocabulary must have as pieces of their own (theirs and --reserve-tag's)."""
    from nmt.data.synthetic import check_tag, check_tags_in_vocabulary

    for tag in options.reserved_tags:
        check_tag(tag, "--reserve-tag")
    symbols = tuple(dict.fromkeys([*options.reserved_tags, *(c.tag for c in options.synthetic if c.tag)]))
    if options.vocab_model is not None:
        if options.reserved_tags:
            raise NmtError("--reserve-tag adds pieces to a vocabulary being learned; --vocab's pieces are given")
        check_tags_in_vocabulary(options.vocab_model, list(symbols), options.vocab_source)
    if not options.synthetic:
        return splits, files, symbols
    files, train = dict(files), list(splits["train"])
    for corpus in options.synthetic:
        paths = [find_side(corpus.prefix, lang).resolve() for lang in (src, tgt)]
        for path in paths:
            check_input_file(path)
            files[str(path)] = (path, file_fingerprint(path))
        train.append(Corpus(f"synthetic:{corpus.prefix}", Source(str(paths[0])), Source(str(paths[1])),
                            tag=corpus.tag))
    return {**splits, "train": train}, files, symbols


def synthetic_entries(corpora: list[Corpus], options: PrepareOptions, sentences: list[int] | None) -> list[dict]:
    """The manifest's `train_corpora`: rows, tag and weight of the parallel corpora and the synthetic ones."""
    from nmt.data.synthetic import train_corpora_entries

    if sentences is None or len(sentences) != len(corpora):
        raise NmtError("the binarized training data does not say how many pairs each corpus kept: prepare the data "
                       "again into a new folder")
    parallel = len(corpora) - len(options.synthetic)
    for corpus, count in zip(options.synthetic, sentences[parallel:]):
        if count == 0:
            raise NmtError(f"--synthetic {corpus.prefix}: no pairs left after cleaning")
    return train_corpora_entries([corpus.name for corpus in corpora], [corpus.tag for corpus in corpora],
                                 [1.0] * parallel + [corpus.weight for corpus in options.synthetic], sentences,
                                 [False] * parallel + [True] * len(options.synthetic))


def _run(runner: StepRunner, src: str, tgt: str, splits: dict[str, list[Corpus]],
         files: dict[str, tuple[Path, str]], options: PrepareOptions, provenance: dict) -> Prepared:
    """The steps after the download, in order, then the manifest (written last: a DATA_DIR with one is complete)."""
    multilingual = any(corpus.pair for corpora in splits.values() for corpus in corpora)
    if src == tgt and not multilingual:
        raise NmtError(f"--src and --tgt are both {src!r}")
    for split in ("train", "valid"):
        if not splits.get(split):
            raise NmtError(f"a {split} split is required")
    if options.synthetic and multilingual:
        raise NmtError("--synthetic corpora are for a dataset of one pair; a multilingual dataset cannot take them")
    splits, files, symbols = add_synthetic(splits, files, options, src, tgt)
    stems = (src, tgt) if src != tgt else ("src", "tgt")  # file names: both sides of a many-to-many set are `mul`
    tags = {split: [corpus.tag for corpus in corpora] for split, corpora in splits.items()}
    language_tags = tuple(sorted({corpus.tag for corpus in splits["train"] if corpus.pair} - {""}))
    check_language_tokens(options, language_tags)
    texts = extract_texts(runner, splits, files)  # Source -> (plain text path, fingerprint)
    index = index_training(runner, splits["train"], texts)
    references = {split: copy_references(runner, split, corpora, texts, *stems)
                  for split, corpora in splits.items() if split != "train"}
    spm = vocabulary_step(runner, index, options, [corpus.pair for corpus in splits["train"]] if multilingual else None,
                          language_tags, symbols)
    vocab_files = spm.files or {"spm_model": "spm.model"}
    vocab = Vocab.from_folder(runner.out_dir, vocab_files)
    dtype = token_dtype(max(len(vocab), vocab.target_size)).name
    entries = {"train": binarize_train(runner, index, spm, vocab_files, options, *stems, dtype, tags["train"])}
    for split, reference in references.items():
        entries[split] = binarize_reference(runner, split, reference, spm, vocab, *stems, dtype, tags[split])
    train_report = entries["train"].pop("report")
    corpus_sentences = entries["train"].pop("corpus_sentences", None)
    if multilingual:
        provenance = {**provenance, "pairs": pair_entries(splits, corpus_sentences, references)}
    if entries["train"]["sentences"] == 0:
        raise NmtError(f"no training pairs left after cleaning ({train_report})")
    if options.synthetic:
        provenance = {**provenance, "train_corpora": synthetic_entries(splits["train"], options, corpus_sentences)}
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "src": src,
        "tgt": tgt,
        **vocab_files,
        "vocab_size": len(vocab),
        **({"target_vocab_size": vocab.target_size} if not vocab.shared else {}),
        "token_dtype": dtype,
        "special_ids": {"pad": vocab.pad_id, "unk": vocab.unk_id, "bos": vocab.bos_id, "eos": vocab.eos_id},
        "splits": entries,
        "cleaning": {"options": asdict(options.cleaning), "train": train_report},
        "spm": ({"given": options.vocab_source, "vocab_size": len(vocab), "sha256": spm.sha256,
                 "files_sha256": spm.files_sha256}
                if options.vocab_model is not None else
                {"vocab_size": options.vocab_size, "max_sentences": options.spm_max_sentences,
                 "sampled_sentences": spm.sample_sentences, "seed": options.seed, "model_type": "bpe",
                 "sha256": spm.sha256, **({"separate_vocabs": True, "files_sha256": spm.files_sha256}
                                             if options.separate_vocabs else {})}),
        "corpora": {split: [corpus.name for corpus in corpora] for split, corpora in splits.items()},
        **provenance,
    }
    path = runner.out_dir / "manifest.json"
    if not path.is_file() or json.loads(path.read_text(encoding="utf-8")) != json.loads(json.dumps(manifest)):
        write_json(path, manifest)
    return Prepared(manifest, runner.steps)

