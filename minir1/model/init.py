"""Building modules without their default initialisers: for a seed-stable init,
and on the meta device.

``Transformer`` draws every weight itself, in module order (V3 §4.2: N(0, 0.006)). Constructing the
Linears and Embeddings without torch's default (Kaiming) init first saves work and keeps the random
stream independent of which modules exist: the same seed gives the same main-model weights with or
without MTP modules. On the meta device the same construction costs no memory at all, which is how
minir1 counts the 671B model.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from minir1.model.moe import Gate


@contextmanager
def skip_init() -> Iterator[None]:
    """Construct ``nn.Linear``, ``nn.Embedding`` and ``Gate`` without running their initialisers."""
    classes = (nn.Linear, nn.Embedding, Gate)
    saved = [cls.reset_parameters for cls in classes]
    for cls in classes:
        cls.reset_parameters = lambda self: None
    try:
        yield
    finally:
        for cls, method in zip(classes, saved, strict=True):
            cls.reset_parameters = method


@contextmanager
def meta_init() -> Iterator[None]:
    """Build modules on the meta device without running any initialiser: shapes only, no memory."""
    with skip_init(), torch.device("meta"):
        yield


__all__ = ["meta_init", "skip_init"]
