"""The corpus steps of `nmt prepare`: extract the recipe's texts, index the training corpora into shards, copy the
valid and test splits verbatim as the references to score against."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nmt.atomic import atomic_write
from nmt.data.recipes import Corpus
from nmt.data.sources import Source, extract
from nmt.data.stamps import digest, file_fingerprint
from nmt.data.step_runner import StepRunner
from nmt.data.text import read_parallel
from nmt.errors import NmtError

SHARD_LINES = 100_000  # lines per binarization shard: the unit of parallel work and of resumption


@dataclass
class IndexedCorpus:
    name: str
    src: str  # plain text files, one sentence a line
    tgt: str
    lines: int
    shards: list[list[int]]  # [source byte offset, target byte offset] of each shard's first line


@dataclass
class TrainIndex:
    corpora: list[IndexedCorpus]
    pairs: int  # over every corpus
    digest: str  # of the index step's parameters: what later steps depend on


@dataclass
class ReferenceFiles:
    paths: list[Path]  # DATA_DIR/SPLIT.SRC, DATA_DIR/SPLIT.TGT
    fingerprints: list[str]
    lines: int
    corpus_lines: list[int]  # of each corpus, in order


def extract_texts(runner: StepRunner, splits: dict[str, list[Corpus]], files: dict[str, tuple[Path, str]]) -> dict:
    """Each source of the splits as a plain text file: (path, fingerprint) by Source, archives extracted once."""
    sources = {source for corpora in splits.values() for corpus in corpora for source in (corpus.src, corpus.tgt)}
    texts = {}
    by_file: dict[str, list[Source]] = {}
    for source in sources:
        if source.file not in files:
            raise NmtError(f"{source.file}: not among the recipe's files")
        if source.needs_extraction:
            by_file.setdefault(source.file, []).append(source)
        else:
            path, fingerprint = files[source.file]
            texts[source] = (path, fingerprint)
    for name, wanted in sorted(by_file.items()):
        wanted.sort(key=lambda source: source.inner_name)
        path, fingerprint = files[name]
        folder = runner.work / "extracted"
        params = {"file": name, "fingerprint": fingerprint, "members": [s.inner_name for s in wanted]}

        def run(path=path, wanted=wanted, folder=folder) -> tuple[list[Path], dict]:
            outputs = extract(path, wanted, folder, runner.progress)
            return list(outputs.values()), {}

        runner.step(f"extract/{Path(name).name}", params, run)
        for source in wanted:
            texts[source] = (folder / source.extracted_name(), f"{fingerprint}:{source.inner_name}")
    return texts

def index_training(runner: StepRunner, corpora: list[Corpus], texts: dict) -> TrainIndex:
    """The training corpora counted (both sides must agree) and cut into shards of SHARD_LINES lines."""
    params = {"corpora": [[corpus.name, texts[corpus.src][1], texts[corpus.tgt][1]] for corpus in corpora],
              "shard_lines": SHARD_LINES}

    def run() -> tuple[list[Path], dict]:
        indexed = []
        for corpus in corpora:
            src_path, tgt_path = texts[corpus.src][0], texts[corpus.tgt][0]
            src_offsets, src_lines = shard_offsets(src_path)
            tgt_offsets, tgt_lines = shard_offsets(tgt_path)
            if src_lines != tgt_lines:
                raise NmtError(f"{corpus.name}: {describe(corpus.src, src_path)} has {src_lines:,} lines but "
                               f"{describe(corpus.tgt, tgt_path)} has {tgt_lines:,}; the sides must pair up")
            indexed.append({"name": corpus.name, "src": str(src_path), "tgt": str(tgt_path), "lines": src_lines,
                            "shards": [[s, t] for s, t in zip(src_offsets, tgt_offsets)]})
        return [], {"corpora": indexed, "pairs": sum(c["lines"] for c in indexed)}

    result = runner.step("index", params, run)
    return TrainIndex([IndexedCorpus(**corpus) for corpus in result["corpora"]], result["pairs"], digest(params))

def copy_references(runner: StepRunner, split: str, corpora: list[Corpus], texts: dict, src: str,
                    tgt: str) -> ReferenceFiles:
    """Valid/test lines exactly as they were (checked UTF-8), concatenated over the split's corpora; in a dataset of
    several pairs also each pair's own (SPLIT.en-de.en, SPLIT.en-de.de: fairseq's names), to translate and score."""
    outputs = [runner.out_dir / f"{split}.{src}", runner.out_dir / f"{split}.{tgt}"]
    pairs = list(dict.fromkeys(corpus.pair for corpus in corpora if corpus.pair))
    pair_files = {pair: [runner.out_dir / f"{split}.{pair[0]}-{pair[1]}.{lang}" for lang in pair] for pair in pairs}
    params = {"inputs": [[texts[c.src][1], texts[c.tgt][1]] for c in corpora], "outputs": [p.name for p in outputs],
              **({"pairs": [f"{a}-{b}" for a, b in pairs]} if pairs else {})}

    def run() -> tuple[list[Path], dict]:
        corpus_lines = []
        with atomic_write(outputs[0], newline="") as src_out, atomic_write(outputs[1], newline="") as tgt_out:
            for corpus in corpora:
                lines = 0
                for src_line, tgt_line in read_parallel(texts[corpus.src][0], texts[corpus.tgt][0]):
                    src_out.write(src_line + "\n")
                    tgt_out.write(tgt_line + "\n")
                    lines += 1
                corpus_lines.append(lines)
        lines = sum(corpus_lines)
        for pair, (src_path, tgt_path) in pair_files.items():
            with atomic_write(src_path, newline="") as src_out, atomic_write(tgt_path, newline="") as tgt_out:
                for corpus in corpora:
                    if corpus.pair == pair:
                        for src_line, tgt_line in read_parallel(texts[corpus.src][0], texts[corpus.tgt][0]):
                            src_out.write(src_line + "\n")
                            tgt_out.write(tgt_line + "\n")
        if lines == 0:
            for path in outputs:
                path.unlink(missing_ok=True)
            files = ", ".join(str(texts[c.src][0]) for c in corpora)
            raise NmtError(f"the {split} split is empty ({files}): "
                           + ("nmt train validates on it; give at least one pair" if split == "valid"
                              else "give a prefix with at least one pair, or none"))
        return outputs + [path for paths in pair_files.values() for path in paths], {
            "lines": lines, "corpus_lines": corpus_lines}

    result = runner.step(f"references/{split}", params, run)
    return ReferenceFiles(outputs, [file_fingerprint(p) for p in outputs], result["lines"],
                          result.get("corpus_lines", [result["lines"]]))

def shard_offsets(path: Path) -> tuple[list[int], int]:
    """Byte offsets of lines 0, SHARD_LINES, 2 * SHARD_LINES, ... and the number of lines ('\\n' ends a line)."""
    offsets, lines, position = [], 0, 0
    with open(path, "rb") as handle:
        for line in handle:
            if lines % SHARD_LINES == 0:
                offsets.append(position)
            position += len(line)
            lines += 1
    return offsets, lines



def describe(source: Source, path: Path) -> str:
    """A source as the user knows it: ARCHIVE:MEMBER, or its path."""
    return f"{source.file}:{source.member}" if source.member else str(path)
