"""Documents: paragraphs translated sentence by sentence against the old way (a paragraph as one sentence), and the
sentence splitters compared.

    python benchmarks/documents.py --checkpoint runs/multi30k-en-de/checkpoints/averaged.pt

Paragraphs are three consecutive test_2016_flickr sentences joined by a space (and their references likewise). The
search is what `nmt translate` and `nmt serve` use: the checkpoint's stored settings (`nmt tune`), else beam 4 and
length penalty 0.6.
Writes benchmarks/results/documents.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import sacrebleu

REPO = Path(__file__).resolve().parent.parent
MULTI30K = REPO.parent / "shared" / "data" / "multi30k"

# Hand-written cases with the boundaries a reader expects (abbreviations, ordinals, quotes, times).
HARD = {
    "de": [["Dr. Müller kam um 10 Uhr.", "Er sagte: „Das ist gut.“", "Dann ging er z. B. nach Hause."],
           ["Am 3. Oktober ist Feiertag.", "Die Läden sind zu."], ["Das kostet ca. 5 Euro.", "Wirklich?"]],
    "fr": [["M. Dupont est arrivé à 10 h.", "Il a dit : « C'est bien. »", "Puis il est parti."],
           ["Le chat dort.", "Il fait beau aujourd'hui !", "Nous partons demain."],
           ["Voir p. 12 du rapport.", "Merci."]],
    "en": [["Mr. Smith went to Washington.", "He arrived at 5 p.m. yesterday."],
           ["The U.S. economy grew.", "Prices fell."], ["It cost $3.50 at No. 5 Main St.", "Why?"]],
}


def lines(name: str) -> list[str]:
    with gzip.open(MULTI30K / name, "rt", encoding="utf-8") as handle:
        return [line.rstrip("\n") for line in handle]


def paragraphs(sentences: list[str], size: int = 3) -> list[list[str]]:
    return [sentences[i: i + size] for i in range(0, len(sentences) - size + 1, size)]


def splitters():
    import pysbd
    import sentence_splitter
    import sentencex

    return {
        "sentencex": lambda lang, text: [s.strip() for s in sentencex.segment(lang, text) if s.strip()],
        "pysbd": lambda lang, text: [s.strip() for s in pysbd.Segmenter(language=lang, clean=False).segment(text)
                                     if s.strip()],
        "moses (sentence-splitter)": lambda lang, text: sentence_splitter.SentenceSplitter(language=lang).split(text),
    }


def compare_splitters() -> dict:
    results = {}
    for name, split in splitters().items():
        row = {}
        start = time.perf_counter()
        for lang in ("en", "de", "fr", "cs"):
            groups = paragraphs(lines(f"test_2016_flickr.{lang}.gz"))
            try:
                exact = sum(split(lang, " ".join(group)) == group for group in groups)
            except ValueError as error:  # pysbd knows no Czech
                row[f"multi30k {lang}"] = f"refused: {str(error)[:40]}"
                continue
            row[f"multi30k {lang}"] = round(exact / len(groups), 4)
        seconds = time.perf_counter() - start
        for lang, cases in HARD.items():
            row[f"hard {lang}"] = f"{sum(split(lang, ' '.join(case)) == case for case in cases)}/{len(cases)}"
        row["seconds (multi30k, 4 languages)"] = round(seconds, 2)
        results[name] = row
    return results


def bleu_of_paragraphs(checkpoint: Path) -> dict:
    from nmt.documents.engine import DocumentEngine
    from nmt.engines.pytorch import Translator
    from nmt.engines.spec import resolve_search

    sources, references = lines("test_2016_flickr.en.gz"), lines("test_2016_flickr.de.gz")
    groups, reference_groups = paragraphs(sources), paragraphs(references)
    joined_sources = [" ".join(group) for group in groups]
    joined_references = [" ".join(group) for group in reference_groups]
    engine = Translator(checkpoint, resolve_search([checkpoint], "torch").search)  # as nmt translate and serve do
    documents = DocumentEngine(engine)

    def best(translations):
        return [t[0].text for t in translations]

    def bleu(hypotheses, refs):
        score = sacrebleu.corpus_bleu(hypotheses, [refs])
        return {"bleu": round(score.score, 2), "brevity_penalty": round(score.bp, 3)}

    one_by_one = best(engine.translate(sources[: 3 * len(groups)]))
    results = {
        "paragraph as one sentence (no splitting)": bleu(best(engine.translate(joined_sources)), joined_references),
        "paragraph, --split-sentences": bleu(best(documents.translate(joined_sources)), joined_references),
        "sentences one by one, joined": bleu([" ".join(one_by_one[i: i + 3]) for i in range(0, len(one_by_one), 3)],
                                             joined_references),
        "a sentence a line, without splitting": bleu(best(engine.translate(sources)), references),
        "a sentence a line, --split-sentences": bleu(best(documents.translate(sources)), references),
    }
    return results


def bleu_through_libretranslate(checkpoint: Path) -> dict:
    """The paragraphs through a running `nmt serve`'s LibreTranslate `/translate`, 32 texts a request."""
    import httpx
    from serve_document import running_server

    groups, reference_groups = paragraphs(lines("test_2016_flickr.en.gz")), paragraphs(lines("test_2016_flickr.de.gz"))
    with running_server(checkpoint) as url:
        source, target = (httpx.get(url + "/health", timeout=10).json()[side] for side in ("source", "target"))
        texts = [" ".join(group) for group in groups]
        translated = []
        for start in range(0, len(texts), 32):
            answer = httpx.post(url + "/translate", json={"q": texts[start: start + 32], "source": source,
                                                          "target": target}, timeout=600)
            answer.raise_for_status()
            translated += answer.json()["translatedText"]
    score = sacrebleu.corpus_bleu(translated, [[" ".join(group) for group in reference_groups]])
    return {"bleu": round(score.score, 2), "brevity_penalty": round(score.bp, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "documents.json")
    args = parser.parse_args()
    results = {"splitters": compare_splitters()}
    print(json.dumps(results, indent=2, ensure_ascii=False))
    results["bleu"] = bleu_of_paragraphs(args.checkpoint)
    results["bleu"]["paragraph, LibreTranslate /translate (nmt serve)"] = bleu_through_libretranslate(args.checkpoint)
    results["checkpoint"] = str(args.checkpoint)
    print(json.dumps(results["bleu"], indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
