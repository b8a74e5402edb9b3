"""Models that move: fine-tuning on a parent's vocabulary (`nmt prepare --vocab`, `nmt train --init-from`) and the
export to Hugging Face transformers, checked against the real library (offline: everything is built here)."""

import gzip
import json
import math

import pytest
import torch

from conftest import SHARED_MULTI30K, requires_multi30k, run_nmt
from nmt.checkpoint import load_checkpoint, load_model

pytestmark = requires_multi30k


def write_part(folder, name, start, count):
    """Lines start..start+count of Multi30k's training split, as NAME.en / NAME.de."""
    folder.mkdir(parents=True, exist_ok=True)
    for lang in ("en", "de"):
        with gzip.open(SHARED_MULTI30K / f"train.{lang}.gz", "rt", encoding="utf-8") as handle:
            lines = [line for i, line in enumerate(handle) if start <= i < start + count]
        (folder / f"{name}.{lang}").write_text("".join(lines), encoding="utf-8")


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    """A transformer_tiny trained for a few hundred updates on 12,000 Multi30k pairs: its outputs depend on the input
    and end. Returns (its checkpoint, the folder holding the text)."""
    root = tmp_path_factory.mktemp("parent")
    write_part(root / "text", "train", 0, 12_000)
    write_part(root / "text", "valid", 12_000, 300)
    run_nmt("prepare", "custom", "--src", "en", "--tgt", "de", "--train", str(root / "text" / "train"), "--valid",
            str(root / "text" / "valid"), "--vocab-size", "2000", "--out", str(root / "data"))
    run_nmt("train", str(root / "data"), "--arch", "transformer_tiny", "--save-dir", str(root / "run"),
            "--max-updates", "400", "--max-tokens", "2048", "--lr", "1.0", "--warmup", "200", "--dropout", "0.0",
            "--no-valid-bleu", "--save-interval-updates", "400", "--threads", "2", timeout=900)
    return root / "run" / "checkpoint_last.pt", root


def test_the_documented_fine_tuning_runs_and_starts_from_the_parents_weights(parent, tmp_path):
    checkpoint, root = parent
    write_part(tmp_path / "domain", "train", 20_000, 1_500)
    write_part(tmp_path / "domain", "valid", 21_500, 100)
    # As docs/training.md shows it: the parent's vocabulary, then --init-from with another dropout.
    run_nmt("prepare", "custom", "--src", "en", "--tgt", "de", "--train", str(tmp_path / "domain" / "train"),
            "--valid", str(tmp_path / "domain" / "valid"), "--vocab", str(checkpoint), "--out", str(tmp_path / "data"))
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert manifest["spm"]["given"] == str(checkpoint)
    assert (tmp_path / "data" / "spm.model").read_bytes() == load_checkpoint(checkpoint)["vocab"].numpy().tobytes()
    result = run_nmt("train", str(tmp_path / "data"), "--init-from", str(checkpoint), "--dropout", "0.2",
                     "--save-dir", str(tmp_path / "tuned"), "--max-updates", "0", "--max-epochs", "1",
                     "--no-valid-bleu", "--threads", "2")
    assert "transformer_tiny" in result.stderr

    # The weights really carried over: before any update, the fine-tuning model's loss on the first batch of the new
    # data is the parent's (eval mode: no dropout).
    from nmt.config import replace_fields
    from nmt.data.batching import make_batches
    from nmt.data.binary import load_manifest
    from nmt.data.dataset import ParallelDataset
    from nmt.model.transformer import build_model
    from nmt.train.loss import label_smoothed_nll_loss

    data = ParallelDataset(tmp_path / "data", "train", load_manifest(tmp_path / "data"))
    batch = data.collate(make_batches(data.src_lengths, data.tgt_lengths, 1024, shuffle=False).batches[0])
    parent_model, _, payload = load_model(checkpoint)
    child = build_model(replace_fields(parent_model.config, {"dropout": 0.2}))
    from nmt.train.state import init_from_weights
    from nmt.vocab import Vocab
    child.load_state_dict(init_from_weights(checkpoint, tmp_path / "data",
                                            Vocab.from_file(tmp_path / "data" / "spm.model"), child.config))
    child.eval()

    def loss(model):
        with torch.no_grad():
            mask = batch.target.ne(0)
            return label_smoothed_nll_loss(model(batch.src_tokens, batch.prev_tokens, mask), batch.target[mask], 0.1,
                                           0)[0].item()
    assert loss(child) == loss(parent_model)
    # And the run's own first update was trained from there: its first logged loss is near the parent's.
    first = json.loads((tmp_path / "tuned" / "metrics.jsonl").read_text().splitlines()[0])
    assert first["loss"] < 0.75 * math.log(manifest["vocab_size"])  # a model from scratch starts near log |V|


@pytest.fixture(scope="module")
def exported(parent, tmp_path_factory):
    pytest.importorskip("transformers")
    checkpoint, _ = parent
    out = tmp_path_factory.mktemp("hf") / "model"
    run_nmt("export", "huggingface", str(checkpoint), str(out))
    return out


def test_hf_logits_equal_ours_on_a_padded_batch(parent, exported):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    checkpoint, _ = parent
    model, vocab, _ = load_model(checkpoint)
    hf = AutoModelForSeq2SeqLM.from_pretrained(exported).eval()
    tokenizer = AutoTokenizer.from_pretrained(exported)
    lines = ["A man rides a bike down the street.", "Two dogs play.", "A little girl in a pink dress is climbing."]
    batch = tokenizer(lines, return_tensors="pt", padding=True)
    ours = [vocab.encode_source([line])[0] + [3] for line in lines]
    assert [row[row.ne(0)].tolist() for row in batch["input_ids"]] == ours  # the same pieces and ids
    prev = torch.tensor([[2, 40, 41, 42, 43], [2, 50, 51, 0, 0], [2, 60, 61, 62, 0]])
    with torch.no_grad():
        theirs = hf(**batch, decoder_input_ids=prev).logits
        mine = model(batch["input_ids"], prev)
    mask = prev.ne(0)
    assert (theirs[mask] - mine[mask]).abs().max().item() < 1e-4


def test_hf_greedy_and_beam_search_give_nmt_translates_tokens(parent, exported, tmp_path):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    checkpoint, root = parent
    lines = (root / "text" / "valid.en").read_text(encoding="utf-8").splitlines()[:100]
    source = tmp_path / "src.en"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    hf = AutoModelForSeq2SeqLM.from_pretrained(exported).eval()
    tokenizer = AutoTokenizer.from_pretrained(exported)
    model, vocab, _ = load_model(checkpoint)

    def nmt_tokens(*options):
        out = run_nmt("translate", "--checkpoint", str(checkpoint), "--input", str(source), "--json", *options)
        return [json.loads(line)["tokens"] for line in out.stdout.splitlines()]

    def hf_tokens(line, **options):
        batch = tokenizer([line], return_tensors="pt")
        limit = int(batch["input_ids"].shape[1] * 1.0 + 50)  # nmt translate's default: source (eos in) + 50
        with torch.no_grad():
            ids = hf.generate(**batch, max_length=limit + 1, **options)[0].tolist()
        return [vocab.target.piece(i) for i in ids[1:] if i not in (0, 3)]

    greedy = nmt_tokens("--beam", "1")
    assert [hf_tokens(line, num_beams=1) for line in lines] == greedy
    beam = nmt_tokens("--beam", "4", "--lenpen", "0.6", "--lenpen-style", "length")
    theirs = [hf_tokens(line, num_beams=4, length_penalty=0.6, early_stopping=True) for line in lines]
    same = sum(a == b for a, b in zip(theirs, beam))
    assert same >= 98, [(a, b) for a, b in zip(theirs, beam) if a != b][:3]


def test_the_pipeline_translates_as_nmt_translate(parent, exported):
    import transformers
    from transformers import pipeline

    if int(transformers.__version__.split(".")[0]) >= 5:
        pytest.skip("transformers 5 removed pipeline('translation'); the test extra installs transformers 4")

    checkpoint, _ = parent
    line = "A man in a blue shirt is standing on a ladder."
    ours = run_nmt("translate", "--checkpoint", str(checkpoint), "--lenpen-style", "length", input=line + "\n")
    translated = pipeline("translation", model=str(exported), tokenizer=str(exported))(line)[0]["translation_text"]
    assert translated == ours.stdout.strip()
    card = (exported / "README.md").read_text()
    assert "pipeline_tag: translation" in card and "AutoModelForSeq2SeqLM" in card
    assert "pypi.org" not in card  # the `nmt` on PyPI is another project
    modes = {path.name: path.stat().st_mode & 0o777 for path in exported.iterdir()}
    assert len(set(modes.values())) == 1, modes  # model.safetensors as readable as the files beside it


def test_what_marianmt_cannot_hold_and_what_is_not_a_model_are_refused(parent, tmp_path):
    pytest.importorskip("transformers")
    checkpoint, _ = parent
    payload = load_checkpoint(checkpoint)
    from nmt.checkpoint import save_checkpoint
    for field in ("learned_positions", "pre_norm"):
        variant = dict(payload, model_config={**payload["model_config"], field: True})
        from nmt.config import ModelConfig, from_dict
        from nmt.model.transformer import build_model
        model = build_model(from_dict(ModelConfig, variant["model_config"]))
        variant["model"] = {k: v.clone() for k, v in model.state_dict().items()}
        save_checkpoint(variant, tmp_path / f"{field}.pt")
        result = run_nmt("export", "huggingface", str(tmp_path / f"{field}.pt"), str(tmp_path / f"out-{field}"),
                         check=False)
        line = result.stderr.strip().splitlines()[-1]
        assert result.returncode == 1 and "no MarianMT counterpart" in line, result.stderr
        assert not (tmp_path / f"out-{field}").exists()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(checkpoint.read_bytes()[:5000])
    result = run_nmt("export", "huggingface", str(truncated), str(tmp_path / "out-t"), check=False)
    assert result.returncode == 1 and "truncated or corrupt" in result.stderr.strip().splitlines()[-1]
    state_only = tmp_path / "state.pt"
    torch.save({"optimizer": {"state": {}}}, state_only)
    result = run_nmt("export", "huggingface", str(state_only), str(tmp_path / "out-s"), check=False)
    assert result.returncode == 1 and "not an nmt checkpoint" in result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("case", ["not spm", "size differs"])
def test_bad_vocab_options_end_in_one_line(parent, tmp_path, case):
    checkpoint, root = parent
    not_spm = tmp_path / "vocab.txt"
    not_spm.write_text("this is not a SentencePiece model\n")
    args = ["prepare", "custom", "--src", "en", "--tgt", "de", "--train", str(root / "text" / "valid"),
            "--valid", str(root / "text" / "valid"), "--out", str(tmp_path / "data")]
    args += ["--vocab", str(not_spm)] if case == "not spm" else ["--vocab", str(checkpoint), "--vocab-size", "4000"]
    result = run_nmt(*args, check=False)
    line = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 1 and line.startswith("error:") and "Traceback" not in result.stderr
    assert ("neither a SentencePiece model nor an nmt checkpoint" in line if case == "not spm"
            else "--vocab-size 4000 differs" in line), line
