"""Where runs live and which base model a lesson or command starts from.

``runs/`` (or ``$MINIR1_RUNS``) holds one directory per run: ``runs/base-PROFILE`` is what ``minir1
pretrain --profile PROFILE`` writes, ``runs/student-PROFILE`` the distillation student's base,
``runs/r1zero-PROFILE``, ``runs/r1-PROFILE``, ``runs/distill-PROFILE`` the RL runs. The repository
also ships, in ``data/``, what the ``cpu`` recipes produced (weights in float16), so CI and a first
read of the RL lessons do not wait an hour for a base model: ``data/base-cpu``, ``data/student-cpu``
and the teacher's rejection-sampled traces ``data/r1-traces-cpu.jsonl``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from minir1 import profile
from minir1.data.tokenizer import Tokenizer
from minir1.model.transformer import Transformer
from minir1.train.checkpoint import load_model, save_checkpoint
from minir1.train.pretrain import PRETRAIN_RECIPES, STUDENT_RECIPES, pretrain

REPO_ROOT = Path(__file__).resolve().parents[2]  # the checkout (when minir1 runs from one)
SHIPPED = REPO_ROOT / "data"  # data/base-cpu, data/student-cpu, data/r1-traces-cpu.jsonl, data/test
SHIPPED_TRACES = SHIPPED / "r1-traces-cpu.jsonl"  # the traces of `minir1 r1 --profile cpu`
MODELS = ("base", "student")  # what a run directory or a shipped copy holds


def runs_dir() -> Path:
    """Where runs live: ``$MINIR1_RUNS``, else ``runs/`` in the repository checkout (so the CLI and
    the lessons, which run from ``notebooks/``, find the same files), else ``./runs``."""
    if os.environ.get("MINIR1_RUNS"):
        return Path(os.environ["MINIR1_RUNS"])
    return REPO_ROOT / "runs" if (REPO_ROOT / "pyproject.toml").exists() else Path.cwd() / "runs"


def _check_kind(kind: str) -> None:
    if kind not in MODELS:
        raise ValueError(f"kind={kind!r}: must be one of {MODELS}")


def pretrain_command(profile_name: str, kind: str = "base") -> str:
    """The command that trains a profile's base (or student) model."""
    return f"minir1 pretrain{' --student' if kind == 'student' else ''} --profile {profile_name}"


def base_dir(profile_name: str | None = None, kind: str = "base") -> Path:
    """The documented pre-training run of a profile: ``minir1 pretrain --profile P`` writes
    ``runs/base-P`` (``kind="student"``: ``minir1 pretrain --student`` writes
    ``runs/student-P``)."""
    _check_kind(kind)
    return runs_dir() / f"{kind}-{profile_name or profile.current()}"


def load_base(profile_name: str | None = None, train_if_missing: bool = True, progress: bool = True,
              kind: str = "base") -> tuple[Transformer, Tokenizer, dict[str, Any]]:
    """The base model the RL lessons start from: loaded from ``base_dir(profile)``, or pre-trained
    there first with the profile's recipe (about a minute in ``ci``; the ``cpu`` recipe is the
    ``minir1 pretrain`` run). ``kind="student"``: the same for the distillation student."""
    name = profile_name or profile.current()
    ckpt = base_dir(name, kind) / "checkpoint"
    if not ckpt.exists():
        if not train_if_missing:
            raise FileNotFoundError(f"no {kind} model at {ckpt}: run "
                                    f"`{pretrain_command(name, kind)}` first")
        print(f"no {kind} model at {ckpt}; pre-training one now (same as "
              f"`{pretrain_command(name, kind)}`)")
        recipes = STUDENT_RECIPES if kind == "student" else PRETRAIN_RECIPES
        pretrain(base_dir(name, kind), recipes[name], progress=progress)
    return load_model(ckpt)


def shipped_base_dir(kind: str = "base") -> Path:
    """``data/base-cpu``: the ``cpu`` recipe's base model (``minir1 pretrain --profile cpu``, 5,000
    steps), its weights in float16 to keep the repository small (``make ship-base`` rewrites it).
    ``kind="student"``: ``data/student-cpu``, the distillation student's base."""
    _check_kind(kind)
    return SHIPPED / f"{kind}-cpu"


def ship_base(src: str | Path | None = None, dst: str | Path | None = None,
              kind: str = "base") -> Path:
    """Copy a trained base model (default ``runs/KIND-cpu``) into ``data/KIND-cpu``, float16."""
    model, tok, meta = load_model(Path(src) if src else base_dir("cpu", kind) / "checkpoint")
    extra = {**meta.get("extra", {}), "shipped_from": pretrain_command("cpu", kind),
             "stored_dtype": "float16"}
    return save_checkpoint(Path(dst) if dst else shipped_base_dir(kind), model, tok, meta["step"],
                           extra=extra, dtype=torch.float16)


def load_rl_base(profile_name: str | None = None, progress: bool = True,
                 kind: str = "base") -> tuple[Transformer, Tokenizer, dict[str, Any]]:
    """The base model RL starts from (``minir1 r1-zero``, ``minir1 r1`` and lessons 09-11).

    ``gpu``: ``load_base("gpu")``. ``ci`` and ``cpu``: the ``cpu`` recipe's model, from
    ``runs/base-cpu`` if you trained it, else the copy shipped in ``data/base-cpu``. A minute of
    ``ci`` pre-training teaches the model nothing to reason with, and the ``cpu`` recipe takes most
    of an hour, so CI and a first read of the RL lessons start from the shipped copy; RL on it
    measures the same thing. ``kind="student"``: the same for the distillation student.
    """
    name = profile_name or profile.current()
    if name == "gpu":
        return load_base("gpu", progress=progress, kind=kind)
    trained = base_dir("cpu", kind) / "checkpoint"
    if trained.exists() or not shipped_base_dir(kind).exists():
        return load_base("cpu", progress=progress, kind=kind)
    return load_model(shipped_base_dir(kind))


__all__ = ["MODELS", "REPO_ROOT", "SHIPPED", "SHIPPED_TRACES", "base_dir", "load_base",
           "load_rl_base", "pretrain_command", "runs_dir", "ship_base", "shipped_base_dir"]
