"""Does `torch.compile` make a single sentence's decoding step faster on this CPU? An A/B of one step, three ways.

    python benchmarks/compile_step.py --checkpoint CK [--threads 1] [--steps 30] [--label NAME]   # results/compile_step.json

- eager: `Transformer.decode_step` as `nmt translate` runs it (oneDNN-packed weights, nmt.model.packed).
- compiled, packed: the same step written as a function of its caches, compiled by inductor, with the packed
  products as opaque custom ops (inductor cannot see inside a packed weight), so that it fuses everything else
  (residuals, layer norms, attention, log-softmax).
- compiled, frozen: the step over plain nn.Linear layers, compiled with inductor's freezing, which packs the weights
  for oneDNN itself.

A sentence's four beams (4 rows), a 16-piece source, steps 1..--steps from empty caches, three timings each,
alternating. The outputs of the compiled steps are checked against eager's (log-probabilities within 1e-4). Compile
seconds are reported too: a translation pays them once per process and per new shape.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from decode_breakdown import cpu_model  # noqa: E402
from step_breakdown import record_result  # noqa: E402
from nmt.checkpoint import load_model  # noqa: E402
from nmt.model.packed import pack_for_cpu_inference  # noqa: E402

SOURCE_LENGTH = 16
ROWS = 4  # a sentence's beams

_PACKED: dict[int, torch.nn.Module] = {}  # custom-op key -> PackedLinear


@torch.library.custom_op("nmt_benchmark::packed_linear", mutates_args=())
def packed_linear(x: torch.Tensor, key: int) -> torch.Tensor:
    linear = _PACKED[key]
    return torch.ops.mkldnn._linear_pointwise(x, linear.packed, linear.bias, "none", [], "")


@packed_linear.register_fake
def _(x: torch.Tensor, key: int) -> torch.Tensor:
    return x.new_empty(x.shape[0], _PACKED[key].out_features)


def functional_step(model, linear, output):
    """decode_step of a post-norm model as a pure function of (x, self keys, self values, cross keys, cross values):
    `linear(x, layer)` is the product, `output(x)` the projection onto the vocabulary."""
    heads, head_dim = model.config.heads, model.config.d_model // model.config.heads
    layers = [(layer.self_attn.qkv_proj, layer.self_attn.out_proj, layer.self_attn_sublayer.norm,
               layer.cross_attn.q_proj, layer.cross_attn.out_proj, layer.cross_attn_sublayer.norm,
               layer.ffn.linear1, layer.ffn.linear2, layer.ffn_sublayer.norm) for layer in model.decoder_layers]

    def step(x, keys, values, cross_keys, cross_values):
        rows, d = x.shape
        new_keys, new_values = [], []
        for (qkv, out, norm1, q_proj, cross_out, norm2, ffn1, ffn2, norm3), k_cache, v_cache, ck, cv in zip(
                layers, keys, values, cross_keys, cross_values):
            q, k, v = linear(x, qkv).view(rows, 3, heads, 1, head_dim).unbind(1)
            k, v = torch.cat([k_cache, k], 2), torch.cat([v_cache, v], 2)
            new_keys.append(k)
            new_values.append(v)
            h = linear(F.scaled_dot_product_attention(q, k, v).reshape(rows, d), out)
            x = F.layer_norm(x + h, (d,), norm1.weight, norm1.bias, norm1.eps)
            q = linear(x, q_proj).view(1, rows, heads, head_dim).transpose(1, 2)
            h = F.scaled_dot_product_attention(q, ck, cv).transpose(1, 2).reshape(rows, d)
            x = F.layer_norm(x + linear(h, cross_out), (d,), norm2.weight, norm2.bias, norm2.eps)
            h = linear(torch.relu(linear(x, ffn1)), ffn2)
            x = F.layer_norm(x + h, (d,), norm3.weight, norm3.bias, norm3.eps)
        return F.log_softmax(output(x), dim=-1), new_keys, new_values
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--label", default="run")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "compile_step.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)

    plain, _, _ = load_model(args.checkpoint, torch.device("cpu"))
    plain.eval()
    if plain.config.pre_norm or plain.config.learned_positions:
        raise SystemExit("this A/B is written for post-norm models with sinusoidal positions (the presets)")
    packed, _, _ = load_model(args.checkpoint, torch.device("cpu"))
    packed.eval()
    if not pack_for_cpu_inference(packed, small_rows=0):
        raise SystemExit("this torch has no oneDNN linear")
    for module in [*packed.modules(), packed.packed_output_projection]:
        if hasattr(module, "packed"):
            _PACKED[id(module)] = module

    config = plain.config
    source = torch.randint(4, config.vocab_size, (1, SOURCE_LENGTH))
    source[0, -1] = config.eos_id
    tokens = torch.randint(4, config.vocab_size, (args.steps, ROWS))

    def embed(model, step):
        return model.target_embedding(tokens[step]) * model.embed_scale + model.embed_positions(1, step)

    def eager_pass():
        state = packed.init_state(packed.encode(source), ROWS)
        return [packed.decode_step(tokens[step], state) for step in range(args.steps)]

    def functional_pass(step_fn, model):
        state = model.init_state(model.encode(source), ROWS)
        cross_keys = [cache.keys for cache in state.cross_caches]
        cross_values = [cache.values for cache in state.cross_caches]
        heads, head_dim = config.heads, config.d_model // config.heads
        keys = [torch.empty(ROWS, heads, 0, head_dim) for _ in model.decoder_layers]
        values = [torch.empty(ROWS, heads, 0, head_dim) for _ in model.decoder_layers]
        outputs = []
        for step in range(args.steps):
            logprobs, keys, values = step_fn(embed(model, step), keys, values, cross_keys, cross_values)
            outputs.append(logprobs)
        return outputs

    compiled_packed = torch.compile(functional_step(
        packed, lambda x, layer: packed_linear(x, id(layer)),
        lambda x: packed_linear(x, id(packed.packed_output_projection))))

    import torch._inductor.config as inductor_config
    inductor_config.freezing = True

    class FrozenStep(torch.nn.Module):  # freezing packs the parameters of a compiled module
        def __init__(self):
            super().__init__()
            self.model = plain
            self.step = functional_step(plain, lambda x, layer: layer(x),
                                        lambda x: F.linear(x, plain.output_matrix, plain.output_bias))

        def forward(self, *inputs):
            return self.step(*inputs)
    compiled_frozen = torch.compile(FrozenStep().eval())

    contenders = {"eager": (eager_pass, None),
                  "compiled, packed": (lambda: functional_pass(compiled_packed, packed), compiled_packed),
                  "compiled, frozen": (lambda: functional_pass(compiled_frozen, plain), compiled_frozen)}
    figures: dict = {"cpu": cpu_model(), "threads": args.threads, "torch": torch.__version__,
                     "checkpoint": str(args.checkpoint), "rows": ROWS, "steps": args.steps, "contenders": {}}
    with torch.no_grad():
        reference = eager_pass()
        for name, (run, _) in contenders.items():
            started = time.perf_counter()
            outputs = run()  # the first pass compiles
            first = time.perf_counter() - started
            # steps 1..n have n shapes of cache: a compiler that specialises pays again until it marks them dynamic
            run()
            difference = max(float((a - b).abs().max()) for a, b in zip(outputs, reference))
            figures["contenders"][name] = {"first_pass_s": round(first, 2), "max_abs_diff": difference,
                                           "us_per_step": []}
        for _ in range(3):  # alternating, so that the machine's drift hits all alike
            for name, (run, _) in contenders.items():
                started = time.perf_counter()
                run()
                figures["contenders"][name]["us_per_step"].append(
                    round((time.perf_counter() - started) / args.steps * 1e6))
    for name, result in figures["contenders"].items():
        result["best_us_per_step"] = min(result["us_per_step"])
        print(f"{name:18} {result['best_us_per_step']:6} us/step (all {result['us_per_step']}), first pass "
              f"{result['first_pass_s']} s, max |diff| {result['max_abs_diff']:.1e}")
        if result["max_abs_diff"] > 1e-4:
            raise SystemExit(f"{name}: log-probabilities differ from eager's by {result['max_abs_diff']}")
    record_result(args.output, args.label, figures, indent=1)


if __name__ == "__main__":
    main()
