"""`nmt logprob`, forced scoring: the model's log-probability of given translations (fairseq's --score-reference,
marian-scorer).

Each (source, target) pair is teacher-forced through the model once: the decoder reads bos + target and the score of
the target is the sum of the log-probabilities of its pieces and of the end-of-sentence that follows them, the same
sum a beam search ranks by before its length penalty (`Hypothesis.logprob`). Uses: reranking n-best lists, filtering a
noisy corpus (dual conditional cross-entropy: a forward and a backward model's per-token scores), a model's
perplexity on references.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from nmt.checkpoint import load_model
from nmt.data.batching import make_batches
from nmt.data.dataset import pad_sequences
from nmt.data.text import normalize, read_lines, read_text_lines
from nmt.device import PRECISIONS, attention_kernels, autocast, pick_device
from nmt.errors import NmtError
from nmt.vocab import TargetLanguage


@dataclass
class PairScore:
    logprob: float  # log P(target | source): the sum over the target's pieces and its end-of-sentence
    pieces: list[str]  # the target's pieces, then "</s>"
    piece_logprobs: list[float]  # one per entry of `pieces`

    @property
    def per_token(self) -> float:
        """The mean log-probability per piece, end-of-sentence counted (as fairseq's score-reference)."""
        return self.logprob / len(self.pieces)


class ForcedScorer:
    """A loaded model that scores given translations; `score(sources, targets)` keeps the input order."""

    def __init__(self, checkpoint: Path, device: str | None = None, max_tokens: int = 6000,
                 max_source_tokens: int = 1024, precision: str = "fp32", target_language: str | None = None):
        if precision not in PRECISIONS:
            raise NmtError(f"--precision must be fp32, bf16 or fp16, got {precision!r}")
        if max_tokens < 1:
            raise NmtError("--max-tokens must be at least 1")
        self.device = pick_device(device)
        self.model, self.vocab, _ = load_model(checkpoint, self.device)
        self.language = TargetLanguage(self.vocab.language_tokens, target_language)  # a multilingual model's
        config = self.model.config
        self.pad, self.bos, self.eos = config.pad_id, config.bos_id, config.eos_id
        self.max_tokens = max_tokens
        self.precision = precision
        # As `nmt translate`: an over-long source is cut to what the model reads (and counted); a target cannot be
        # cut without changing what is scored, so one past a learned-position table is refused.
        self.max_source_tokens = min(max_source_tokens, config.max_positions) if config.learned_positions \
            else max_source_tokens
        self.max_target_tokens = config.max_positions if config.learned_positions else None
        self.truncated_lines: list[int] = []  # pairs (numbered as in `score`'s first_line) whose source was cut

    def score(self, sources: list[str], targets: list[str], first_line: int = 1) -> list[PairScore]:
        """Scores of each pair, in order. `first_line` numbers the pairs in error messages."""
        if len(sources) != len(targets):
            raise NmtError(f"{len(sources)} sources but {len(targets)} targets")
        source_ids = self.vocab.encode_source(self.language.mark([normalize(line) for line in sources]))
        target_texts = [normalize(line) for line in targets]
        target_ids = self.vocab.encode_target(target_texts)
        for offset, (source, target, ids) in enumerate(zip(sources, target_texts, target_ids)):
            line = first_line + offset
            if not normalize(source):
                raise NmtError(f"line {line}: the source is empty; every pair needs a source and a target")
            if not target:
                raise NmtError(f"line {line}: the target is empty; every pair needs a source and a target")
            if self.max_target_tokens is not None and len(ids) + 1 > self.max_target_tokens:
                raise NmtError(f"line {line}: the target has {len(ids) + 1} pieces (end-of-sentence included), more "
                               f"than the model's {self.max_target_tokens} learned positions")
        sources_eos = []
        for offset, ids in enumerate(source_ids):
            if len(ids) >= self.max_source_tokens:
                ids = ids[: self.max_source_tokens - 1]
                self.truncated_lines.append(first_line + offset)
            sources_eos.append(np.asarray(ids + [self.eos], dtype=np.int64))
        targets_eos = [np.asarray(ids + [self.eos], dtype=np.int64) for ids in target_ids]
        plan = make_batches(np.array([len(s) for s in sources_eos]), np.array([len(t) for t in targets_eos]),
                            self.max_tokens, shuffle=False)
        piece = self.vocab.target.piece
        results: list[PairScore | None] = [None] * len(sources)
        for indices in plan.batches:
            logprobs = self._target_logprobs([sources_eos[i] for i in indices], [targets_eos[i] for i in indices])
            for row, index in enumerate(indices):
                ids = targets_eos[index]
                values = logprobs[row, : len(ids)].tolist()
                results[index] = PairScore(float(logprobs[row, : len(ids)].double().sum()),
                                           [piece(int(i)) for i in ids[:-1]] + ["</s>"], values)
        return results

    @torch.inference_mode()
    def _target_logprobs(self, sources: list[np.ndarray], targets: list[np.ndarray]) -> torch.Tensor:
        """(B, T) log-probabilities of each target piece (eos included) given the source and the pieces before it;
        0 on padding."""
        src_tokens = torch.from_numpy(pad_sequences(sources, self.pad)).to(self.device)
        target = torch.from_numpy(pad_sequences(targets, self.pad)).to(self.device)  # pieces + eos
        prev_tokens = torch.cat([torch.full_like(target[:, :1], self.bos), target[:, :-1]], dim=1)
        prev_tokens = prev_tokens.masked_fill(prev_tokens.eq(self.eos), self.pad)  # the eos is never read
        with autocast(self.device, self.precision), attention_kernels(self.device):
            logits = self.model.decode(prev_tokens, self.model.encode(src_tokens))
        logprobs = F.log_softmax(logits.float(), dim=-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
        return logprobs.masked_fill(target.eq(self.pad), 0.0).cpu()

    def score_stream(self, pairs: Iterable[tuple[str, str]], window: int = 10_000) -> Iterator[PairScore]:
        """Score a stream of pairs window by window (sorted by length inside each), yielding in input order."""
        buffer: list[tuple[str, str]] = []
        line = 1
        for pair in pairs:
            buffer.append(pair)
            if len(buffer) >= window:
                yield from self.score([s for s, _ in buffer], [t for _, t in buffer], line)
                line += len(buffer)
                buffer = []
        if buffer:
            yield from self.score([s for s, _ in buffer], [t for _, t in buffer], line)


def count_lines(path: Path) -> int:
    return sum(1 for _ in read_lines(path))


def read_file_pairs(source: Path, target: Path) -> Iterator[tuple[str, str]]:
    """Pairs from two line-aligned files, whose line counts are checked before any pair is scored."""
    counts = count_lines(source), count_lines(target)
    if counts[0] != counts[1]:
        raise NmtError(f"{source} has {counts[0]:,} lines but {target} has {counts[1]:,}: the files must be "
                       "line-aligned")
    return zip(read_lines(source), read_lines(target))


def read_tsv_pairs(stream, name: str = "<stdin>") -> Iterator[tuple[str, str]]:
    """Pairs from `source<TAB>target` lines."""
    for number, line in enumerate(read_text_lines(stream, name), start=1):
        fields = line.split("\t")
        if len(fields) != 2:
            raise NmtError(f"{name}:{number}: expected `source<TAB>target`, found {len(fields) - 1} tabs")
        yield fields[0], fields[1]


def format_pair_score(result: PairScore, as_json: bool = False, word_scores: bool = False) -> str:
    """`nmt logprob`'s line for a pair: `LOGPROB<TAB>PER_TOKEN` (then each piece's log-probability with
    `word_scores`), or a JSON object with logprob, per_token, pieces (and word_scores)."""
    if as_json:
        record = {"logprob": round(result.logprob, 6), "per_token": round(result.per_token, 6),
                  "pieces": result.pieces}
        if word_scores:
            record["word_scores"] = [round(value, 6) for value in result.piece_logprobs]
        return json.dumps(record, ensure_ascii=False) + "\n"
    return f"{result.logprob:.6f}\t{result.per_token:.6f}" + (
        "\t" + " ".join(f"{value:.6f}" for value in result.piece_logprobs) if word_scores else "") + "\n"


def language_suffix(path: Path) -> str:
    """`en` of train.en or train.en.gz: the language a file's name ends with."""
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    return name.rpartition(".")[2] if "." in name else ""


def keep_pairs(scorer: ForcedScorer, source: Path, target: Path, min_per_token: float, prefix: Path,
               scores=None, window: int = 10_000) -> tuple[int, int]:
    """Filter a corpus by the model's per-token log-probability (a teacher's translations of its training sources,
    back-translations): the pairs scoring at least `min_per_token` go to PREFIX.SRC and PREFIX.TGT (the languages
    the input files' names end with), in order, as `nmt prepare --synthetic PREFIX` reads them. A pair with an empty
    side is dropped unscored. `scores`: where each pair's `LOGPROB<TAB>PER_TOKEN` line goes (-inf for those).
    Returns (kept, total)."""
    from nmt.atomic import atomic_write

    languages = language_suffix(source), language_suffix(target)
    if not all(languages) or languages[0] == languages[1]:
        raise NmtError(f"--keep-prefix names its files by the languages --source and --target end with (train.en, "
                       f"teacher.de); {source.name} and {target.name} do not say two")
    pairs = read_file_pairs(source, target)
    kept = total = 0
    with atomic_write(Path(f"{prefix}.{languages[0]}"), newline="\n") as kept_source, \
            atomic_write(Path(f"{prefix}.{languages[1]}"), newline="\n") as kept_target:
        while window_pairs := [pair for _, pair in zip(range(window), pairs)]:
            scorable = [n for n, (s, t) in enumerate(window_pairs) if normalize(s) and normalize(t)]
            results = dict(zip(scorable, scorer.score([window_pairs[n][0] for n in scorable],
                                                      [window_pairs[n][1] for n in scorable], total + 1)))
            for n, (src_line, tgt_line) in enumerate(window_pairs):
                result = results.get(n)
                if scores is not None:
                    scores.write(format_pair_score(result) if result else "-inf\t-inf\n")
                if result is not None and result.per_token >= min_per_token:
                    kept_source.write(src_line + "\n")
                    kept_target.write(tgt_line + "\n")
                    kept += 1
            total += len(window_pairs)
    return kept, total
