"""Run a function on ``world`` local processes joined by a gloo process group, as torchrun would.

``run(fn, world, *args)`` returns each rank's return value; a rank that raises, or a launch that
runs past ``timeout`` seconds, fails the test with that rank's traceback. ``fn`` must be importable
(a module-level function), since every rank is a fresh interpreter.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist


def _worker(fn: Callable, rank: int, world: int, store: str, out: str, args: tuple) -> None:
    torch.set_num_threads(1)
    try:
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank,
                                world_size=world)
        result = fn(rank, world, *args)
        dist.barrier()
        torch.save(result, Path(out) / f"{rank}.pt")
        dist.destroy_process_group()
    except BaseException:
        (Path(out) / f"{rank}.err").write_text(traceback.format_exc())
        raise SystemExit(1) from None


def run(fn: Callable, world: int, *args: Any, timeout: float = 120.0) -> list[Any]:
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        store = os.path.join(tmp, "store")
        procs = [ctx.Process(target=_worker, args=(fn, r, world, store, tmp, args))
                 for r in range(world)]
        for p in procs:
            p.start()
        deadline = time.monotonic() + timeout
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
        hung = [r for r, p in enumerate(procs) if p.is_alive()]
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
        errors = {r: (Path(tmp) / f"{r}.err").read_text() for r in range(world)
                  if (Path(tmp) / f"{r}.err").exists()}
        if errors:
            rank = min(errors)
            raise AssertionError(f"rank {rank} of {world} failed:\n{errors[rank]}")
        if hung:
            raise AssertionError(f"ranks {hung} of {world} still running after {timeout:.0f} s")
        bad = {r: p.exitcode for r, p in enumerate(procs) if p.exitcode}
        if bad:
            raise AssertionError(f"ranks exited non-zero: {bad}")
        return [torch.load(Path(tmp) / f"{r}.pt", weights_only=False) for r in range(world)]
