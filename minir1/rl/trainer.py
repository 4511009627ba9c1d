"""The GRPO trainer: sample a group per prompt, score it with the rule rewards, update against the
old policy's log-probabilities (R1 §2.2, DeepSeekMath Algorithm 1).

One step: ``prompts_per_step`` training problems, ``group_size`` samples each from the current
policy (which is the "old" policy of this step), rewards ``accuracy + format_weight * format``,
group-standardised advantages, then ``inner_updates`` passes of ``minibatches`` gradient steps on
``grpo_loss``. The reference policy for the KL term is a frozen copy, refreshed every
``ref_refresh_every`` steps (R1 refreshed it every 400 of its 10,400 steps).

Hyperparameters, R1's published values next to the miniature's (R1, Nature Methods
"Training details"): lr 3e-6 -> 1e-4 (a model ~10^5 times smaller, trained for tens of steps),
β 0.001 -> 0.001, G 16 -> 8, temperature 1.0 -> 1.0, 32 prompts per step -> 16, clip ε 10 -> 0.2
(DeepSeekMath's PPO-style value; R1's ε = 10 effectively disables clipping for its single inner
epoch), 16 mini-batches x 1 epoch -> 1 x 1.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from minir1.data.checks import has_check, is_reasoned
from minir1.data.rewards import accuracy_reward, format_reward
from minir1.data.tags import ANSWER_CLOSE
from minir1.data.tasks import LEVELS, TASKS, Problem, draw_train_problems
from minir1.data.templates import prompt_for
from minir1.data.tokenizer import Tokenizer
from minir1.dist import parallel as dist_parallel
from minir1.dist.mesh import device_type
from minir1.infer.generate import sample
from minir1.model.transformer import Transformer
from minir1.rl.grpo import AGGREGATIONS, SCALES, group_advantages, grpo_loss
from minir1.train.log import MetricsLog
from minir1.train.loop import mixed_precision
from minir1.utils import progress_bar


@dataclass(frozen=True)
class GRPOConfig:
    steps: int = 30
    prompts_per_step: int = 16  # R1: 32
    group_size: int = 8  # G; R1: 16
    temperature: float = 1.0  # R1: 1.0
    max_new_tokens: int = 96
    lr: float = 1e-4  # R1: 3e-6
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    clip_eps: float = 0.2  # R1: 10
    kl_beta: float = 0.001  # R1: 0.001
    inner_updates: int = 1  # mu: passes over each step's samples
    minibatches: int = 1  # gradient steps per pass (R1: 16)
    ref_refresh_every: int = 400  # R1: 400
    # "sequence" (DeepSeekMath), "token" (DAPO), "constant" (Dr. GRPO)
    aggregation: str = "sequence"
    adv_scale: str = "std"  # "std" (GRPO) or "none" (Dr. GRPO)
    format_weight: float = 1.0  # R_rule = R_acc + R_format, equal weights (R1 v2 §2.2)
    tasks: tuple[str, ...] = TASKS
    levels: tuple[int, ...] = (1, 2)
    template: str = "r1_zero"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "prompts_per_step", "max_new_tokens", "inner_updates", "minibatches"):
            if getattr(self, name) < 1:
                raise ValueError(f"GRPOConfig.{name}={getattr(self, name)}: must be >= 1")
        if self.group_size < 2:  # one sample is its own group mean: every advantage would be zero
            raise ValueError(f"GRPOConfig.group_size={self.group_size}: must be >= 2")
        if (self.prompts_per_step * self.group_size) % self.minibatches:
            raise ValueError(f"GRPOConfig.minibatches={self.minibatches}: must divide "
                             "prompts_per_step x group_size")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"GRPOConfig.aggregation={self.aggregation!r}: must be one of "
                             f"{AGGREGATIONS}")
        if self.adv_scale not in SCALES:
            raise ValueError(f"GRPOConfig.adv_scale={self.adv_scale!r}: must be one of {SCALES}")
        if not set(self.levels) <= set(LEVELS) or not set(self.tasks) <= set(TASKS):
            raise ValueError(f"GRPOConfig: tasks {self.tasks} / levels {self.levels} must come "
                             f"from {TASKS} / {LEVELS}")


def completion_logprobs(model: Transformer, prompts: list[list[int]], completions: list[list[int]],
                        pad_id: int, length: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of each completion's tokens given its prompt,
    from one full (training-path) forward.

    Returns ``(logprobs, mask)``, both (B, N) with N the longest completion; ``mask`` is 1 on
    real tokens. Sequences are right-padded (to at least ``length`` tokens): causal attention
    never lets a real token see the padding after it.
    """
    device = next(model.parameters()).device
    seqs = [p + c for p, c in zip(prompts, completions, strict=True)]
    T = max(length, *(len(s) for s in seqs))
    N = max(1, max(len(c) for c in completions))
    tokens = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        tokens[i, : len(s)] = torch.tensor(s)
    logp = model(tokens.to(device), mtp=False).logits.float().log_softmax(-1)
    out = torch.zeros(len(seqs), N, device=device)
    mask = torch.zeros(len(seqs), N, device=device)
    for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):
        if c:  # token c_j sits at position len(p) + j and is predicted from position len(p) + j - 1
            pos = torch.arange(len(p) - 1, len(p) - 1 + len(c), device=device)
            out[i, : len(c)] = logp[i, pos, torch.tensor(c, device=device)]
            mask[i, : len(c)] = 1
    return out, mask


def training_problems(cfg: GRPOConfig, step: int) -> list[Problem]:
    """The step's prompts: train-split problems, a pure function of (seed, step)."""
    return draw_train_problems(cfg.prompts_per_step, cfg.tasks, cfg.levels,
                               f"grpo:{cfg.seed}:{step}")


class GRPOTrainer:
    """Runs GRPO on ``model`` (updated in place) and logs one row of metrics per step.

    Under a torchrun launch (``minir1.dist.parallel.init``) each rank takes ``1 / world`` of the
    step's prompts, whole groups, so advantages stay local; it samples them with its own
    generator (seed + rank) from the whole ``model``, its weights gathered from the trained
    shards (``module``) at every step, as RL systems sync their inference engine; the update's
    loss is each rank's share of the global one (``loss_share``), gradients summed. Rank 0 logs.
    """

    def __init__(self, model: Transformer, tok: Tokenizer, cfg: GRPOConfig,
                 out_dir: str | Path | None = None,
                 eval_fn: Callable[[Transformer], dict[str, float]] | None = None,
                 eval_every: int = 5,
                 on_log: Callable[[dict[str, float]], None] | None = None,
                 parallel: dist_parallel.Parallel | None = None) -> None:
        self.parallel = parallel or dist_parallel.active()
        self.is_main = self.parallel is None or self.parallel.is_main
        if self.parallel is not None:  # on the launch's device (FSDP moves only its shards)
            model.to(device_type())
        self.model, self.tok, self.cfg = model, tok, cfg
        self.ref = copy.deepcopy(model).eval().requires_grad_(False)
        # what trains: the model itself, or under a launch its sharded copy; ``model`` stays
        # whole and samples (``sync_model`` writes the trained weights into it every step)
        self.module = model
        if self.parallel is not None:
            if cfg.prompts_per_step % self.parallel.layout.world:
                raise ValueError(f"GRPOConfig.prompts_per_step={cfg.prompts_per_step} must be "
                                 f"divisible by world={self.parallel.layout.world}: each rank "
                                 "takes whole groups")
            self.module = self.parallel.shard(copy.deepcopy(model))
        groups = [{"params": [p for p in self.module.parameters() if p.requires_grad]}]
        if self.parallel is not None:
            groups = dist_parallel.split_sharded(groups)
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95),
                                           weight_decay=cfg.weight_decay)
        self.out_dir = Path(out_dir) if out_dir else None
        self.eval_fn, self.eval_every = eval_fn, eval_every
        self.step = 0
        self.log = MetricsLog(self.out_dir / "grpo.jsonl" if self.out_dir and self.is_main
                              else None, on_log if self.is_main else None)
        # step -> (question, completion, reward)
        self.samples: dict[int, list[tuple[str, str, float]]] = {}
        # step -> the first groups' samples with per-token log-probs
        self.rollouts: dict[int, list[dict]] = {}
        # how many groups per step ``rollouts`` keeps (for the rollout browser)
        self.keep_groups = 2
        rank = self.parallel.rank if self.parallel is not None else 0
        self.generator = torch.Generator().manual_seed(cfg.seed + rank)

    def sync_model(self) -> Transformer:
        """``model``, whole, with the current policy: under a launch the shards are gathered into
        it on every rank (one process: ``model`` is what trains)."""
        if self.parallel is not None:
            self.parallel.gather_into(self.model, self.module)
        return self.model

    def rollout(self) -> dict:
        cfg, tok = self.cfg, self.tok
        problems = training_problems(cfg, self.step)
        if self.parallel is not None:  # this rank's whole groups
            problems = problems[self.parallel.share(len(problems))]
        prompts = [tok.encode(prompt_for(p.question, cfg.template), bos=True) for p in problems]
        prompts = [p for p in prompts for _ in range(cfg.group_size)]
        group_problems = [p for p in problems for _ in range(cfg.group_size)]
        room = self.model.cfg.max_seq_len - max(len(p) for p in prompts)
        # the rollout in the update's precision (bf16 autocast on an accelerator): sampling is
        # most of a GRPO step's time, and the policy it samples is the one the update sees
        with mixed_precision(next(self.model.parameters()).device):
            out = sample(self.model, prompts, min(cfg.max_new_tokens, room),
                         temperature=cfg.temperature,
                         stop_ids=[tok.token_id(ANSWER_CLOSE), tok.eos_id], pad_id=tok.pad_id,
                         generator=self.generator)
        completions = out.completions()
        texts = [tok.decode(c) for c in completions]
        acc = torch.tensor([accuracy_reward(t, p.answer)
                            for t, p in zip(texts, group_problems, strict=True)])
        fmt = torch.tensor([format_reward(t) for t in texts])
        rewards = acc + cfg.format_weight * fmt
        return {"problems": group_problems, "prompts": prompts, "completions": completions,
                "texts": texts, "acc": acc, "fmt": fmt, "rewards": rewards,
                "lengths": out.lengths.float()}

    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        t0 = time.perf_counter()
        policy = self.sync_model()
        if self.step and self.step % cfg.ref_refresh_every == 0:
            self.ref.load_state_dict(policy.state_dict())
        roll = self.rollout()
        t_sample = time.perf_counter() - t0
        adv, old_lp, mask, stats = self.update(roll)
        return self._row(roll, adv, old_lp, mask, stats, t0, t_sample)

    def update(self, roll: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list]:
        """The policy update on a rollout: advantages, old and reference log-probs, then
        ``inner_updates`` x ``minibatches`` optimiser steps. Returns (advantages, old log-probs,
        mask, the loss statistics of each step)."""
        cfg, model = self.cfg, self.module
        adv = group_advantages(roll["rewards"], cfg.group_size, scale=cfg.adv_scale)
        # One optimiser step per rollout: pi_old is the policy that step starts from, so its
        # log-probs are the step's own forward's, detached (ratio 1, DeepSeekMath Eq. 3's
        # on-policy gradient), a forward saved; several steps need them from before the first.
        on_policy = cfg.inner_updates == 1 and cfg.minibatches == 1
        device = next(model.parameters()).device
        old_lp = mask = None
        with torch.no_grad(), mixed_precision(device):
            if not on_policy:
                policy = self.model.eval()
                old_lp, mask = completion_logprobs(policy, roll["prompts"], roll["completions"],
                                                   self.tok.pad_id)
            ref_lp = (completion_logprobs(self.ref, roll["prompts"], roll["completions"],
                                          self.tok.pad_id)[0]
                      if cfg.kl_beta > 0 else None)
        adv = adv.to(device)
        model.train()
        n = len(roll["prompts"])
        size = n // cfg.minibatches
        # Dr. GRPO's constant normaliser: the generation budget, the same for every step
        max_tokens = cfg.max_new_tokens if cfg.aggregation == "constant" else None
        stats = []
        for _ in range(cfg.inner_updates):
            # under a launch each rank draws its mini-batches from its own groups
            order = torch.randperm(n, generator=self.generator)
            for b in range(cfg.minibatches):
                idx = order[b * size:(b + 1) * size].tolist()
                prompts = [roll["prompts"][i] for i in idx]
                completions = [roll["completions"][i] for i in idx]
                with mixed_precision(device):  # the log-probs themselves are fp32
                    lp, m = completion_logprobs(model, prompts, completions, self.tok.pad_id,
                                                self._padded_length(prompts, completions))
                width = lp.shape[1]
                if on_policy:  # in the rollout's order, for the step's metrics
                    old_lp, mask = torch.zeros_like(lp), torch.zeros_like(m)
                    old_lp[idx], mask[idx] = lp.detach(), m
                s = grpo_loss(lp, old_lp[idx, :width],
                              None if ref_lp is None else ref_lp[idx, :width], adv[idx], m,
                              clip_eps=cfg.clip_eps, kl_beta=cfg.kl_beta,
                              aggregation=cfg.aggregation, return_stats=True, max_tokens=max_tokens)
                self.optimizer.zero_grad(set_to_none=True)
                (s.loss * self.loss_share(m)).backward()
                if self.parallel is not None:
                    self.parallel.finish_gradients(model)
                    self.parallel.clip_grad_norm(model, cfg.grad_clip)
                else:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                self.optimizer.step()
                if self.parallel is not None:
                    self.parallel.finish_step(model)
                # keep the aux-loss-free balancing running, as in pre-training
                if model.moe_layers():
                    model.update_expert_bias()
                stats.append(s)
        return adv, old_lp, mask, stats

    def _padded_length(self, prompts: list[list[int]], completions: list[list[int]]) -> int:
        """The longest sequence of the mini-batch across the launch (0 in one process): every rank
        pads to it, so the padding positions routed through the MoE, which count in the experts'
        loads and so in the bias update, are those of the one-process batch."""
        if self.parallel is None:
            return 0
        longest = max(len(p) + len(c) for p, c in zip(prompts, completions, strict=True))
        longest_t = torch.tensor([longest])
        torch.distributed.all_reduce(longest_t, op=torch.distributed.ReduceOp.MAX)
        return int(longest_t.item())

    def loss_share(self, mask: torch.Tensor) -> float:
        """This rank's part of a mini-batch's loss (1 in one process): ``grpo_loss`` normalises
        by responses ("sequence", "constant") or tokens ("token") of *this* rank, so weigh it by
        this rank's fraction of them across the launch; the shares' gradients add up to the
        one-process gradient of the whole mini-batch."""
        if self.parallel is None:
            return 1.0
        size = mask.sum() if self.cfg.aggregation == "token" else torch.tensor(mask.shape[0])
        size = size.to(torch.float64).reshape(1)
        return (size / self.parallel.sum(size)).item()

    def _row(self, roll: dict, adv: torch.Tensor, old_lp: torch.Tensor, mask: torch.Tensor,
             stats: list, t0: float, t_sample: float) -> dict[str, float]:
        cfg = self.cfg
        groups = roll["rewards"].view(-1, cfg.group_size)
        # mean surprisal of the sampled tokens
        entropy = -(old_lp * mask).sum() / mask.sum().clamp_min(1)
        reasoned = [is_reasoned(t) for t in roll["texts"]]
        checked = [has_check(t) for t in roll["texts"]]
        self.step += 1
        row = {"step": self.step, "reward": roll["rewards"].mean().item(),
               "accuracy": roll["acc"].mean().item(), "format": roll["fmt"].mean().item(),
               "length": roll["lengths"].mean().item(), "reasoning": sum(reasoned) / len(reasoned),
               "self_checks": sum(checked) / len(checked),
               "kl": sum(s.kl for s in stats) / len(stats), "entropy": entropy.item(),
               "clip_fraction": sum(s.clip_fraction for s in stats) / len(stats),
               "zero_variance_groups":
                   (groups.std(dim=1, unbiased=False) == 0).float().mean().item(),
               "loss": sum(s.loss.item() for s in stats) / len(stats),
               "sample_s": t_sample, "step_s": time.perf_counter() - t0}
        if self.parallel is not None:  # every rank's share of the prompts weighs the same
            keys = sorted(k for k in row if k not in ("step", "sample_s", "step_s"))
            mean = self.parallel.sum(torch.tensor([row[k] for k in keys], dtype=torch.float64))
            row.update(zip(keys, (mean / self.parallel.layout.world).tolist(), strict=True))
        keep = min(len(roll["prompts"]), self.keep_groups * cfg.group_size)
        self.rollouts[self.step] = [
            {"question": roll["problems"][i].question, "answer": roll["problems"][i].answer,
             "tokens": roll["completions"][i],
             "logprobs": old_lp[i, : len(roll["completions"][i])].tolist(),
             "reward": roll["rewards"][i].item(), "advantage": adv[i].item()} for i in range(keep)]
        self.samples[self.step] = [(p.question, t, r) for p, t, r in
                                   zip(roll["problems"][:4], roll["texts"][:4],
                                       roll["rewards"][:4].tolist(), strict=True)]
        return row

    def fit(self, progress: bool = True) -> list[dict[str, float]]:
        if self.out_dir is not None and self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "grpo_config.json").write_text(json.dumps(asdict(self.cfg), indent=1)
                                                           + "\n")
        if self.eval_fn is not None and self.step == 0:
            self.log.append({"step": 0, **self._evaluate()})
        for _ in progress_bar(range(self.step, self.cfg.steps), desc="GRPO",
                              disable=not (progress and self.is_main), leave=False):
            row = self.train_step()
            if self.eval_fn is not None and (self.step % self.eval_every == 0
                                             or self.step == self.cfg.steps):
                row.update(self._evaluate())
            self.log.append(row)
        self.sync_model()  # under a launch: the trained weights, whole, in ``model``
        return self.history

    def _evaluate(self) -> dict[str, float]:
        """``eval_fn`` on the whole policy; under a launch on rank 0 while the others wait."""
        assert self.eval_fn is not None
        policy = self.sync_model()
        return dist_parallel.on_main(lambda: self.eval_fn(policy), self.parallel)

    @property
    def history(self) -> list[dict[str, float]]:
        """Every logged row: one per GRPO step, plus the step-0 check."""
        return self.log.rows


def rl_seconds(history: list[dict[str, float]]) -> float:
    """Wall time of the GRPO steps of a log (sampling and updates), without its held-out checks."""
    return sum(row.get("step_s", 0.0) for row in history)


__all__ = ["GRPOConfig", "GRPOTrainer", "completion_logprobs", "rl_seconds", "training_problems"]
