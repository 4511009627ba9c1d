"""Rollout throughput: minir1's batched sampler (absorbed MLA over the latent cache) against
transformers' ``generate`` (DeepseekV3ForCausalLM with its own KV cache) on the identical model and
weights, exported through ``minir1.hf``, doing what a GRPO step does: a batch of R1-Zero prompts
(left-padded), temperature 1, up to ``--new`` tokens, each sequence stopping at ``</answer>`` or
end-of-sequence. Both run alternately in one process; tokens/s counts generated tokens up to and
including each sequence's stop token. Greedy outputs of the two are compared first (same weights,
same function: they must agree). Sampled rollouts come from the same distribution but not the same
random numbers (minir1 draws one uniform number per row by inverse CDF, transformers uses
``torch.multinomial``), so each rollout's token count and longest sequence are printed too.

    python benchmarks/generate.py [--batch 128] [--new 128] [--repeats 5] [--ckpt DIR]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import warnings

import torch

from minir1 import hf as mhf
from minir1.data.tasks import make_problem
from minir1.data.templates import prompt_for
from minir1.infer.generate import sample
from minir1.train.checkpoint import load_model
from minir1.train.runs import load_rl_base


def prompts_for(tok, n: int, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    tasks = ("add", "sub", "mul", "expr")
    return [tok.encode(prompt_for(make_problem(rng.choice(tasks), rng.choice((1, 2, 3, 4)),
                                               rng).question), bos=True)
            for _ in range(n)]


def hf_batch(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    P = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), P), pad_id, dtype=torch.long)
    mask = torch.zeros(len(prompts), P, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, P - len(p):] = torch.tensor(p)
        mask[i, P - len(p):] = 1
    return ids, mask


def generated_lengths(new: torch.Tensor, stops: list[int]) -> list[int]:
    """Tokens up to and including the first stop token of each row (all of them if none)."""
    out = []
    for row in new.tolist():
        hit = [i for i, t in enumerate(row) if t in stops]
        out.append(hit[0] + 1 if hit else len(row))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=128,
                        help="sequences per rollout (16 prompts x 8 in GRPO)")
    parser.add_argument("--new", type=int, default=128, help="max new tokens")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ckpt", default=None,
                        help="checkpoint (default: the RL base model, load_rl_base)")
    args = parser.parse_args()
    import transformers

    # the MTP layer's weights are "unexpected" to transformers
    transformers.logging.set_verbosity_error()
    model, tok, _ = load_model(args.ckpt) if args.ckpt else load_rl_base("cpu", progress=False)
    model.eval()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mhf.save_pretrained(model, tmp)
        theirs = transformers.DeepseekV3ForCausalLM.from_pretrained(tmp, dtype=torch.float32).eval()
    stops = [tok.token_id("</answer>"), tok.eos_id]
    prompts = prompts_for(tok, args.batch)
    ids, mask = hf_batch(prompts, tok.pad_id)
    P = ids.shape[1]

    def run_hf(greedy: bool, seed: int) -> tuple[torch.Tensor, list[int]]:
        torch.manual_seed(seed)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = theirs.generate(input_ids=ids, attention_mask=mask, max_new_tokens=args.new,
                                  do_sample=not greedy, temperature=None if greedy else 1.0,
                                  top_k=None, top_p=None, eos_token_id=stops,
                                  pad_token_id=tok.pad_id)
        new = out[:, P:]
        return new, generated_lengths(new, stops)

    def run_ours(greedy: bool, seed: int) -> tuple[torch.Tensor, list[int]]:
        s = sample(model, prompts, args.new, temperature=0.0 if greedy else 1.0, stop_ids=stops,
                   pad_id=tok.pad_id, generator=torch.Generator().manual_seed(seed))
        return s.tokens, s.lengths.tolist()

    check = 16  # greedy agreement on the first sequences
    ours_g, ours_len = run_ours(True, 0)
    hf_g, hf_len = run_hf(True, 0)
    agree = sum(ours_g[i, : ours_len[i]].tolist() == hf_g[i, : hf_len[i]].tolist()
                for i in range(check))
    times: dict[str, list[float]] = {"minir1": [], "transformers": []}
    tokens: dict[str, list[int]] = {"minir1": [], "transformers": []}
    longest: dict[str, list[int]] = {"minir1": [], "transformers": []}
    for r in range(args.repeats):
        for name, fn in (("minir1", run_ours), ("transformers", run_hf)):
            t = time.perf_counter()
            _, lengths = fn(False, r + 1)
            times[name].append(time.perf_counter() - t)
            tokens[name].append(sum(lengths))
            longest[name].append(max(lengths))
    print(f"batch {args.batch} prompts ({P} tokens max, left-padded), <= {args.new} new tokens, "
          f"temperature 1, stop on </answer>/eos; torch {torch.__version__}, "
          f"transformers {transformers.__version__}, {torch.get_num_threads()} threads")
    print(f"greedy outputs identical on {agree}/{check} sequences")
    rate = {}
    for name in times:
        rate[name] = sum(tokens[name]) / sum(times[name])
        print(f"{name:<13} {statistics.median(times[name]):>7.2f}s per rollout "
              f"(median of {args.repeats}), {rate[name]:>6,.0f} tokens/s; "
              f"tokens per rollout {tokens[name]}, longest {longest[name]}")
    print(f"ratio minir1 / transformers: {rate['minir1'] / rate['transformers']:.2f}x")


if __name__ == "__main__":
    main()
