"""The checkpoint format: a directory of safetensors and JSON files, never a pickle.

``checkpoint/`` holds ``model.safetensors`` (the weights under the official parameter names),
``config.json`` (format version, step, the ``ModelConfig``, the ``TrainConfig``, free-form
``extra``), ``tokenizer.json``, and for a run that can resume: ``optimizer.safetensors`` +
``optimizer.json`` (AdamW moments and param groups) and ``rng.safetensors`` + ``rng.json`` (torch
and Python RNG states). It is written under a temporary name and renamed into place, so a crash or a
NaN never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from minir1.config import ModelConfig
from minir1.data.tokenizer import Tokenizer
from minir1.model.transformer import Transformer
from minir1.weights import CheckpointError, read_safetensors

CHECKPOINT_FORMAT = 1


def save_checkpoint(path: str | Path, model: Transformer, tokenizer: Tokenizer, step: int,
                    optimizer: torch.optim.Optimizer | None = None, train_cfg: Any = None,
                    extra: dict[str, Any] | None = None, dtype: torch.dtype | None = None) -> Path:
    """Write a checkpoint directory atomically: build it under a temporary name, then rename it.

    ``train_cfg``: a dataclass (the ``TrainConfig``) stored in ``config.json``. ``dtype`` stores the
    floating-point weights in that type (e.g. float16 for a shipped copy); loading casts them back
    to the model's dtype."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    state = {k: v.detach().to(dtype if dtype is not None and v.is_floating_point() else v.dtype)
             .contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, tmp / "model.safetensors", metadata={"format": "pt"})
    meta = {"format": CHECKPOINT_FORMAT, "step": step, "model": model.cfg.to_dict(),
            "train": dataclasses.asdict(train_cfg) if train_cfg else None, "extra": extra or {}}
    (tmp / "config.json").write_text(json.dumps(meta, indent=1) + "\n")
    tokenizer.save(tmp / "tokenizer.json")
    if optimizer is not None:
        tensors, groups = _flatten_optimizer(optimizer)
        save_file(tensors, tmp / "optimizer.safetensors")
        (tmp / "optimizer.json").write_text(json.dumps(groups) + "\n")
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state()
        save_file(rng, tmp / "rng.safetensors")
        (tmp / "rng.json").write_text(json.dumps({"python": _jsonable(random.getstate())}) + "\n")
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)
    return path


def _jsonable(x: Any) -> Any:
    return [_jsonable(v) for v in x] if isinstance(x, (tuple, list)) else x


def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    sd = opt.state_dict()
    tensors = {f"state.{i}.{k}": v.detach().contiguous().cpu() for i, s in sd["state"].items()
               for k, v in s.items() if torch.is_tensor(v)}
    groups = [{k: v for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, groups


def read_checkpoint_meta(path: str | Path) -> dict[str, Any]:
    """``config.json`` of a checkpoint, its format version checked."""
    path = Path(path)
    if not (path / "config.json").exists():
        raise CheckpointError(f"no checkpoint at {path} (config.json missing)")
    try:
        meta = json.loads((path / "config.json").read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path / 'config.json'} is not valid JSON: {err}") from err
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {meta.get('format')!r}, "
                              f"expected {CHECKPOINT_FORMAT}")
    return meta


def load_model(path: str | Path,
               device: str | torch.device = "cpu") -> tuple[Transformer, Tokenizer, dict]:
    """A model, its tokenizer and the checkpoint's metadata (no optimizer state)."""
    path = Path(path)
    meta = read_checkpoint_meta(path)
    model = Transformer(ModelConfig.from_dict(meta["model"]))
    load_model_state(model, path)
    return model.to(device), Tokenizer.load(path / "tokenizer.json"), meta


def load_model_state(model: Transformer, path: Path) -> None:
    """Load a checkpoint's weights into ``model``; every name must match."""
    state = read_safetensors(path / "model.safetensors")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not match the model (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]})")


def check_compatible(meta: dict[str, Any], model: Transformer, tokenizer: Tokenizer,
                     path: Path) -> None:
    """Raise ``CheckpointError`` unless the checkpoint was made for this model config
    and tokenizer."""
    saved = ModelConfig.from_dict(meta["model"])
    diff = [f"{k}: checkpoint {v!r} vs model {getattr(model.cfg, k)!r}"
            for k, v in saved.to_dict().items() if getattr(model.cfg, k) != v]
    if diff:
        raise CheckpointError(f"{path}: model config differs from the checkpoint's: "
                              + "; ".join(diff[:4]))
    if Tokenizer.load(path / "tokenizer.json") != tokenizer:
        raise CheckpointError(f"{path}: tokenizer differs from the checkpoint's")


def load_optimizer_state(optimizer: torch.optim.Optimizer, path: Path,
                         device: torch.device) -> None:
    """Restore the optimizer's moments and param groups saved by ``save_checkpoint``."""
    tensors = read_safetensors(path / "optimizer.safetensors")
    groups = json.loads((path / "optimizer.json").read_text())
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        _, i, name = key.split(".", 2)
        state.setdefault(int(i), {})[name] = value.to(device) if name != "step" else value
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def load_rng_state(path: Path) -> None:
    """Restore the torch (and CUDA) and Python RNG states saved by ``save_checkpoint``."""
    rng = read_safetensors(path / "rng.safetensors")
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])
    py = json.loads((path / "rng.json").read_text())["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


__all__ = ["CHECKPOINT_FORMAT", "check_compatible", "load_model", "load_model_state",
           "load_optimizer_state", "load_rng_state", "read_checkpoint_meta", "save_checkpoint"]
