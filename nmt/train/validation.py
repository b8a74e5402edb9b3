"""Validation: the valid split's loss (teacher-forced) and, when asked, greedy (or --valid-beam) BLEU of its
translations against the raw references. Each rank takes its share of the batches; sums and translations are
gathered, so the figures are the whole split's (corpus BLEU of all translations, not a mean of per-rank scores)."""

from __future__ import annotations

import math
import time

import sacrebleu
import torch

from nmt.config import SearchConfig, TrainConfig
from nmt.data.batching import make_batches
from nmt.data.dataset import ParallelDataset
from nmt.device import attention_kernels, autocast
from nmt.search.beam import beam_search
from nmt.train import distributed
from nmt.train.pairs import PairRows
from nmt.train.loss import label_smoothed_nll_loss
from nmt.vocab import Vocab

# Validation decodes with a tight length limit: early models repeat themselves until the limit.
VALID_MAX_LEN_A, VALID_MAX_LEN_B = 1.5, 10


@torch.no_grad()
def validate(model, data: ParallelDataset, references: list[str], vocab: Vocab, config: TrainConfig, ranks,
             device: torch.device, deadline: float = math.inf, message=lambda text: None) -> dict:
    """valid_loss, valid_nll_loss, valid_ppl and (config.valid_bleu) valid_bleu, in the training's precision.
    Decoding an untrained model's outputs to the length limit can take long: past `deadline`
    (time.monotonic()), BLEU is left out of this validation and `message` says so (the loss is always computed)."""
    model.eval()
    loss_sum = nll_sum = 0.0
    tokens = 0
    plan = make_batches(data.src_lengths, data.tgt_lengths, config.max_tokens, shuffle=False)
    search = SearchConfig(beam=config.valid_beam, max_len_a=VALID_MAX_LEN_A, max_len_b=VALID_MAX_LEN_B)
    hypotheses: dict[int, str] = {}
    out_of_time = False
    for indices in plan.batches[ranks.rank::ranks.world_size]:  # every batch, none dropped
        batch = data.collate(indices).to(device)
        with autocast(device, config.precision), attention_kernels(device):
            output_mask = batch.target.ne(model.config.pad_id)
            logits = model(batch.src_tokens, batch.prev_tokens, output_mask)
        loss, nll = label_smoothed_nll_loss(logits, batch.target[output_mask], config.label_smoothing,
                                            model.config.pad_id)
        loss_sum, nll_sum, tokens = loss_sum + loss.item(), nll_sum + nll.item(), tokens + batch.tgt_count
        out_of_time = out_of_time or time.monotonic() > deadline
        if config.valid_bleu and not out_of_time:
            with autocast(device, config.precision), attention_kernels(device):
                results = beam_search(model, batch.src_tokens, search)
            for index, text in zip(indices, vocab.decode([hyps[0].tokens for hyps in results])):
                hypotheses[int(index)] = text
    loss_sum, nll_sum, tokens, late_ranks = distributed.all_reduce_sum(
        [loss_sum, nll_sum, tokens, float(out_of_time)], device, ranks)
    tokens = max(tokens, 1)
    metrics = {"valid_loss": round(loss_sum / tokens, 4), "valid_nll_loss": round(nll_sum / tokens, 4),
               "valid_ppl": round(math.exp(min(nll_sum / tokens, 50)), 2)}
    if config.valid_bleu and late_ranks:
        message(f"validation BLEU left out: decoding the valid split would have run past --max-time "
                f"{config.max_time:g} minutes")
    elif config.valid_bleu:
        for part in distributed.all_gather_objects(hypotheses, ranks):
            hypotheses.update(part)
        ordered = [hypotheses[i] for i in range(len(data))]
        metrics["valid_bleu"] = round(sacrebleu.corpus_bleu(ordered, [references]).score, 2)
    return metrics


def validate_pairs(model, data, vocab: Vocab, config: TrainConfig, ranks, device: torch.device,
                   deadline: float = math.inf, message=lambda text: None) -> dict:
    """`validate` on a TrainingData: its valid split, or with several pairs each pair's rows on their own, the
    figures then the mean over the pairs (each pair counts alike, as the checkpoint choice should) and each pair's
    under `pairs`."""
    if not data.pairs:
        return validate(model, data.valid, data.valid_references, vocab, config, ranks, device, deadline, message)
    per_pair = {}
    for pair in data.pairs:
        start, end = pair.rows["valid"]
        per_pair[pair.name] = validate(model, PairRows(data.valid, start, end), data.valid_references[start:end],
                                       vocab, config, ranks, device, deadline, message)
    figures = list(per_pair.values())
    mean_nll = sum(f["valid_nll_loss"] for f in figures) / len(figures)
    metrics = {"valid_loss": round(sum(f["valid_loss"] for f in figures) / len(figures), 4),
               "valid_nll_loss": round(mean_nll, 4), "valid_ppl": round(math.exp(min(mean_nll, 50)), 2)}
    if all("valid_bleu" in f for f in figures):
        metrics["valid_bleu"] = round(sum(f["valid_bleu"] for f in figures) / len(figures), 2)
    return {**metrics, "pairs": per_pair}
