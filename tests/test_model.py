"""The Transformer: parameter counts from Table 3, decoding paths that must agree, presets and overrides."""

import pytest
import torch

from nmt.config import ConfigError, ModelConfig, preset, transformer_tiny
from nmt.model.transformer import build_model, closed_form_parameter_count, count_parameters, sinusoid_table


@pytest.mark.parametrize("arch, vocab_size, expected", [
    ("transformer_small", 8000, 7_577_600),
    ("transformer_base", 37000, 63_082_496),  # paper: 65M
    ("transformer_big", 37000, 214_245_376),  # paper: 213M
])
def test_parameter_counts_equal_the_closed_form_and_the_integers(arch, vocab_size, expected):
    config = preset(arch).model
    config.vocab_size = vocab_size
    model = build_model(config)
    assert count_parameters(model) == expected
    assert closed_form_parameter_count(config) == expected


@pytest.mark.parametrize("overrides", [{"pre_norm": True}, {"learned_positions": True, "max_positions": 64}])
def test_variants_count_their_extra_parameters(overrides):
    config = ModelConfig(vocab_size=100, encoder_layers=2, decoder_layers=1, d_model=32, d_ff=64, heads=4,
                         **overrides)
    assert count_parameters(build_model(config)) == closed_form_parameter_count(config)


def test_paper_presets_carry_table3_and_section5_values():
    base, big = preset("transformer_base"), preset("transformer_big")
    assert (base.model.d_model, base.model.d_ff, base.model.heads, base.model.dropout) == (512, 2048, 8, 0.1)
    assert (big.model.d_model, big.model.d_ff, big.model.heads, big.model.dropout) == (1024, 4096, 16, 0.3)
    for p in (base, big):
        assert (p.train.warmup, p.train.adam_beta1, p.train.adam_beta2, p.train.adam_eps) == (4000, 0.9, 0.98, 1e-9)
        assert p.train.label_smoothing == 0.1
        assert p.model.attention_dropout == 0.0 and not p.model.pre_norm
    assert base.train.max_updates == 100_000 and big.train.max_updates == 300_000


def test_small_corpus_is_transformer_small_trained_as_the_recipe_search_chose():
    """The README's job: transformer_small's model, and only the training settings the search measured changed;
    transformer_small itself keeps its meaning."""
    small, chosen = preset("transformer_small"), preset("small_corpus")
    assert chosen.model == small.model
    changed = {key: value for key, value in vars(chosen.train).items() if vars(small.train)[key] != value}
    assert changed == {"precision": "auto", "lr": 0.7}
    assert (small.train.precision, small.train.lr) == ("fp32", 0.35)


def test_sinusoids_follow_the_formula():
    table = sinusoid_table(50, 8)
    pos, i = 17, 1
    assert table[pos, 2 * i].item() == pytest.approx(torch.sin(torch.tensor(pos / 10000 ** (2 * i / 8))).item(),
                                                     abs=1e-6)
    assert table[pos, 2 * i + 1].item() == pytest.approx(torch.cos(torch.tensor(pos / 10000 ** (2 * i / 8))).item(),
                                                         abs=1e-6)


def test_embeddings_are_scaled_and_pad_is_zero():
    config = transformer_tiny().model
    config.vocab_size = 50
    model = build_model(config)
    std = model.embed_tokens.weight[1:].std().item()
    assert std == pytest.approx(config.d_model ** -0.5, rel=0.15)  # N(0, d_model^-0.5)
    assert model.embed_tokens.weight[config.pad_id].abs().sum() == 0


def test_the_output_projection_is_the_embedding_matrix():
    """Section 3.4: source, target and pre-softmax weights are one matrix. No (V, d) weight but the embedding is
    stored, the logits are the decoder's hidden states times that matrix, and a gradient from the output side alone
    reaches the embedding rows of the target words."""
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=40, encoder_layers=1, decoder_layers=1, d_model=16, d_ff=32, heads=2, dropout=0.0)
    model = build_model(config).eval()
    vocab_by_model = [name for name, tensor in model.state_dict().items() if tuple(tensor.shape) == (40, 16)]
    assert vocab_by_model == ["embed_tokens.weight"]
    src = torch.tensor([[5, 6, 7, 3]])
    prev = torch.tensor([[2, 8, 9]])
    hidden = model.decode_hidden(prev, model.encode(src))
    logits = model.decode(prev, model.encode(src))
    assert torch.allclose(logits, hidden @ model.embed_tokens.weight.t(), atol=1e-6)

    targets = torch.tensor([11, 12, 13])
    loss = torch.nn.functional.cross_entropy(model.output_projection(hidden.detach())[0], targets)
    loss.backward()  # the hidden states are detached: only the output projection carries a gradient
    grad = model.embed_tokens.weight.grad
    assert grad is not None and bool((grad[targets].abs().sum(dim=1) > 0).all())
    assert grad[[5, 6, 7, 8, 9]].abs().sum() > 0  # every row gets the softmax's share, target rows the most
    assert bool((grad[targets].norm(dim=1) > grad[[20, 21, 22]].norm(dim=1)).all())


@pytest.mark.parametrize("pre_norm", [False, True])
def test_decode_step_with_cache_equals_full_prefix_decoding(pre_norm):
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=30, encoder_layers=2, decoder_layers=2, d_model=32, d_ff=64, heads=4,
                         pre_norm=pre_norm)
    model = build_model(config).eval()
    src = torch.randint(4, 30, (3, 6))
    src[:, -1] = config.eos_id
    src[0, 3:] = config.pad_id
    src[0, 2] = config.eos_id
    prefix = torch.randint(4, 30, (3, 5))
    prefix[:, 0] = config.bos_id
    with torch.no_grad():
        encoder_out = model.encode(src)
        full = torch.log_softmax(model.decode(prefix, encoder_out), dim=-1)  # (B, T, V)
        state = model.init_state(encoder_out)
        steps = torch.stack([model.decode_step(prefix[:, t], state) for t in range(5)], dim=1)
        # Two rows per source (beams): the encoder-side keys and values are kept once per source.
        shared = model.init_state(encoder_out, rows_per_source=2)
        pairs = prefix.repeat_interleave(2, dim=0)  # (2B, T)
        paired = torch.stack([model.decode_step(pairs[:, t], shared) for t in range(5)], dim=1)
    torch.testing.assert_close(steps, full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(paired, full.repeat_interleave(2, dim=0), rtol=1e-5, atol=1e-5)
    assert shared.cross_caches[0].keys.shape[0] == 3  # one copy per source, not per row


def test_output_mask_selects_positions():
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=30, encoder_layers=1, decoder_layers=1, d_model=16, d_ff=32, heads=2)
    model = build_model(config).eval()
    src, prev = torch.randint(4, 30, (2, 5)), torch.randint(4, 30, (2, 4))
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    torch.testing.assert_close(model(src, prev, mask), model(src, prev)[mask])


def test_invalid_shapes_name_the_flag():
    with pytest.raises(ConfigError, match="--heads"):
        build_model(ModelConfig(vocab_size=10, d_model=30, heads=4))
    with pytest.raises(ConfigError, match="--dropout"):
        ModelConfig(dropout=1.5).validate()


def test_weights_packed_for_cpu_inference_give_the_same_logits():
    from nmt.model.packed import PackedLinear, pack_for_cpu_inference, packing_available

    if not packing_available():
        pytest.skip("this torch has no oneDNN linear")
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=50, encoder_layers=2, decoder_layers=2, d_model=32, d_ff=64, heads=4)
    model = build_model(config).eval()
    src, prev = torch.randint(4, 50, (3, 7)), torch.randint(4, 50, (3, 5))
    with torch.no_grad():
        expected = model(src, prev)
        assert pack_for_cpu_inference(model)
        packed = model(src, prev)
    assert not any(type(m) is torch.nn.Linear for m in model.modules())
    assert isinstance(model.packed_output_projection, PackedLinear)
    torch.testing.assert_close(packed, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("pre_norm", [False, True])
@pytest.mark.parametrize("sources", [2, 20])  # 8 rows: the small-row products; 80 rows: oneDNN's
def test_packed_decode_step_equals_the_layers_step(pre_norm, sources):
    """PackedDecoderStep, the one-function step of a packed model, gives the log-probabilities of the modules' step
    (DecoderLayer.step), with padded sources and four rows (beams) per source."""
    import copy

    from nmt.model.packed import PackedDecoderStep, SMALL_ROWS, pack_for_cpu_inference, packing_available

    if not packing_available():
        pytest.skip("this torch has no oneDNN linear")
    torch.manual_seed(1)
    config = ModelConfig(vocab_size=40, encoder_layers=1, decoder_layers=2, d_model=32, d_ff=64, heads=4,
                         pre_norm=pre_norm)
    plain = build_model(config).eval()
    with torch.no_grad():  # norms that differ from one another, so that one used for another shows
        for module in plain.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.1)
    packed = copy.deepcopy(plain)
    assert pack_for_cpu_inference(packed, small_rows=SMALL_ROWS)  # both kernels, whichever this CPU prefers
    assert isinstance(packed.packed_decode_step, PackedDecoderStep)
    src = torch.randint(4, 40, (sources, 6))
    src[:, -1] = config.eos_id
    src[0, 3:] = config.pad_id
    src[0, 2] = config.eos_id
    prefix = torch.randint(4, 40, (sources * 4, 5))
    assert (sources * 4 <= SMALL_ROWS) == (sources == 2)
    with torch.no_grad():
        states = [model.init_state(model.encode(src), rows_per_source=4) for model in (plain, packed)]
        expected, got = ([model.decode_step(prefix[:, t], state) for t in range(5)]
                         for model, state in zip((plain, packed), states))
        for e, g in zip(expected, got):
            torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)
    assert states[1].step == 5
