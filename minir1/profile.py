"""The one switch that sizes every lesson: ``MINIR1_PROFILE=ci|cpu|gpu``.

``ci`` is the smallest run that still teaches (CI executes it), ``cpu`` what a student runs on a
laptop, ``gpu`` the larger run on one GPU. The default is ``gpu`` when CUDA is available, else
``cpu``. Lessons read the profile only through this module:
``steps = pick(ci=30, cpu=300, gpu=3000)``.
"""

from __future__ import annotations

import os
from typing import TypeVar

PROFILES = ("ci", "cpu", "gpu")
T = TypeVar("T")


def current() -> str:
    """The active profile name."""
    name = os.environ.get("MINIR1_PROFILE", "").strip().lower()
    if not name:
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    if name not in PROFILES:
        raise ValueError(f"MINIR1_PROFILE={name!r}: must be one of {PROFILES}")
    return name


def pick(ci: T, cpu: T, gpu: T) -> T:
    """The value for the active profile."""
    return {"ci": ci, "cpu": cpu, "gpu": gpu}[current()]


def device() -> str:
    """Where lessons and training run: cuda > mps > cpu."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"
