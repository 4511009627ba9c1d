"""The checkpoint format: a directory of safetensors and JSON files, never a pickle.

``checkpoint/`` holds ``model.safetensors`` (the weights under the official parameter names),
``config.json`` (format version, step, the ``ModelConfig``, the ``TrainConfig``, free-form
``extra``), ``tokenizer.json``, and for a run that can resume: ``train_state/`` (the model and
the AdamW moments, saved with ``torch.distributed.checkpoint`` under parameter names, so a run can
resume at another world size or expert-parallel degree, or in one process) and ``rng.safetensors``
+ ``rng.json`` (torch and Python RNG states). It is written under a temporary name and renamed
into place, so a crash or a NaN never leaves a half-written checkpoint behind.

A sharded run (``minir1.dist``) writes the same directory: every rank writes its shards of
``train_state/``, and rank 0 the whole model, gathered, as ``model.safetensors``, so the checkpoint
loads in one process without torchrun. The data streams are pure functions of the step and the
global batch, so nothing per-rank needs to reshard; the RNG state is rank 0's, restored on every
rank. (Checkpoints written before ``train_state/`` existed keep their moments in
``optimizer.safetensors`` + ``optimizer.json``; they still resume, in one process.)
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import save_file

from minir1.config import ModelConfig
from minir1.data.tokenizer import Tokenizer
from minir1.dist.zero import owns
from minir1.model.transformer import Transformer
from minir1.weights import CheckpointError, read_safetensors

if TYPE_CHECKING:
    from minir1.dist.parallel import Parallel

CHECKPOINT_FORMAT = 1


def save_checkpoint(path: str | Path, model: Transformer, tokenizer: Tokenizer, step: int,
                    optimizer: torch.optim.Optimizer | None = None, train_cfg: Any = None,
                    extra: dict[str, Any] | None = None, dtype: torch.dtype | None = None,
                    parallel: Parallel | None = None) -> Path:
    """Write a checkpoint directory atomically: build it under a temporary name, then rename it.

    ``train_cfg``: a dataclass (the ``TrainConfig``) stored in ``config.json``. ``dtype`` stores the
    floating-point weights in that type (e.g. float16 for a shipped copy); loading casts them back
    to the model's dtype. ``parallel``: ``model`` is sharded over that launch; every rank calls
    this, and the directory is complete (on every rank) when it returns."""
    path = Path(path)
    main = parallel is None or parallel.is_main
    # one name for every rank of a launch (they write into it together)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid() if parallel is None else 'sharded'}")
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    if parallel is not None:
        parallel.barrier()
    if optimizer is not None:
        save_training_state(tmp / TRAIN_STATE, model, optimizer)
    state = model.state_dict() if parallel is None else parallel.full_state_dict(model)
    if main:
        assert state is not None
        _write_files(tmp, state, model.cfg, tokenizer, step, train_cfg, extra, dtype,
                     rng=optimizer is not None, parallel=parallel)
        _replace(tmp, path)
    if parallel is not None:
        parallel.barrier()
    return path


TRAIN_STATE = "train_state"  # the resumable model + optimiser state (torch.distributed.checkpoint)


def _write_files(tmp: Path, state: dict[str, torch.Tensor], cfg: ModelConfig,
                 tokenizer: Tokenizer, step: int, train_cfg: Any, extra: dict[str, Any] | None,
                 dtype: torch.dtype | None, rng: bool, parallel: Parallel | None) -> None:
    state = {k: v.detach().to(dtype if dtype is not None and v.is_floating_point() else v.dtype)
             .contiguous().cpu() for k, v in state.items()}
    save_file(state, tmp / "model.safetensors", metadata={"format": "pt"})
    meta = {"format": CHECKPOINT_FORMAT, "step": step, "model": cfg.to_dict(),
            "train": dataclasses.asdict(train_cfg) if train_cfg else None, "extra": extra or {}}
    if parallel is not None:  # where it was trained (it resumes at any layout)
        meta["parallel"] = dataclasses.asdict(parallel.layout)
    (tmp / "config.json").write_text(json.dumps(meta, indent=1) + "\n")
    tokenizer.save(tmp / "tokenizer.json")
    if rng:
        states = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            states["cuda"] = torch.cuda.get_rng_state()
        save_file(states, tmp / "rng.safetensors")
        (tmp / "rng.json").write_text(json.dumps({"python": _jsonable(random.getstate())}) + "\n")


def _replace(tmp: Path, path: Path) -> None:
    """Put the finished ``tmp`` at ``path``; the old checkpoint goes only once the new one is in."""
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def save_training_state(path: Path, model: torch.nn.Module,
                        optimizer: torch.optim.Optimizer) -> None:
    """The model and the AdamW moments under parameter names, each rank writing its own shards
    (one process: all of it). The optimiser's settings are not saved: they are the run's
    ``TrainConfig``, and the learning rate is set at every step."""
    import torch.distributed.checkpoint as dcp  # ~1 s to import: only when a run saves
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    state = {"model": get_model_state_dict(model), "optim": _moments(model, optimizer)}
    with warnings.catch_warnings():  # in one process DCP says it saves in one process
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        # safetensors files, one per rank, their shard offsets in the headers: no pickle
        dcp.save(state, storage_writer=dcp.HuggingFaceStorageWriter(str(path),
                                                                    save_distributed=True))


def _moments(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
             create: set[str] | None = None) -> dict[str, torch.Tensor]:
    """``{name.step|exp_avg|exp_avg_sq: tensor}`` of the optimiser's state: sharded like the
    parameter (a DTensor under FSDP; whole, and only on the rank that owns it, under ZeRO-1).
    ``create``: the parameters to make zeros for, to load into (those the checkpoint has state
    for: AdamW makes a parameter's state at its first gradient, so an expert idle until the save
    has none); under ZeRO-1 only those this rank owns."""
    if create is not None:
        names = {id(p): n for n, p in model.named_parameters()}
        for group in optimizer.param_groups:
            # where AdamW itself keeps ``step``: beside the parameter for a fused kernel
            on_device = group.get("fused") or group.get("capturable")
            for p in group["params"]:
                if names[id(p)] not in create or not owns(model, p):
                    continue
                step = torch.zeros((), dtype=torch.float32,
                                   device=p.device if on_device else "cpu")
                optimizer.state[p] = {"step": step, "exp_avg": torch.zeros_like(p),
                                      "exp_avg_sq": torch.zeros_like(p)}
    out = {}
    for name, p in model.named_parameters():
        for key, value in optimizer.state.get(p, {}).items():
            out[f"{name}.{key}"] = value
    return out


def load_training_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, path: Path,
                        device: torch.device, sharded: bool = False) -> None:
    """Restore what ``save_training_state`` wrote, resharded to ``model``'s layout (any world
    size and EP degree, or one process); an older checkpoint's optimizer files in one process."""
    if not (path / TRAIN_STATE).exists():
        if sharded:
            raise CheckpointError(f"{path} has no {TRAIN_STATE}/ (written before sharded "
                                  "checkpoints): resume it in one process, then relaunch")
        load_model_state(model, path)
        load_optimizer_state(optimizer, path, device)
        return
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, set_model_state_dict

    reader = dcp.HuggingFaceStorageReader(str(path / TRAIN_STATE))
    saved = {key.removeprefix("optim.").removesuffix(".step")
             for key in reader.read_metadata().state_dict_metadata
             if key.startswith("optim.") and key.endswith(".step")}
    state = {"model": get_model_state_dict(model), "optim": _moments(model, optimizer, saved)}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        # in place, into those tensors, resharded from the offsets the files record
        dcp.load(state, storage_reader=reader)
    set_model_state_dict(model, state["model"])


def _jsonable(x: Any) -> Any:
    return [_jsonable(v) for v in x] if isinstance(x, (tuple, list)) else x


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
    """Restore the optimizer's moments and param groups from an older checkpoint's
    ``optimizer.safetensors`` + ``optimizer.json``."""
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


__all__ = ["CHECKPOINT_FORMAT", "TRAIN_STATE", "check_compatible", "load_model",
           "load_model_state", "load_optimizer_state", "load_rng_state", "load_training_state",
           "read_checkpoint_meta", "save_checkpoint", "save_training_state"]
