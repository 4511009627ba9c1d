"""The GPUs the planner knows: memory, dense tensor-core peaks, and the H800 cluster's links.

Peaks are the vendors' *dense* figures (the datasheets print "with sparsity" numbers twice as large)
with FP32 accumulation, the way training runs them:

- RTX 3080 (GA102, Ampere): 59.5 TFLOP/s BF16; no FP8 tensor cores (FP8 arrived with compute
  capability 8.9). NVIDIA Ampere GA102 GPU Architecture whitepaper, Table: GeForce RTX 3080.
- RTX 4090 (AD102, Ada): 165.2 TFLOP/s BF16, 330.3 FP8 (GeForce runs FP32 accumulation at half
  the FP16-accumulate rate). NVIDIA Ada GPU Architecture whitepaper, Appendix A.
- H100 SXM5 / H800 SXM5 (Hopper): 989.4 TFLOP/s BF16, 1,978.9 FP8. NVIDIA H100 Tensor Core GPU
  datasheet (1,979 / 3,958 "with sparsity"); the H800 is the export variant with the same SMs and
  a cut NVLink, which is the GPU DeepSeek-V3 trained on (V3 §3.1).

Memory sizes are binary, as the parts are built: an RTX 3080's "10 GB" is 10 x 2^30 bytes, an
H800's "80 GB" five 16 GiB HBM3 stacks. ``reserve_gib`` is what the CUDA context, library
workspaces and allocator slack take before a tensor is stored; it is an assumption (PyTorch's
first CUDA call alone takes a few hundred MiB), change it per call.

Links (V3 §3.2.2): "NVLink offers a bandwidth of 160 GB/s, roughly 3.2 times that of IB (50 GB/s)"
per GPU, in each direction. These are the achievable figures the paper plans with, not NVIDIA's
aggregate bidirectional ones (400 GB/s for the H800).
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 2**30

NVLINK_GBPS = 160.0  # GB/s per GPU within a node (V3 §3.2.2)
IB_GBPS = 50.0  # GB/s per GPU across nodes, one 400 Gb/s InfiniBand NIC each (V3 §3.2.2)
GPUS_PER_NODE = 8  # H800 nodes: 8 GPUs on NVLink/NVSwitch (V3 §3.1)


@dataclass(frozen=True)
class GPU:
    name: str
    memory_gib: float  # per GPU
    bf16_tflops: float  # dense peak, FP32 accumulation
    fp8_tflops: float | None  # dense peak; None: no FP8 tensor cores
    count: int = 1  # GPUs in this unit (a node is 8 of them, memory pooled by sharding)
    reserve_gib: float = 1.0  # per GPU: CUDA context, workspaces, allocator slack (assumed)

    @property
    def usable_bytes(self) -> float:
        """Bytes left for weights, cache and activations on the whole unit."""
        return self.count * (self.memory_gib - self.reserve_gib) * GIB

    def peak_flops(self, precision: str = "bf16") -> float:
        """Dense peak FLOP/s of one GPU at ``precision`` ("bf16" or "fp8")."""
        if precision == "bf16":
            return self.bf16_tflops * 1e12
        if precision == "fp8":
            if self.fp8_tflops is None:
                raise ValueError(f"precision='fp8': {self.name} has no FP8 tensor cores")
            return self.fp8_tflops * 1e12
        raise ValueError(f"precision={precision!r}: must be 'bf16' or 'fp8'")


H800 = GPU("H800", 80, 989.4, 1978.9)

GPUS: dict[str, GPU] = {
    "rtx3080": GPU("RTX 3080", 10, 59.5, None),
    "rtx4090": GPU("RTX 4090", 24, 165.2, 330.3),
    "h100": GPU("H100", 80, 989.4, 1978.9),
    "h800": H800,
    "8xh800": GPU("8x H800 node", 80, 989.4, 1978.9, count=GPUS_PER_NODE),
}


def get_gpu(name: str) -> GPU:
    """The GPU called ``name`` (case and spaces ignored: "H800", "rtx 4090", "8xH800")."""
    key = name.lower().replace(" ", "").replace("-", "")
    if key not in GPUS:
        raise ValueError(f"gpu={name!r}: unknown GPU; choose one of {sorted(GPUS)}")
    return GPUS[key]


__all__ = ["GIB", "GPU", "GPUS", "GPUS_PER_NODE", "H800", "IB_GBPS", "NVLINK_GBPS", "get_gpu"]
