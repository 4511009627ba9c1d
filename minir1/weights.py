"""Reading safetensors weights, for minir1's checkpoints and the transformers hub layout alike.

A directory holds ``model.safetensors``, or shards listed by ``model.safetensors.index.json`` (how
the hub stores large models, V3's 163 shards among them). Safetensors never unpickles code, so a
checkpoint from anywhere is safe to open. Errors say which file and what is wrong with it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or does not match the model it is loaded into."""


class CheckpointFileMissing(CheckpointError, FileNotFoundError):
    """A file a checkpoint needs is not there."""


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a ``.safetensors`` file, or of a directory's ``model.safetensors``
    (or its index's shards). Raises ``CheckpointFileMissing`` or ``CheckpointError``
    (truncated, corrupt)."""
    path = Path(path)
    if path.is_dir():
        index = path / "model.safetensors.index.json"
        if index.exists():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            tensors: dict[str, torch.Tensor] = {}
            for shard in shards:
                tensors.update(read_safetensors(path / shard))
            return tensors
        if not (path / "model.safetensors").exists():
            raise CheckpointFileMissing(
                f"{path}: no model.safetensors or model.safetensors.index.json")
        path = path / "model.safetensors"
    if not path.exists():
        raise CheckpointFileMissing(f"checkpoint file {path} is missing")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint file {path} is unreadable "
                              f"(truncated or corrupt?): {err}") from err


__all__ = ["CheckpointError", "CheckpointFileMissing", "read_safetensors"]
