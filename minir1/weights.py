"""Reading safetensors weights, for minir1's checkpoints and the transformers hub layout alike.

A directory holds ``model.safetensors``, or shards listed by ``model.safetensors.index.json`` (how
the hub stores large models, V3's 163 shards among them). Safetensors never unpickles code, so a
checkpoint from anywhere is safe to open. Errors say which file and what is wrong with it.

``weight_map`` lists what a checkpoint holds without reading any tensor, and ``read_safetensors``
with ``keys`` reads only those tensors (``safe_open`` maps the file and copies just the bytes
asked for), opening only the shards that hold them: a V3 layer can be read from a copy that holds
only the few of its 163 shards that the layer is in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

INDEX = "model.safetensors.index.json"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or does not match the model it is loaded into."""


class CheckpointFileMissing(CheckpointError, FileNotFoundError):
    """A file a checkpoint needs is not there."""


def _unreadable(path: Path, err: Exception) -> CheckpointError:
    return CheckpointError(f"checkpoint file {path} is unreadable (truncated or corrupt?): {err}")


def _file_keys(path: Path) -> list[str]:
    if not path.exists():
        raise CheckpointFileMissing(f"checkpoint file {path} is missing")
    try:
        with safe_open(path, framework="pt") as f:
            return list(f.keys())
    except (SafetensorError, OSError, ValueError) as err:
        raise _unreadable(path, err) from err


def weight_map(path: str | Path) -> dict[str, Path]:
    """Tensor name -> the file holding it, for a ``.safetensors`` file or a hub directory.

    With an index, this is its ``weight_map`` as it stands: no shard is opened, so shards that are
    absent are found only when a tensor in them is read.
    """
    path = Path(path)
    if not path.is_dir():
        return dict.fromkeys(_file_keys(path), path)
    index = path / INDEX
    if index.exists():
        try:
            names = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError, TypeError) as err:
            raise CheckpointError(f"{index} is not a safetensors index "
                                  f"(a JSON object with a 'weight_map'): {err!r}") from err
        return {key: path / shard for key, shard in names.items()}
    if not (path / "model.safetensors").exists():
        raise CheckpointFileMissing(f"{path}: no model.safetensors or {INDEX}")
    return weight_map(path / "model.safetensors")


def _read_shard(shard: Path, keys: list[str]) -> dict[str, torch.Tensor]:
    if not shard.exists():
        index = shard.parent / INDEX
        raise CheckpointFileMissing(f"{index} puts {keys[0]!r} (and {len(keys) - 1} more) in "
                                    f"{shard.name}, which is missing")
    try:
        with safe_open(shard, framework="pt") as f:
            absent = sorted(set(keys) - set(f.keys()))
            if absent:
                raise CheckpointError(f"{shard.parent / INDEX} puts {absent[0]!r} in "
                                      f"{shard.name}, which does not hold it")
            return {k: f.get_tensor(k) for k in keys}
    except (SafetensorError, OSError, ValueError) as err:
        raise _unreadable(shard, err) from err


def read_safetensors(path: str | Path,
                     keys: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file, or of a directory's ``model.safetensors``
    (or its index's shards): every one, or only ``keys``. Raises ``CheckpointFileMissing``
    or ``CheckpointError`` (truncated, corrupt, a key the checkpoint lacks)."""
    path = Path(path)
    if keys is None and not path.is_dir():
        if not path.exists():
            raise CheckpointFileMissing(f"checkpoint file {path} is missing")
        try:
            return load_file(path)
        except (SafetensorError, OSError, ValueError) as err:
            raise _unreadable(path, err) from err
    files = weight_map(path)
    wanted = list(files) if keys is None else list(keys)
    unknown = [k for k in wanted if k not in files]
    if unknown:
        raise CheckpointError(f"{path} has no tensor {unknown[0]!r}")
    by_shard: dict[Path, list[str]] = {}
    for key in wanted:
        by_shard.setdefault(files[key], []).append(key)
    tensors: dict[str, torch.Tensor] = {}
    for shard in sorted(by_shard):
        tensors.update(_read_shard(shard, by_shard[shard]))
    return {k: tensors[k] for k in wanted}


__all__ = ["INDEX", "CheckpointError", "CheckpointFileMissing", "read_safetensors", "weight_map"]
