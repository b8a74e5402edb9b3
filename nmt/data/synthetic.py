"""Synthetic training corpora beside the parallel ones: back-translations (monolingual target text translated
backwards) and a teacher's translations (sequence-level distillation).

`nmt prepare ... --synthetic bt` adds bt.SRC and bt.TGT (or .gz) to the training split only; valid and test stay the
real data. Each synthetic corpus may be

- tagged: its sources start with a token of its own (`--synthetic-tag '<BT>'`; tagged back-translation, Caswell et
  al. 2019), a piece of its own in the vocabulary, so that the model can tell synthetic sources from real ones;
- weighted: each epoch draws `weight` times its sentences (whole repeats, then a seeded sample of the rest; 0.5:
  a different half each epoch), against the parallel data's once (nmt.train.pairs does the drawing).

The manifest's `train_corpora` records each corpus of the training split: its rows, tag and weight.
"""

from __future__ import annotations

from nmt.data.prepare_options import SyntheticCorpus
from nmt.errors import NmtError
from nmt.ranges import check_ranges
from nmt.vocab import SPECIAL_PIECES, is_tag


def synthetic_corpora(prefixes: list[str], tags: list[str], weights: list[float]) -> list[SyntheticCorpus]:
    """The --synthetic corpora with their --synthetic-tag and --synthetic-weight: each given once (for all of them)
    or once per corpus, in order."""
    if not prefixes:
        if tags or weights:
            raise NmtError(f"{'--synthetic-tag' if tags else '--synthetic-weight'} is for --synthetic corpora: give "
                           "one with --synthetic PREFIX")
        return []
    per_corpus = []
    for flag, values, default in (("--synthetic-tag", tags, ""), ("--synthetic-weight", weights, 1.0)):
        if len(values) not in (0, 1, len(prefixes)):
            raise NmtError(f"{flag} given {len(values)} times for {len(prefixes)} --synthetic corpora: give it once "
                           "(for all) or once per corpus, in their order")
        per_corpus.append(list(values) * len(prefixes) if len(values) == 1 else list(values) or
                          [default] * len(prefixes))
    if len(set(prefixes)) != len(prefixes):
        raise NmtError("--synthetic names a corpus twice; to draw it more often, give it a --synthetic-weight")
    corpora = [SyntheticCorpus(prefix, tag, weight) for prefix, tag, weight in zip(prefixes, *per_corpus)]
    for corpus in corpora:
        check_ranges(corpus, lambda name: "--synthetic-weight")
        if corpus.tag:
            check_tag(corpus.tag, "--synthetic-tag")
    return corpora


def check_tag(tag: str, flag: str) -> None:
    """A tag must look like one (`<BT>`), so that no text is taken for it, and be none of the pieces the
    vocabulary already gives a meaning (specials, bytes, language tokens)."""
    if tag in SPECIAL_PIECES or tag.startswith(">>"):
        raise NmtError(f"{flag} {tag!r} collides with a piece the vocabulary already has a meaning for (special "
                       "pieces, >>xx<< language tokens): choose another, e.g. <BT>")
    if not is_tag(tag):
        raise NmtError(f"{flag} {tag!r} is not a tag: write it <NAME>, a name of at most 16 letters, digits, _ or "
                       "- (e.g. <BT>), so that it is one piece of its own that no text produces")


def check_tags_in_vocabulary(vocab, tags: list[str], source: str) -> None:
    """A given vocabulary (--vocab) must have each tag as a piece of its own: otherwise the tag would be cut into
    pieces of text, and the text `<BT>` could not be told from the tag."""
    missing = [tag for tag in dict.fromkeys(tags) if tag and tag not in vocab.tags]
    if missing:
        have = ", ".join(vocab.tags) or "none"
        raise NmtError(f"--vocab {source}: {', '.join(missing)} is not a piece of its own in this vocabulary (its "
                       f"tags: {have}), so the tag would collide with text; prepare the parent's data with "
                       f"--reserve-tag {missing[0]}, or use no tag")


def train_corpora_entries(names: list[str], tags: list[str], weights: list[float], sentences: list[int],
                          synthetic: list[bool]) -> list[dict]:
    """The manifest's `train_corpora`: each training corpus's rows of the split (they follow one another, in the
    order given), tag, weight, and whether it is synthetic."""
    entries, row = [], 0
    for name, tag, weight, count, made in zip(names, tags, weights, sentences, synthetic):
        entries.append({"name": name, "rows": [row, row + count], "tag": tag, "weight": weight,
                        "synthetic": made})
        row += count
    return entries
