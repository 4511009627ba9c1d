"""Does FP8 training track FP32? The measurement of V3 Appendix B.1 (Fig. 10), in miniature.

``loss_curve(recipe, ...)`` trains the tiny model from one seed on one fixed stream with a given FP8
recipe (``"off"`` is the fp32 baseline) and returns the per-step main loss; ``relative_gap``
compares two curves the way the paper plots them, after an EMA with coefficient 0.9. DeepSeek report
the FP8 loss within 0.25% of BF16 over ~1T tokens at 16B and 230B parameters.

A few hundred steps of a tiny MoE are chaotic: any perturbation, even reordering a float sum, sends
two runs down trajectories whose losses differ by tenths of a percent, however exact the arithmetic.
So ``fidelity_report`` measures that *noise floor* too, as an fp32 run whose initial weights are
perturbed by one part in a million, and averages every gap over the last tenth of the steps and over
several seeds; gaps can be read at any step, because the floor grows as the runs go on. A recipe is
only distinguishable from fp32 when its gap clears the floor.

Two kinds of injected outliers, identical for every recipe, reproduce the problem fine-grained
scaling exists for (V3 §3.3.2; "massive activations", Sun et al. 2024, sit on a few tokens):
``inject_token_outliers`` multiplies every ``every``-th token's input to attention and FFN by a
large factor, the case 1x128 tiles isolate and one per-tensor scale cannot;
``inject_channel_outliers`` scales a few channels instead, which a 1x128 tile cannot separate when
the model is only 128 wide (lesson 06 shows both).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch.utils.hooks import RemovableHandle

from minir1.data.datasets import CorpusConfig, PackedStream, corpus_documents, pack_documents
from minir1.data.tokenizer import Tokenizer
from minir1.fp8.linear import convert_to_fp8
from minir1.model.transformer import Transformer
from minir1.train.loop import TrainConfig, Trainer
from minir1.train.pretrain import PRETRAIN_RECIPES, model_config

OUTLIERS = ("none", "token", "channel")
NOISE_FLOOR = "fp32, perturbed"  # the label of the fp32-vs-fp32 comparison in a FidelityReport


@dataclass
class Curve:
    recipe: str
    losses: list[float]  # main next-token loss per step
    seconds: float  # wall time of the training steps


def ema(values: Sequence[float], coef: float = 0.9) -> list[float]:
    """Exponential moving average, ``s_t = coef * s_{t-1} + (1 - coef) * v_t``
    (the paper's smoothing, 0.9)."""
    out, s = [], values[0]
    for v in values:
        s = coef * s + (1 - coef) * v
        out.append(s)
    return out


def relative_gap(curve: Sequence[float], baseline: Sequence[float], last: int = 1) -> float:
    """(EMA(curve) - EMA(baseline)) / EMA(baseline), averaged over the ``last`` steps."""
    a, b = ema(curve)[-last:], ema(baseline)[-last:]
    return sum((x - y) / y for x, y in zip(a, b, strict=True)) / len(a)


def inject_channel_outliers(model: Transformer, scale: float,
                            channels: Sequence[int] = (3, 77)) -> None:
    """Multiply ``channels`` of every main-model layer's attention and FFN input norm
    by ``scale`` (in place)."""
    with torch.no_grad():
        for layer in model.layers:
            for norm in (layer.attn_norm, layer.ffn_norm):
                norm.weight[list(channels)] *= scale


def inject_token_outliers(model: Transformer, scale: float,
                          every: int = 32) -> list[RemovableHandle]:
    """Multiply the attention and FFN inputs of positions 0, ``every``, 2 ``every``, ...
    by ``scale``.

    Forward hooks on the ``attn_norm`` and ``ffn_norm`` of every main-model layer (not the MTP
    block's); returns their handles (``.remove()`` undoes it). The Wgrad operands' 128x1 scales each
    span 128 tokens, so those see the outliers too; the 1x128 tiles of Fprop and Dgrad isolate them.
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")

    def hook(module: torch.nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
        factor = torch.ones(out.shape[-2], 1, dtype=out.dtype, device=out.device)
        factor[::every] = scale
        return out * factor

    return [norm.register_forward_hook(hook) for layer in model.layers
            for norm in (layer.attn_norm, layer.ffn_norm)]


def perturb_weights(model: torch.nn.Module, relative: float, seed: int) -> None:
    """Multiply every parameter element by ``1 + relative * N(0, 1)``
    (drawn from its own generator)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1 + relative * torch.randn(p.shape, generator=gen).to(p))


def loss_curve(recipe: str, steps: int, batch_size: int = 16, seq_len: int = 128,
               outliers: str = "none", outlier_scale: float = 1e4, seed: int = 0,
               perturb: float = 0.0, lr: float = 1e-3) -> Curve:
    """Train the ``cpu`` recipe's tiny model for ``steps`` with ``recipe``
    ("off", "deepseek", "tensorwise").

    ``outliers`` is "none", "token" or "channel" (scaled by ``outlier_scale``); ``perturb`` > 0
    multiplies the initial weights by ``1 + perturb * noise`` (the noise-floor run). Same
    ``seed`` = same data and init. ``lr`` is a third of the pre-training recipe's: at 3e-3 the fp32
    noise floor is 1-2% after 300 steps, enough to hide any FP8 effect; at 1e-3 it is about 0.1% at
    100 steps and 0.3% at 300.
    """
    if outliers not in OUTLIERS:
        raise ValueError(f"outliers must be one of {OUTLIERS}, got {outliers!r}")
    tok = Tokenizer()
    tokens, learned = pack_documents(tok, corpus_documents(CorpusConfig(),
                                                           max(2000, steps * batch_size),
                                                           seed=seed))
    stream = PackedStream(tokens, batch_size, seq_len, seed=seed, learned=learned)
    torch.manual_seed(seed)
    model = Transformer(model_config(PRETRAIN_RECIPES["cpu"], tok))
    if perturb:
        perturb_weights(model, perturb, seed=10_000 + seed)
    if outliers == "token":
        inject_token_outliers(model, outlier_scale)
    elif outliers == "channel":
        inject_channel_outliers(model, outlier_scale)
    convert_to_fp8(model, recipe)
    cfg = TrainConfig(steps=steps, batch_size=batch_size, seq_len=seq_len, lr=lr,
                      warmup_steps=min(50, steps // 10), log_every=steps, seed=seed)
    trainer = Trainer(model, stream, cfg, progress=False)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    losses = [trainer.train_step()["lm_loss"] for _ in range(steps)]
    seconds = time.perf_counter() - t0
    return Curve(recipe, losses, seconds)


@dataclass
class FidelityReport:
    """Gaps against fp32 per recipe and seed: the EMA gap averaged over the last tenth of the first
    ``step`` steps (all of them by default), for every run of ``fidelity_report``."""

    steps: int
    outliers: str
    seeds: list[int]
    # compared with "off": the noise floor, then the recipes
    labels: list[str] = field(default_factory=list)
    curves: dict[tuple[str, int], Curve] = field(default_factory=dict)  # (label, seed) -> curve

    def gaps(self, label: str, step: int | None = None) -> list[float]:
        """One gap per seed, measured at ``step`` (default: the end)."""
        k = self.steps if step is None else step
        if not 1 <= k <= self.steps:
            raise ValueError(f"step={step}: must be in [1, {self.steps}]")
        return [relative_gap(self.curves[label, s].losses[:k], self.curves["off", s].losses[:k],
                             max(1, k // 10))
                for s in self.seeds]

    def mean(self, label: str, step: int | None = None) -> float:
        g = self.gaps(label, step)
        return sum(g) / len(g)

    def stderr(self, label: str, step: int | None = None) -> float:
        """Standard error of the mean over seeds (0 with one seed)."""
        g, n = self.gaps(label, step), len(self.seeds)
        if n < 2:
            return 0.0
        m = sum(g) / n
        return math.sqrt(sum((x - m) ** 2 for x in g) / (n - 1) / n)

    def noise_floor(self, step: int | None = None) -> float:
        """Root mean square of the fp32-vs-perturbed-fp32 gaps:
        how far chaos alone moves the loss."""
        g = self.gaps(NOISE_FLOOR, step)
        return math.sqrt(sum(x * x for x in g) / len(g))

    def slowdown(self, label: str) -> float:
        """Wall time of ``label``'s runs over the fp32 runs'."""
        seconds = {lab: sum(self.curves[lab, s].seconds for s in self.seeds)
                   for lab in (label, "off")}
        return seconds[label] / seconds["off"]


def fidelity_report(steps: int, seeds: Sequence[int] = (0, 1, 2), outliers: str = "none",
                    recipes: Sequence[str] = ("deepseek", "tensorwise"), outlier_scale: float = 1e4,
                    batch_size: int = 16, seq_len: int = 128, perturb: float = 1e-6,
                    lr: float = 1e-3, on_curve: Callable[[str, int, Curve], None] | None = None,
                    ) -> FidelityReport:
    """Train fp32, perturbed fp32 and each recipe from every seed (same data and init per seed)."""
    report = FidelityReport(steps, outliers, list(seeds), labels=[NOISE_FLOOR, *recipes])
    runs = [("off", "off", 0.0), (NOISE_FLOOR, "off", perturb)] + [(r, r, 0.0) for r in recipes]
    for seed in seeds:
        for label, recipe, eps in runs:
            curve = loss_curve(recipe, steps, batch_size, seq_len, outliers, outlier_scale, seed,
                               eps, lr)
            report.curves[label, seed] = curve
            if on_curve is not None:
                on_curve(label, seed, curve)
    return report


__all__ = ["NOISE_FLOOR", "OUTLIERS", "Curve", "FidelityReport", "ema", "fidelity_report",
           "inject_channel_outliers", "inject_token_outliers", "loss_curve", "perturb_weights",
           "relative_gap"]
