"""What training reads of a prepared DATA_DIR, checked before the first update: the manifest, the SentencePiece model
(against the digest the manifest recorded), both splits (token ids within the vocabulary, a non-empty valid split)
and the raw valid references for BLEU."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from nmt.config import ModelConfig, TrainConfig
from nmt.data.batching import BatchPlan, make_batches
from nmt.data.binary import load_manifest
from nmt.data.dataset import ParallelDataset
from nmt.errors import NmtError
from nmt.train.pairs import Pair, WeightedCorpus, epoch_sentences, pairs_of, weighted_corpora_of
from nmt.vocab import Vocab


@dataclass
class TrainingData:
    data_dir: Path
    manifest: dict
    vocab: Vocab
    train: ParallelDataset
    valid: ParallelDataset
    valid_references: list[str]
    pairs: list[Pair] = field(default_factory=list)  # a multilingual dataset's pairs (nmt.train.pairs); [] for one
    corpora: list[WeightedCorpus] = field(default_factory=list)  # with synthetic corpora: each training corpus


def epoch_plan(data: TrainingData, config: TrainConfig, epoch: int, rank: int = 0, world_size: int = 1) -> BatchPlan:
    """The batches of an epoch: every training sentence once, or, with several pairs, the epoch's draw by
    --sampling-temperature, with weighted synthetic corpora by their weights (nmt.train.pairs)."""
    rows = epoch_sentences(data.pairs, config.sampling_temperature, config.seed, epoch, data.corpora)
    src, tgt = data.train.src_lengths, data.train.tgt_lengths
    if rows is None:
        return make_batches(src, tgt, config.max_tokens, seed=config.seed, epoch=epoch, rank=rank,
                            world_size=world_size)
    plan = make_batches(src[rows], tgt[rows], config.max_tokens, seed=config.seed, epoch=epoch, rank=rank,
                        world_size=world_size)
    return dataclasses.replace(plan, batches=[rows[batch] for batch in plan.batches])


def load_training_data(data_dir: Path) -> TrainingData:
    data_dir = Path(data_dir)
    manifest = load_manifest(data_dir)
    vocab = _load_vocab(data_dir, manifest)
    train, valid = ParallelDataset(data_dir, "train", manifest), ParallelDataset(data_dir, "valid", manifest)
    if len(valid) == 0:
        raise NmtError(f"{data_dir}: the valid split is empty; prepare the data with a validation set")
    for dataset in (train, valid):
        dataset.check_ids(len(vocab), vocab.target_size)
    references = (data_dir / manifest["splits"]["valid"]["text"]["tgt"]).read_text(encoding="utf-8").split("\n")
    pairs = pairs_of(manifest)
    for pair in pairs:
        for split, dataset in (("train", train), ("valid", valid)):
            start, end = pair.rows.get(split, (0, 0))
            if not 0 <= start < end <= len(dataset):
                raise NmtError(f"{data_dir}/manifest.json: the {split} rows of {pair.name} ({start}-{end}) are not "
                               f"within its {len(dataset):,} sentences (prepare the data again)")
    corpora = weighted_corpora_of(manifest)
    for corpus in corpora:
        start, end = corpus.rows
        if not 0 <= start <= end <= len(train) or not 0 < corpus.weight < float("inf"):
            raise NmtError(f"{data_dir}/manifest.json: the training corpus {corpus.name} has rows {start}-{end} "
                           f"and weight {corpus.weight}, not within its {len(train):,} sentences with a weight "
                           "above 0 (prepare the data again)")
    return TrainingData(data_dir, manifest, vocab, train, valid, references[: len(valid)], pairs, corpora)


def _load_vocab(data_dir: Path, manifest: dict) -> Vocab:
    """A swapped spm.model would train silently on ids that mean other pieces: its digest is checked."""
    path = data_dir / manifest["spm_model"]
    if not path.is_file():
        raise NmtError(f"{path}: not found (prepare the data again with `nmt prepare`)")
    recorded = manifest.get("spm")
    recorded = recorded if isinstance(recorded, dict) else {}
    # spm.model's digest, and those of the target's model and the table of pieces where the vocabulary has them
    expected = {manifest["spm_model"]: recorded.get("sha256"), **(recorded.get("files_sha256") or {})}
    for name, digest in expected.items():
        if digest is not None and (data_dir / name).is_file() and \
                hashlib.sha256((data_dir / name).read_bytes()).hexdigest() != digest:
            raise NmtError(f"{data_dir / name}: not the vocabulary file this data was prepared with (its SHA-256 "
                           "differs from manifest.json's); the token ids would mean other pieces: prepare the data "
                           "again")
    return Vocab.from_folder(data_dir, manifest)


def vocabulary_fields(vocab: Vocab) -> dict:
    """The model options the data's vocabulary fixes: its sizes (a target of its own gets its own embedding) and the
    special ids (nmt's own 0-3, or those of an imported model's vocabulary)."""
    return {"vocab_size": len(vocab), "target_vocab_size": 0 if vocab.shared else vocab.target_size,
            "pad_id": vocab.pad_id, "bos_id": vocab.bos_id, "eos_id": vocab.eos_id}


def check_positions(data: TrainingData, model_config: ModelConfig) -> None:
    """Learned positions have a table of max_positions rows: a longer pair would index past it."""
    if not model_config.learned_positions:
        return
    for dataset in (data.train, data.valid):
        # the decoder reads bos + target without eos: as many positions as the target's length with eos
        longest = int(max(dataset.src_lengths.max(initial=0), dataset.tgt_lengths.max(initial=0)))
        if longest > model_config.max_positions:
            raise NmtError(f"{data.data_dir}: the {dataset.split} split has a sentence of {longest} pieces "
                           f"(end-of-sentence included), more than --max-positions {model_config.max_positions} of "
                           "--learned-positions: raise --max-positions, or prepare with a lower --max-tokens")
