"""The training loop shared by pre-training, SFT and distillation, with V3's optimiser (§4.2).

AdamW (beta 0.9 / 0.95, weight decay 0.1 on matrices), linear warmup then cosine decay, gradient
clipping at 1.0, gradient accumulation, the model's own MTP and balance losses, and the
aux-loss-free bias update after every optimiser step. Batches come from a stream whose
``batch(step)`` is a pure function of the step, so a run resumed from a checkpoint continues
*bit-exactly* where it stopped.

The loop works without files too (a lesson trains in memory): with an ``out_dir`` it writes
``metrics.jsonl``/``metrics.csv`` and a checkpoint (``minir1.train.checkpoint``) there.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from minir1 import profile
from minir1.data.tokenizer import Tokenizer
from minir1.dist import parallel as dist_parallel
from minir1.dist.mesh import device_type
from minir1.model.grouped import drop_idle_gradients
from minir1.model.transformer import IGNORE_INDEX, Transformer, TransformerOutput
from minir1.train.checkpoint import (
    check_compatible,
    load_rng_state,
    load_training_state,
    read_checkpoint_meta,
    save_checkpoint,
)
from minir1.train.log import MetricsLog
from minir1.utils import progress_bar

if TYPE_CHECKING:
    from minir1.dist.parallel import Parallel

_LOSSES = ("loss", "lm_loss", "mtp_loss", "balance_loss")


class BatchStream(Protocol):
    def batch(self, step: int) -> dict[str, torch.Tensor]: ...


@dataclass
class TrainConfig:
    steps: int = 1000  # optimiser steps
    batch_size: int = 32  # sequences per micro-batch
    seq_len: int = 256  # tokens per sequence
    grad_accum: int = 1  # micro-batches per optimiser step
    lr: float = 2e-3  # peak learning rate
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio (V3: 2.2e-4 -> 2.2e-5)
    warmup_steps: int = 50  # linear warmup from 0 (V3: 2K steps)
    weight_decay: float = 0.1  # on matrices and embeddings only (V3 §4.2)
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # global gradient-norm clip (V3 §4.2)
    bias_update_speed: float | None = None  # aux-loss-free gamma; None = the model config's value
    log_every: int = 10  # steps between metric rows
    eval_every: int = 0  # steps between evaluations (0: only at the end)
    ckpt_every: int = 0  # steps between checkpoints (0: only at the end)
    seed: int = 0
    device: str = "auto"  # "auto" = cuda > mps > cpu
    compile: bool = False  # torch.compile the model (slow to start on CPU; off in the ci profile)

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "seq_len", "grad_accum"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)}: must be >= 1")
        if self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"TrainConfig: lr={self.lr} must be > 0 and min_lr_ratio in [0, 1]")
        if self.warmup_steps < 0 or self.grad_clip <= 0:
            raise ValueError("TrainConfig: warmup_steps must be >= 0 and grad_clip > 0")


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to ``lr`` over ``warmup_steps``, then cosine decay to ``lr * min_lr_ratio``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine)


def pick_device(name: str = "auto") -> torch.device:
    """``name``, or with "auto" the best there is (``profile.device()``: cuda > mps > cpu)."""
    return torch.device(profile.device() if name == "auto" else name)


def mixed_precision(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on an accelerator (CUDA, and MPS where this torch supports it), the
    weights, gradients and AdamW's state staying fp32 (V3 §3.3.1 keeps master weights and
    optimiser states in higher precision); plain fp32 on a CPU."""
    kind = device.type
    if kind != "cpu" and torch.amp.is_autocast_available(kind):
        return torch.autocast(kind, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig,
                   sharded: bool = False) -> torch.optim.AdamW:
    """AdamW, weight decay on matrices and embeddings only. ``sharded``: ``model`` went through
    ``Parallel.shard`` (``minir1.dist.parallel.split_sharded``)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if sharded:
        groups = dist_parallel.split_sharded(groups)
    kwargs: dict[str, Any] = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    try:  # one fused kernel: ~7x faster than the per-tensor loop on CPU (torch >= 2.4)
        return torch.optim.AdamW(groups, fused=True, **kwargs)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, foreach=True, **kwargs)


# ------------------------------------------------------------------------------ the step's loss
def target_counts(targets: torch.Tensor, n_mtp: int) -> torch.Tensor:
    """(1 + n_mtp,) float64: the targets that count in the main loss and in each MTP depth k's
    (whose logits predict ``targets[:, k:]``), and as the last entry the rows (sequences)."""
    valid = (targets != IGNORE_INDEX).cpu()
    counts = [valid[:, k:].sum() for k in range(n_mtp + 1)] + [torch.tensor(targets.shape[0])]
    return torch.stack(counts).to(torch.float64)


def step_loss(out: TransformerOutput, local: torch.Tensor, total: torch.Tensor,
              mtp_scale: float) -> dict[str, torch.Tensor]:
    """A micro-batch's share of the optimiser step's loss, by component (and ``loss``, their sum).

    The step's loss is the mean over every target token of the global batch (all micro-batches
    on all ranks): each cross-entropy mean is turned back into its sum (times ``local``, this
    micro-batch's ``target_counts``) and divided by the step's ``total`` counts; the sequence-wise
    balance loss weighs by rows. The shares add up to the same loss whatever the split, so the
    gradients are summed over micro-batches and ranks, never averaged. With one micro-batch in one
    process every weight is exactly 1 and this is ``out.loss`` bit for bit. ``mtp_scale``:
    lambda / D of Eq. 25 (``ModelConfig.mtp_loss_weight`` over the model's MTP depth).
    """
    w = (local / total).to(torch.float32)
    zero = out.lm_loss.new_zeros(())

    def share(loss: torch.Tensor, k: int) -> torch.Tensor:
        # no target here (a rank's rows all masked): the mean is 0/0, the share is nothing
        return loss * w[k] if local[k] > 0 else zero

    mtp = zero
    if out.mtp_losses:
        mtp = mtp_scale * sum(share(loss, k) for k, loss in enumerate(out.mtp_losses, start=1))
    parts = {"lm_loss": share(out.lm_loss, 0), "mtp_loss": mtp,
             "balance_loss": out.balance_loss * w[-1]}
    parts["loss"] = parts["lm_loss"] + parts["mtp_loss"] + parts["balance_loss"]
    return parts


def read_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """A step's metrics as plain numbers: the device tensors among them copied to the host in one
    transfer."""
    keys = [k for k, v in metrics.items() if isinstance(v, torch.Tensor)]
    if not keys:
        return dict(metrics)
    device = metrics[keys[0]].device
    dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
    values = torch.stack([metrics[k].detach().reshape(()).to(device, dtype)
                          for k in keys]).tolist()
    return {**metrics, **dict(zip(keys, values, strict=True))}


# ------------------------------------------------------------------------------------------ trainer
class Trainer:
    """Trains ``model`` on ``stream``; with ``out_dir``, writes metrics and checkpoints there.

    ``tokenizer`` is saved with every checkpoint, so it is needed exactly when ``out_dir`` is given.
    ``eval_fn(model) -> dict`` runs every ``cfg.eval_every`` steps and at the end (its values join
    that step's metrics row); ``on_log(row)`` sees every row (e.g. a live plot).
    """

    def __init__(self, model: Transformer, stream: BatchStream, cfg: TrainConfig, *,
                 out_dir: str | Path | None = None, tokenizer: Tokenizer | None = None,
                 eval_fn: Callable[[Transformer], dict[str, float]] | None = None,
                 progress: bool = True,
                 on_log: Callable[[dict[str, float]], None] | None = None,
                 parallel: Parallel | None = None) -> None:
        if out_dir is not None and tokenizer is None:
            raise ValueError("Trainer: out_dir needs the tokenizer (checkpoints store it); pass "
                             "tokenizer=..., or no out_dir to train in memory")
        # a torchrun launch (``minir1.dist.parallel.init``): rank 0 logs, evaluates and writes
        self.parallel = parallel or dist_parallel.active()
        self.is_main = self.parallel is None or self.parallel.is_main
        self.cfg, self.tokenizer, self.stream, self.eval_fn = cfg, tokenizer, stream, eval_fn
        self.out_dir = Path(out_dir) if out_dir is not None else None
        # under a launch, the device its mesh is on (the local rank's GPU, or the CPU)
        self.device = pick_device(cfg.device if self.parallel is None else device_type())
        self.model = model.to(self.device)
        # what trains: the model itself, or under a launch its sharded copy (``model`` stays
        # whole, and ``fit`` writes the trained weights back into it on every rank)
        self.module = self.model
        if self.parallel is not None:
            world = self.parallel.layout.world
            if cfg.batch_size % world:  # checked before any collective, on every rank alike
                raise ValueError(f"TrainConfig.batch_size={cfg.batch_size} must be divisible by "
                                 f"world={world}: every rank takes an equal share of each batch")
            self.module = self.parallel.shard(copy.deepcopy(self.model))
        self.optimizer = make_optimizer(self.module, cfg, sharded=self.parallel is not None)
        self.forward = torch.compile(self.module) if cfg.compile else self.module
        self.step = 0
        self.progress = progress and self.is_main
        files = self.out_dir is not None and self.is_main
        self.log = MetricsLog(self.out_dir / "metrics.jsonl" if files else None,
                              on_log if self.is_main else None,
                              self.out_dir / "metrics.csv" if files else None)
        self.results: dict[str, Any] = {}  # a recipe's final evaluation (``pretrain`` fills it)

    @property
    def history(self) -> list[dict[str, float]]:
        """Every metrics row so far."""
        return self.log.rows

    @property
    def checkpoint_path(self) -> Path | None:
        return self.out_dir / "checkpoint" if self.out_dir is not None else None

    def full_model(self) -> Transformer:
        """``model`` with the trained weights: under a launch, the shards gathered into it on
        every rank (every rank must call this); in one process ``model`` is what trains."""
        if self.parallel is not None:
            self.parallel.gather_into(self.model, self.module)
        return self.model

    def save(self) -> Path:
        if self.checkpoint_path is None or self.tokenizer is None:
            raise ValueError("Trainer.save: this trainer has no out_dir to save into")
        return save_checkpoint(self.checkpoint_path, self.module, self.tokenizer, self.step,
                               self.optimizer, self.cfg, parallel=self.parallel)

    def resume(self) -> None:
        """Restore model, optimiser, step and RNG state from ``out_dir/checkpoint`` (written at
        any world size and EP degree, or by one process)."""
        path = self.checkpoint_path
        if path is None or self.tokenizer is None:
            raise ValueError("Trainer.resume: this trainer has no out_dir to resume from")
        meta = read_checkpoint_meta(path)
        check_compatible(meta, self.model, self.tokenizer, path)
        load_training_state(self.module, self.optimizer, path, self.device,
                            sharded=self.parallel is not None)
        load_rng_state(path)
        self.step = meta["step"]
        self.log.read(self.step)

    def _autocast(self) -> contextlib.AbstractContextManager:
        return mixed_precision(self.device)

    def train_step(self, read: bool = True) -> dict[str, Any]:
        """One optimiser step (with gradient accumulation); returns its metrics.

        The host waits for the device only after backward, where it reads which experts were
        idle and whether the step is finite; ``read=False`` leaves the metrics on the device as
        tensors, so that ``fit`` copies them to the host only on logging steps."""
        cfg, model, parallel = self.cfg, self.module, self.parallel
        model.train()
        lr = lr_at(self.step, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batches = [self._local(self.stream.batch(self.step * cfg.grad_accum + micro))
                   for micro in range(cfg.grad_accum)]
        counts = [target_counts(b["targets"], len(model.mtp)) for b in batches]
        total = sum(counts)
        if parallel is not None:
            total = parallel.sum(total)  # the global batch's counts: one small all-reduce
        mtp_scale = model.cfg.mtp_loss_weight / max(1, len(model.mtp))
        # loss, lm, mtp, balance shares, summed on the device (MPS has no float64)
        totals = torch.zeros(4, dtype=torch.float32 if self.device.type == "mps"
                             else torch.float64, device=self.device)
        for batch, local in zip(batches, counts, strict=True):
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            with self._autocast():
                out = self.forward(batch["tokens"], targets=batch["targets"],
                                   doc_ids=batch.get("doc_ids"))
            parts = step_loss(out, local, total, mtp_scale)
            parts["loss"].backward()
            totals += torch.stack([parts[k].detach() for k in _LOSSES]).to(totals.dtype)
        if parallel is not None:
            totals = parallel.sum(totals)
            parallel.finish_gradients(model)
            grad_norm = parallel.clip_grad_norm(model, cfg.grad_clip)
        else:
            # grouped experts gave the idle ones zero gradients: make them None, as the loop does
            drop_idle_gradients(model.moe_layers())
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        if not bool(torch.isfinite(totals[0]) & torch.isfinite(grad_norm)):  # before the step
            what = (f"loss is {totals[0].item()}" if not torch.isfinite(totals[0])
                    else f"gradient norm is {grad_norm.item()}")
            self.optimizer.zero_grad(set_to_none=True)
            raise FloatingPointError(
                f"{what} at step {self.step}: training stopped; the last good checkpoint "
                f"(if any) is intact at {self.checkpoint_path}")
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if parallel is not None:
            parallel.finish_step(model)
        maxvio = (model.update_expert_bias(cfg.bias_update_speed) if model.moe_layers()
                  else torch.zeros(1, device=self.device))
        self.step += 1
        n_tokens = sum(b["tokens"].numel() for b in batches)
        world = parallel.layout.world if parallel is not None else 1
        metrics = {**dict(zip(_LOSSES, totals, strict=True)), "lr": lr, "grad_norm": grad_norm,
                   "maxvio": maxvio.mean(), "tokens": n_tokens * world}
        return read_metrics(metrics) if read else metrics

    def _evaluate(self) -> dict[str, float]:
        """``eval_fn`` on the whole model; under a launch on rank 0 while the others wait."""
        assert self.eval_fn is not None
        full = self.full_model()
        return dist_parallel.on_main(lambda: self.eval_fn(full), self.parallel)

    def _local(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return batch if self.parallel is None else self.parallel.local_rows(batch)

    def fit(self, resume: bool = False) -> list[dict[str, float]]:
        """Train to ``cfg.steps``; ``resume=True`` continues from ``out_dir/checkpoint``, if any."""
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        if resume and self.checkpoint_path is not None and self.checkpoint_path.exists():
            self.resume()
        else:
            torch.manual_seed(self.cfg.seed)
            random.seed(self.cfg.seed)
            self.log.clear_files()
        bar = progress_bar(total=self.cfg.steps, initial=self.step, desc="train",
                           disable=not self.progress, leave=False)
        window_tokens, window_start = 0, time.perf_counter()
        while self.step < self.cfg.steps:
            metrics = self.train_step(read=False)  # tensors: read below, on logging steps
            window_tokens += metrics.pop("tokens")
            bar.update(1)
            last = self.step == self.cfg.steps
            due_eval = self.eval_fn is not None and (
                (self.cfg.eval_every and self.step % self.cfg.eval_every == 0) or last)
            if self.step % self.cfg.log_every == 0 or last or due_eval:
                metrics = read_metrics(metrics)
                elapsed = time.perf_counter() - window_start
                row = {"step": self.step, **metrics,
                       "tokens_per_s": window_tokens / max(elapsed, 1e-9)}
                if due_eval:
                    checks = self._evaluate()
                    if clash := sorted(set(checks) & set(row)):  # silently overwriting would lie
                        raise ValueError(f"Trainer: eval_fn returned {clash}, which the training "
                                         "metrics already use; give its keys another name")
                    row.update(checks)
                self.log.append(row)
                bar.set_postfix(loss=f"{metrics['loss']:.3f}", refresh=False)
                window_tokens, window_start = 0, time.perf_counter()
            due_ckpt = (self.cfg.ckpt_every and self.step % self.cfg.ckpt_every == 0) or last
            if due_ckpt and self.out_dir is not None:
                self.save()
        bar.close()
        if self.parallel is not None:
            self.full_model()  # the trained weights, whole, in ``model`` on every rank
        return self.history


__all__ = ["BatchStream", "TrainConfig", "Trainer", "lr_at", "make_optimizer", "mixed_precision",
           "pick_device", "read_metrics", "step_loss", "target_counts"]
