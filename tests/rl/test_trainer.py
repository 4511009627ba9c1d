"""The GRPO trainer: log-probabilities, deterministic prompts, and a short run that logs every
metric."""

import pytest
import torch

from minir1 import ModelConfig, Transformer
from minir1.infer.generate import sample
from minir1.rl.trainer import GRPOConfig, GRPOTrainer, completion_logprobs, training_problems
from tests.conftest import TOK


def small_model(seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig.preset("tiny", vocab_size=TOK.vocab_size, dim=64, n_layers=2, inter_dim=128,
                             moe_inter_dim=32, max_seq_len=192, original_seq_len=192)
    return Transformer(cfg)


def test_completion_logprobs_match_the_sampler():
    model = small_model()
    prompts = [TOK.encode("User: 1+2\nAssistant: ", bos=True),
               TOK.encode("User: 12+34\nAssistant: ", bos=True)]
    out = sample(model, prompts, 12, temperature=1.0, pad_id=TOK.pad_id,
                 generator=torch.Generator().manual_seed(0))
    completions = out.completions()
    with torch.no_grad():
        lp, mask = completion_logprobs(model, prompts, completions, TOK.pad_id)
    assert mask.sum().item() == sum(len(c) for c in completions)
    torch.testing.assert_close(lp * mask, out.logprobs[:, : lp.shape[1]] * mask,
                               rtol=1e-4, atol=1e-4)


def test_training_problems_are_deterministic_and_from_the_train_split():
    from minir1.data.tasks import split_of

    cfg = GRPOConfig(prompts_per_step=6)
    a, b = training_problems(cfg, 3), training_problems(cfg, 3)
    assert [p.question for p in a] == [p.question for p in b]
    assert all(split_of(p) == "train" for p in a)
    assert [p.question for p in a] != [p.question for p in training_problems(cfg, 4)]


def test_a_short_run_logs_every_metric(tmp_path):
    model = small_model()
    cfg = GRPOConfig(steps=2, prompts_per_step=2, group_size=4, max_new_tokens=16, minibatches=2,
                     kl_beta=0.04)
    trainer = GRPOTrainer(model, TOK, cfg, tmp_path, eval_fn=lambda m: {"heldout": 0.0},
                          eval_every=1)
    history = trainer.fit(progress=False)
    assert [r["step"] for r in history] == [0, 1, 2]
    keys = {"reward", "accuracy", "format", "length", "reasoning", "kl", "entropy", "clip_fraction",
            "zero_variance_groups", "heldout"}
    assert keys <= set(history[-1])
    assert (tmp_path / "grpo.jsonl").exists() and len(trainer.samples[1]) == 4


@pytest.mark.parametrize("minibatches", [1, 2])
def test_the_old_log_probs_are_the_policy_before_the_step(minibatches, monkeypatch):
    # with one optimiser step per rollout they come from that step's own forward (one forward
    # fewer), put back in the rollout's order; with several, from a forward before the first
    import minir1.rl.trainer as trainer_module

    calls = []
    counted = trainer_module.completion_logprobs
    monkeypatch.setattr(trainer_module, "completion_logprobs",
                        lambda *a, **k: calls.append(1) or counted(*a, **k))
    model = small_model()
    before = small_model()
    cfg = GRPOConfig(steps=1, prompts_per_step=2, group_size=4, max_new_tokens=16,
                     minibatches=minibatches, kl_beta=0.04)
    trainer = GRPOTrainer(model, TOK, cfg)
    trainer.keep_groups = cfg.prompts_per_step  # every sample's log-probs in ``rollouts``
    roll, rollout = {}, trainer.rollout
    trainer.rollout = lambda: roll.update(rollout()) or roll
    trainer.train_step()
    # reference + the one update; or old + reference + the two updates
    assert len(calls) == {1: 2, 2: 4}[minibatches]
    kept = trainer.rollouts[1]
    with torch.no_grad():
        lp, _ = counted(before.eval(), roll["prompts"], roll["completions"], TOK.pad_id)
    assert len(kept) == len(roll["prompts"])
    for i, r in enumerate(kept):
        assert r["tokens"] == roll["completions"][i]
        torch.testing.assert_close(torch.tensor(r["logprobs"]), lp[i, : len(r["tokens"])],
                                   rtol=1e-5, atol=1e-5)


def test_groups_without_reward_variance_move_nothing():
    model = small_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = GRPOConfig(steps=1, prompts_per_step=2, group_size=4, max_new_tokens=8, kl_beta=0.0)
    row = GRPOTrainer(model, TOK, cfg).train_step()
    assert row["zero_variance_groups"] == 1.0  # an untrained model earns nothing in 8 tokens
    # zero advantages and no KL: exactly zero gradients, so AdamW does not move a weight (the gate
    # bias, a buffer moved by the balancing rule, is the only thing that may change)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()
               if not k.endswith("gate.bias"))


def test_config_errors_are_named():
    with pytest.raises(ValueError, match="minibatches"):
        GRPOConfig(prompts_per_step=3, group_size=3, minibatches=2)
    with pytest.raises(ValueError, match="group_size"):
        GRPOConfig(group_size=1)


def test_the_rollout_and_update_run_under_the_trainers_mixed_precision(monkeypatch):
    # on an accelerator the rollout and every forward of the update are bf16 autocast (fp32
    # weights and AdamW state), as in pre-training; the CPU's own bf16 autocast stands in for a
    # GPU's here
    import contextlib

    import minir1.rl.trainer as trainer_module

    entered = []

    @contextlib.contextmanager
    def bf16(device):
        entered.append(device.type)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            yield

    monkeypatch.setattr(trainer_module, "mixed_precision", bf16)
    model = small_model()
    cfg = GRPOConfig(steps=1, prompts_per_step=2, group_size=4, max_new_tokens=12, kl_beta=0.04)
    row = GRPOTrainer(model, TOK, cfg).train_step()
    # the rollout, the reference (and old) forwards, then the update's
    assert entered == ["cpu", "cpu", "cpu"]
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(torch.isfinite(torch.tensor(row[k])) for k in ("loss", "kl", "entropy"))
