"""minir1: DeepSeek-V3 and R1, rebuilt small enough to train on a laptop, faithful enough to load
the real thing.

The layers, each importing only from the ones before it: config (``config``, ``profile``,
``utils``, ``weights``) -> model (``model``, ``fp8``, ``hf``) -> ``data`` -> ``infer`` -> ``eval``
-> ``plan`` (compute, memory and cost on paper) -> ``dist`` (torch.distributed) -> ``train``
-> ``rl`` -> ``chat`` (talk to a trained model) -> ``serve`` (the same behind an OpenAI-compatible
endpoint) -> ``viz`` -> ``report`` (a run's report card) -> cli (``cli``, ``demo``).
Every subpackage is reachable from here without importing it first (``minir1.hf.from_pretrained``):
it is imported on first use, so ``import minir1`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from minir1.config import ModelConfig
from minir1.model import LatentCache, Transformer, TransformerOutput, count_params
from minir1.utils import show_source

__version__ = "0.1.0"

# imported on first attribute access (PEP 562), so that `import minir1` does not import them all
SUBMODULES = ("chat", "cli", "config", "data", "demo", "dist", "eval", "fp8", "hf", "infer",
              "model", "plan", "profile", "report", "rl", "serve", "train", "utils", "viz",
              "weights")


def __getattr__(name: str) -> Any:
    if name in SUBMODULES:
        return importlib.import_module(f"minir1.{name}")
    raise AttributeError(f"module 'minir1' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(SUBMODULES))


__all__ = [
    "LatentCache",
    "ModelConfig",
    "Transformer",
    "TransformerOutput",
    "__version__",
    "count_params",
    "show_source",
]
