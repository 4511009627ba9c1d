"""Every routed expert in two grouped GEMMs, with no host-device synchronisation (an
implementation shortcut; the paper's path is ``RoutedExperts``' loop, V3 §2.1.2).

The loop splits the expert-sorted rows with ``counts.tolist()``: the host waits for the GPU to
finish the routing before it can launch the first expert, once per MoE layer and micro-batch, and
``torch.compile`` breaks its graph there. ``torch._grouped_mm`` takes the per-expert row offsets as
a device tensor instead: one kernel for the stacked ``[w1; w3]`` of every expert, one for the
stacked ``w2``, whatever the counts. The products are the loop's (bit-equal on a CPU in fp32;
tested), with two differences:

- an expert no token chose still gets a gradient, of zeros (its weights are in the stack). The
  loop leaves its ``.grad`` None, so AdamW skips it that step (a zero gradient would still decay
  its moments and weights). ``drop_idle_gradients`` restores that after backward with one
  device-to-host read per optimiser step for all layers (``minir1.train.loop`` calls it;
  ``minir1.dist.data_parallel.finish_gradients`` does the same over the launch's global loads);
- forward hooks on the individual experts do not fire (nothing calls them).

Where the grouped kernel runs (``grouped_support``; torch 2.13):

- CUDA (torch's dispatch rules, not yet run here): bf16 operands on compute capability 9.x/10.x
  (Hopper, Blackwell), CUTLASS's grouped kernel. Elsewhere torch falls back to a loop that copies
  the offsets to the host, the very synchronisation this avoids, so the experts' own loop is used
  instead (it also keeps ``.grad`` None). Under autocast the operands are cast to the autocast
  dtype, as ``F.linear`` would;
- CPU (measured): fp32, bf16 and fp16 (not float64); offsets int32; every row stride a multiple of
  16 bytes (``dim`` and ``moe_inter_dim`` multiples of 4 in fp32); a gradient of stride 0 refused.
  On by default only where it is faster (``CPU_DEFAULT``);
- ``torch.compile``: the fake-tensor kernel accepts bf16 only, so a compiled fp32 model loops;
- other devices (Apple MPS): the loop, the same code path as a CUDA GPU without the kernel.

Both paths copy every expert's weights once per call (the loop its per-expert ``[w1; w3]``, this
the stack), so neither holds more parameters than the model.

Which path "auto" chose is logged once per distinct choice (logger ``minir1.model.grouped``).
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

IMPLS = ("auto", "grouped", "loop")
# CPU default: the loop. benchmarks/train_step.py --threads 1 (torch 2.13, fp32, a shared 2-core
# CPU) measured 632 ms per step with the loop and 665 ms grouped; an alternating A/B of the same
# step 652 vs 628 ms: no gain beyond noise, so the CPU keeps the loop (and its None gradients).
# The grouped path pays where a host sync costs: on a GPU.
CPU_DEFAULT = "loop"
_CUDA_MAJORS = (9, 10)  # torch's bf16 grouped kernel: SM90 (Hopper) and SM100 (Blackwell)
_logged: set[tuple[str, str]] = set()


def compute_dtype(weight: torch.Tensor) -> torch.dtype:
    """The dtype the experts' matmuls run in: the autocast dtype where autocast is on for the
    weight's device, else the weight's own."""
    kind = weight.device.type
    if torch.amp.is_autocast_available(kind) and torch.is_autocast_enabled(kind):
        return torch.get_autocast_dtype(kind)
    return weight.dtype


def grouped_support(device: torch.device, dtype: torch.dtype,
                    widths: tuple[int, ...]) -> str | None:
    """Why ``torch._grouped_mm`` cannot run these experts without a host sync here, or None if it
    can. ``widths``: the inner dimensions (``dim``, ``moe_inter_dim``)."""
    if not hasattr(torch, "_grouped_mm"):
        return f"torch {torch.__version__} has no torch._grouped_mm"
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        return f"{dtype} is not a grouped-GEMM dtype (fp32, bf16, fp16)"
    if torch.compiler.is_compiling() and dtype != torch.bfloat16:
        return f"torch.compile's grouped GEMM takes bf16 only, not {dtype}"
    align = 16 // dtype.itemsize
    if any(w % align for w in widths):
        return f"widths {widths} are not multiples of {align} ({dtype} rows of 16 bytes)"
    if device.type == "cpu":
        return None
    if device.type == "cuda":
        # get_device_properties: torch.compile folds it to a constant (get_device_capability it
        # would trace, and marking that constant would import torch._dynamo with minir1: ~2 s)
        major = torch.cuda.get_device_properties(device.index).major
        if dtype != torch.bfloat16 or major not in _CUDA_MAJORS:
            return (f"CUDA's grouped kernel needs bf16 on SM90/SM100 (here {dtype} on "
                    f"SM{major}x); torch's fallback reads the offsets on the host")
        return None
    return f"no grouped kernel known to run on {device.type} without a host sync"


def use_grouped(impl: str, experts: nn.ModuleList, x: torch.Tensor) -> bool:
    """Whether to run ``experts`` grouped: ``impl`` is "grouped", "loop" or "auto" (grouped where
    ``grouped_support`` allows and, on a CPU, only if ``CPU_DEFAULT`` says so). "grouped" where it
    cannot run raises. "auto"'s choice is logged once per distinct choice."""
    if impl not in IMPLS:
        raise ValueError(f"expert GEMM impl={impl!r}: must be one of {IMPLS}")
    if impl == "loop":
        return False
    first = experts[0]
    if not all(type(getattr(first, w, None)) is nn.Linear for w in ("w1", "w2", "w3")):
        why: str | None = f"experts are {type(first.w1).__name__}, not stacked nn.Linear"
    else:
        dtype = compute_dtype(first.w1.weight)
        why = grouped_support(x.device, dtype, tuple(first.w1.weight.shape))
        if why is None and impl == "auto" and x.device.type == "cpu" and CPU_DEFAULT == "loop":
            why = "the loop is as fast on a CPU (CPU_DEFAULT)"
    if impl == "grouped":
        if why is not None:
            raise RuntimeError(f"grouped expert GEMM unavailable: {why}")
        return True
    key = (x.device.type, why or "grouped")
    if key not in _logged and not torch.compiler.is_compiling():
        _logged.add(key)
        log.info("routed experts on %s: %s", x.device.type,
                 "one grouped GEMM (torch._grouped_mm)" if why is None
                 else f"a loop over the experts ({why})")
    return why is None


def grouped_experts(experts: nn.ModuleList, x_sorted: torch.Tensor,
                    counts: torch.Tensor) -> torch.Tensor:
    """``RoutedExperts.forward`` in two grouped GEMMs: the SwiGLU w2(silu(w1 x) * w3 x) of expert e
    on rows ``counts[:e].sum() : counts[:e+1].sum()``, offsets kept on the device."""
    dtype = compute_dtype(experts[0].w1.weight)
    inter = experts[0].w1.weight.shape[0]
    # (E, 2 * inter, dim): [w1_e; w3_e] per expert, so one GEMM yields gate and up side by side
    w13 = torch.stack([w for e in experts for w in (e.w1.weight, e.w3.weight)])
    w13 = w13.view(len(experts), 2 * inter, -1).to(dtype)
    w2 = torch.stack([e.w2.weight for e in experts]).to(dtype)  # (E, dim, inter)
    offs = counts.cumsum(0).to(torch.int32)
    gate, up = torch._grouped_mm(x_sorted.to(dtype), w13.transpose(1, 2), offs).chunk(2, dim=-1)
    y = torch._grouped_mm(F.silu(gate) * up, w2.transpose(1, 2), offs)
    if y.requires_grad and not torch.compiler.is_compiling():
        # the kernel's backward rejects a broadcast gradient (stride 0), e.g. from ``y.sum()``
        y.register_hook(lambda g: g.contiguous())
    return y


@torch.no_grad()
def drop_idle_gradients(moes: list[nn.Module]) -> int:
    """After backward: set ``.grad`` to None for every routed expert that no token reached since
    the last bias update (``MoE.load`` is 0), as the loop leaves it. One device-to-host read for
    all layers. Returns how many experts were idle."""
    if not moes:
        return 0
    idle = (torch.stack([m.load for m in moes]) == 0).tolist()
    n = 0
    for moe, row in zip(moes, idle, strict=True):
        for expert, is_idle in zip(moe.experts, row, strict=True):
            if is_idle:
                n += 1
                for p in expert.parameters():
                    p.grad = None
    return n


__all__ = ["CPU_DEFAULT", "IMPLS", "compute_dtype", "drop_idle_gradients",
           "grouped_experts", "grouped_support", "use_grouped"]
