"""Expert-parallel communication: what the all-to-alls carry per token and MoE layer, how long it
takes on H800 links, and how it compares with the layer's compute.

Rows. With EP ranks and uniform routing, each of a token's K_r expert copies lands on another rank
with probability (EP - 1) / EP, so one rank sends ``tokens x K_r x (EP - 1) / EP`` rows per MoE
layer, each way (``a2a_rows``; ``benchmarks/dist.py`` measures exactly this count).

Bytes (V3 §3.3.3): the dispatch carries the activation before the expert up-projection in FP8 with
its 1x128-tile scales, d + 4 d/128 bytes a row; the combine stays in BF16, 2 d bytes a row. The
backward pass sends the same volume back (FP8 gradients before the down-projection, BF16 for the
combine's), so a training step moves twice the forward figures.

Links (V3 §3.2.2): 50 GB/s of InfiniBand and 160 GB/s of NVLink per GPU. Three ways to route over
EP ranks spread across nodes of G GPUs:

- ``all-to-all``: one message per expert copy; K_r (EP - G) / EP copies cross IB.
- ``per-node``: V3's forwarding, a token crosses IB once per target node, to the GPU with the same
  in-node index, and is forwarded over NVLink; with unrestricted top-K_r routing it reaches
  (N - 1)(1 - C(E - E/N, K_r) / C(E, K_r)) other nodes on average (N nodes, E experts, uniform).
- ``node-limited``: the same forwarding with each token sent to at most M nodes (V3 §2.1.2, M = 4,
  chosen by the sum of their top K_r/M affinities): M (N - 1) / N other nodes, assuming every
  kept node receives one of the K_r experts and the own node is as likely to be kept as any.

NVLink then carries the copies whose expert sits on another GPU of the node they reach,
K_r (G - 1) / G; a dispatch takes the longer of the two links' times. Compute per token and MoE
layer is the forward FLOPs of its active weights and causal attention at the given context, at
``mfu`` of the GPU's peak. V3 §3.2.1 calls the ratio "approximately 1:1" for cross-node EP, which is
why DualPipe overlaps one micro-batch's all-to-alls with another's compute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from minir1.config import ModelConfig
from minir1.plan.hardware import GPU, GPUS_PER_NODE, H800, IB_GBPS, NVLINK_GBPS
from minir1.plan.memory import BF16, fp8_bytes, layer_params

ROUTINGS = ("all-to-all", "per-node", "node-limited")


def a2a_rows(tokens: float, top_k: int, ep: int) -> float:
    """Rows one rank sends to other EP ranks per MoE layer, each way, under uniform routing:
    tokens x K_r x (EP - 1) / EP."""
    if ep <= 0:
        raise ValueError(f"ep={ep!r}: must be a positive integer")
    return tokens * top_k * (ep - 1) / ep


def row_bytes(cfg: ModelConfig) -> dict[str, float]:
    """Bytes of one dispatched row (FP8 + scales) and one combined row (BF16), V3 §3.3.3."""
    return {"dispatch": fp8_bytes(cfg.dim), "combine": BF16 * cfg.dim}


@dataclass(frozen=True)
class Traffic:
    routing: str
    ib_copies: float  # per token and MoE layer, each way
    nvlink_copies: float
    dispatch_us: float  # per token, forward, the slower link
    combine_us: float
    compute_us: float  # forward compute of the same token through the layer

    @property
    def ratio(self) -> float:
        """compute : communication (1.0 means they take equally long)."""
        return self.compute_us / (self.dispatch_us + self.combine_us)


def remote_nodes(n_experts: int, top_k: int, n_nodes: int) -> float:
    """Expected other nodes reached by K_r distinct experts drawn uniformly from ``n_experts``
    spread evenly over ``n_nodes`` nodes (one of them the token's own)."""
    miss = math.comb(n_experts - n_experts // n_nodes, top_k) / math.comb(n_experts, top_k)
    return (n_nodes - 1) * (1 - miss)


def copies(cfg: ModelConfig, ep: int, routing: str,
           gpus_per_node: int = GPUS_PER_NODE) -> tuple[float, float]:
    """(IB copies, NVLink copies) per token and MoE layer, one way, for ``routing``."""
    if routing not in ROUTINGS:
        raise ValueError(f"routing={routing!r}: must be one of {ROUTINGS}")
    if cfg.n_routed_experts % ep:
        raise ValueError(f"ep={ep}: must divide n_routed_experts ({cfg.n_routed_experts})")
    k, g = cfg.n_activated_experts, min(ep, gpus_per_node)
    if ep % g:
        raise ValueError(f"ep={ep}: an EP group spanning nodes must fill them "
                         f"(a multiple of gpus_per_node={gpus_per_node})")
    nodes = ep // g
    if routing == "all-to-all":
        return k * (ep - g) / ep, k * (g - 1) / ep
    nvlink = k * (g - 1) / g
    if routing == "per-node":
        return remote_nodes(cfg.n_routed_experts, k, nodes), nvlink
    m = min(cfg.n_limited_groups, nodes)
    return m * (nodes - 1) / nodes, nvlink


def moe_layer_flops(cfg: ModelConfig, seq_len: int) -> float:
    """Forward FLOPs of one token through one MoE block: 2 per active weight plus causal
    attention, n_h (d_qk + d_v) (T + 1) (the per-layer terms of ``train_flops_per_token``)."""
    attention = cfg.n_heads * (cfg.qk_head_dim + cfg.v_head_dim) * (seq_len + 1)
    return 2 * layer_params(cfg).moe_active + attention


def traffic(cfg: ModelConfig, ep: int = 64, routing: str = "node-limited", gpu: GPU = H800,
            mfu: float = 0.4, precision: str = "bf16", seq_len: int = 4096,
            gpus_per_node: int = GPUS_PER_NODE, ib_gbps: float = IB_GBPS,
            nvlink_gbps: float = NVLINK_GBPS) -> Traffic:
    """Per-token all-to-all volume, its time on each link, and the compute it must hide behind."""
    if not cfg.n_moe_layers:
        raise ValueError("cfg has no MoE layers (n_dense_layers == n_layers): nothing to route")
    ib, nvl = copies(cfg, ep, routing, gpus_per_node)
    rows = row_bytes(cfg)

    def link_us(row: float) -> float:
        return max(ib * row / (ib_gbps * 1e9), nvl * row / (nvlink_gbps * 1e9)) * 1e6

    compute = moe_layer_flops(cfg, seq_len) / (gpu.peak_flops(precision) * mfu) * 1e6
    return Traffic(routing, ib, nvl, link_us(rows["dispatch"]), link_us(rows["combine"]), compute)


__all__ = ["ROUTINGS", "Traffic", "a2a_rows", "copies", "moe_layer_flops", "remote_nodes",
           "row_bytes", "traffic"]
