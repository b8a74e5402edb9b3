"""The CTranslate2 engine: a folder written by `nmt export ctranslate2`, decoded by CTranslate2's C++ beam search
(`nmt translate --engine ctranslate2`, `nmt serve --engine ctranslate2`).

CTranslate2 normalizes beam scores by |Y|^alpha only: the commands use `--lenpen-style length` with it unless told
otherwise (and say so when told another style); this class refuses any other style. It has no forced prefixes,
constrained search or attention output: those options are refused before a model loads
(nmt.engines.spec.check_engine_options).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nmt.config import SearchConfig
from nmt.engines.base import Translation, encode_lines, sampling_seed
from nmt.errors import NmtError
from nmt.export.ctranslate2 import import_ctranslate2, position_rows, read_marker
from nmt.export.shortlist import VMAP_FILE
from nmt.vocab import TargetLanguage, Vocab


class CTranslate2Translator:
    """The Engine protocol (nmt.engines.base) over a CTranslate2 model folder written by `export_ctranslate2`."""

    grown_beam = 0  # no constrained search, so never a grown beam
    records_attention = False

    def __init__(self, model_dir: Path, search: SearchConfig | None = None, device: str | None = None,
                 max_tokens: int = 6000, quantize: str | None = None, threads: int | None = None,
                 precision: str = "fp32", target_language: str | None = None):
        ctranslate2 = import_ctranslate2()
        self.search = search or SearchConfig()
        self.search.validate()
        if not (model_dir / "model.bin").is_file() or not (model_dir / "spm.model").is_file():
            hint = ("; an nmt checkpoint decodes with --engine torch (the default), or export it first: "
                    f"nmt export ctranslate2 {model_dir} DIR") if Path(model_dir).is_file() else ""
            raise NmtError(f"{model_dir}: not a model folder written by `nmt export ctranslate2`{hint}")
        if self.search.lenpen_style != "length" and not self.search.sampling:
            raise NmtError("CTranslate2 normalizes scores by |Y|^alpha only: add --lenpen-style length")
        marker = read_marker(model_dir)
        self.src_lang, self.tgt_lang = marker.get("src"), marker.get("tgt")  # the language pair, as exported
        self.pairs = [tuple(pair) for pair in marker.get("pairs") or []]  # a multilingual model's, as trained
        files = marker.get("vocab_files")
        self.vocab = Vocab.from_folder(model_dir, files if isinstance(files, dict) else {"spm_model": "spm.model"})
        self.language = TargetLanguage(self.vocab.language_tokens, target_language)
        compute_type = _compute_type(quantize, precision)
        device = device or ("cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu")
        try:
            self.translator = ctranslate2.Translator(str(model_dir), device=device, compute_type=compute_type,
                                                     intra_threads=threads or 0, inter_threads=1)
        except ValueError as error:  # e.g. a compute type this device does not support
            raise NmtError(f"CTranslate2 cannot load {model_dir} on {device}: {error}") from None
        self.max_tokens = max_tokens
        # A shortlist exported beside the model (nmt.export.shortlist): each batch's output layer covers only the
        # target pieces its sources map to.
        self.shortlist = (model_dir / VMAP_FILE).is_file()
        # The position table written at export bounds both sides: longer sources are cut (and counted), as the
        # torch engine does, and outputs end within it.
        self.positions = position_rows(model_dir)
        self.max_source_tokens = min(1024, self.positions)
        self.truncated = 0

    def translate(self, lines: list[str], prefixes: list[str] | None = None, search: SearchConfig | None = None,
                  record_attention: bool | None = None,
                  constraints: list[list[str]] | None = None,
                  abandoned: Callable[[], set[int]] | None = None) -> list[list[Translation]]:
        """As nmt.engines.base.Engine.translate; prefixes, constraints and attention are refused. CTranslate2
        decodes a call in one piece: lines `abandoned` before it starts are left out, later ones run to the end."""
        if prefixes is not None:
            raise NmtError("--prefix-file is not supported with --engine ctranslate2")
        if constraints is not None and any(constraints):
            raise NmtError(CONSTRAINTS_REFUSED)
        if record_attention:
            raise NmtError("the encoder-decoder attention is not available with --engine ctranslate2")
        encoded = encode_lines(lines, self.vocab, self.language, self.max_source_tokens)
        results, todo, ids = encoded.results, encoded.todo, encoded.ids
        if abandoned is not None and (gone := abandoned()):
            todo, ids = [i for i in todo if i not in gone], [line for i, line in zip(todo, ids) if i not in gone]
        if not todo:
            return results
        piece = self.vocab.source.piece
        sources = [[piece(token) for token in line] for line in ids]  # CTranslate2 appends the eos itself
        self.truncated += encoded.truncated
        search = search or self.search
        longest = max(len(s) for s in sources) + 1
        options = dict(max_batch_size=self.max_tokens, batch_type="tokens", num_hypotheses=search.nbest,
                       return_scores=True, length_penalty=search.lenpen, max_input_length=0,
                       max_decoding_length=min(int(longest * search.max_len_a + search.max_len_b),
                                               self.positions - 1),
                       min_decoding_length=max(0, search.min_len - 1),
                       no_repeat_ngram_size=search.no_repeat_ngram_size, use_vmap=self.shortlist)
        if search.sampling:
            options.update(beam_size=1, sampling_topk=search.topk, sampling_topp=search.topp,
                           sampling_temperature=search.temperature)
            import_ctranslate2().set_random_seed(sampling_seed(search.seed, lines))  # as the torch engine: per call
        else:
            options.update(beam_size=search.beam)
        outputs = self.translator.translate_batch(sources, **options)
        for index, source, output in zip(todo, sources, outputs):
            results[index] = [Translation(self.vocab.target.processor.decode_pieces(tokens), float(score),
                                          list(tokens), source)
                              for tokens, score in zip(output.hypotheses, output.scores)]
        return encoded.mark_truncated(results)

    def constraint_pieces(self, phrases: list[str], search: SearchConfig, prefix_length: int = 0,
                          index: int = 0) -> list[list[int]]:
        """No constrained search here: any phrase is refused."""
        if phrases:
            raise NmtError(CONSTRAINTS_REFUSED)
        return []


CONSTRAINTS_REFUSED = ("constraints (--constraints, --glossary) are not supported with --engine ctranslate2: "
                       "CTranslate2 has no constrained search; use --engine torch")


def _compute_type(quantize: str | None, precision: str) -> str:
    """CTranslate2's compute type for --quantize and --precision."""
    compute_type = {"int8": "int8", None: "default", "none": "default"}.get(quantize)
    if compute_type is None:
        raise NmtError(f"--quantize must be int8 or none, got {quantize!r}")
    if precision != "fp32":
        if quantize == "int8":
            raise NmtError("--precision bf16/fp16 and --quantize int8 are two ways to decode in less precision: "
                           "choose one")
        compute_type = {"bf16": "bfloat16", "fp16": "float16"}.get(precision)
        if compute_type is None:
            raise NmtError(f"--precision must be fp32, bf16 or fp16, got {precision!r}")
    return compute_type
