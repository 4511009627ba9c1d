"""Weights derived from parameters (a folded or stacked matrix), cached while sampling.

Inference can multiply some weights out once instead of at every step: MLA folds W^UK into the query
projection and W^UV into W^O (DeepSeek-V2 §2.1.2), a small MoE stacks its experts for a decoding
step. ``derived_weight`` keeps such a product on its module and rebuilds it whenever a source
parameter changes; ``frozen_weights`` lets a sampling loop promise that none changes, so the check
runs once. Not in the papers' equations: a speed-up that leaves every number as it was.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

_epochs = itertools.count(1)
_frozen_epoch = 0  # inside ``frozen_weights``: the number of its outermost block; 0 outside
# optimizer steps taken in this process: part of every cache key, because the fused AdamW kernel
# updates parameters in place without bumping their version counters (torch 2.13, CPU)
_optimizer_steps = 0


def _count_step(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    global _optimizer_steps
    _optimizer_steps += 1


register_optimizer_step_post_hook(_count_step)


@contextmanager
def frozen_weights() -> Iterator[None]:
    """Promise that no weight changes inside the block (a sampling loop): each ``derived_weight`` is
    checked against its sources once, on its first use in the block, then reused without looking."""
    global _frozen_epoch
    outer = _frozen_epoch
    if not outer:
        _frozen_epoch = next(_epochs)
    try:
        yield
    finally:
        _frozen_epoch = outer


def derived_weight(module: nn.Module, name: str, build: Callable[[], Any],
                   sources: Callable[[], Sequence[torch.Tensor]]) -> Any:
    """A value computed from parameters, cached on ``module`` for inference.

    ``sources()`` lists the parameters ``build()`` reads. With gradients on, ``build()`` runs every
    call, so gradients reach them. Without (sampling, evaluation) the result is kept and rebuilt
    only when a source changed: any optimizer step (counted by a global step hook, since fused
    kernels update in place without bumping version counters), an in-place update such as
    ``load_state_dict`` (it bumps a tensor's version counter), or ``.to()`` (a new storage, dtype
    or device) misses the cache (inside ``frozen_weights`` the check runs once per block).
    Anything else ``build()`` reads must be part of ``name``. The cache is a plain attribute: it
    never enters the state dict.
    """
    if torch.is_grad_enabled() and any(p.requires_grad for p in sources()):
        return build()
    cache = module.__dict__.setdefault("_derived", {})
    hit = cache.get(name)
    if _frozen_epoch and hit is not None and hit[2] == _frozen_epoch:
        return hit[1]
    key = (_optimizer_steps,
           *((p.data_ptr(), p._version, p.dtype, p.device) for p in sources()))
    if hit is None or hit[0] != key:
        with torch.no_grad():
            hit = (key, build(), _frozen_epoch)
    cache[name] = (hit[0], hit[1], _frozen_epoch)
    return hit[1]


__all__ = ["derived_weight", "frozen_weights"]
