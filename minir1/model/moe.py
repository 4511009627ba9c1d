"""DeepSeekMoE with auxiliary-loss-free load balancing (DeepSeek-V3 §2.1.2, Eqs. 12-20).

h' = u + sum_i FFN^(s)_i(u) + sum_i g_{i,t} FFN^(r)_i(u)                       (Eq. 12)

* Affinity s_{i,t} = sigmoid(u_t . e_i) (Eq. 15; V2 used softmax).
* Selection uses s_{i,t} + b_i (Eq. 16): the per-expert bias b steers *which* experts a token
  visits, never how much they weigh. It is not trained by gradients: after each step the trainer
  calls ``update_bias`` and b_i += gamma * sign(mean load - load_i), from that step's loads (no
  information from the future leaks).
* Group-limited routing: experts are split into ``n_expert_groups`` groups (V3: 8 nodes of 32
  experts); a group is scored by the sum of its top-2 biased affinities (by its max for softmax
  gates, as in V2), and a token may only use experts of the best ``n_limited_groups`` groups.
* The K_r selected affinities are normalised to sum to 1 (sigmoid only, Eq. 13) and
  scaled by ``route_scale``.
* The complementary sequence-wise balance loss L_Bal = alpha * sum_i f_i P_i (Eqs. 17-20) is
  computed per sequence, on request.
* No token is ever dropped: every token reaches its K_r experts.

Dispatch is written as three steps so that expert parallelism's all-to-all sits between them:
``permute`` (sort the N*K_r token copies by expert) -> ``RoutedExperts`` (each expert once, on its
contiguous slice) -> ``unpermute`` (restore token order and take the gate-weighted sum).
``minir1.dist.expert_parallel`` swaps ``RoutedExperts`` for a container of one rank's experts that
sends each slice to the rank owning its expert and brings the results back.

At inference, a handful of tokens (a decoding step) through small experts goes
another way, to the same sum: every expert on every token, the unchosen ones weighted 0
(``MoE.all_experts``): two matmuls instead of a call per expert, which on a CPU costs far more in
overhead than in arithmetic.

In training on a GPU, ``RoutedExperts`` runs every expert in two grouped GEMMs instead of one call
each (``minir1.model.grouped``): the same sums, without reading the counts on the host.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from minir1.config import ModelConfig
from minir1.model.derived import derived_weight
from minir1.model.grouped import IMPLS, grouped_experts, use_grouped

# ``MoE.dense_decode``: run every expert on every token below these sizes at inference (see
# ``all_experts``). 128 tokens and 8 MiB were measured on a 2-core CPU with the `tiny`-sized models
# (benchmarks/generate.py); V3's experts (44M parameters, 84 MiB each in bf16) never qualify.
DENSE_DECODE_MAX_TOKENS = 128
DENSE_DECODE_MAX_BYTES = 8 * 2**20


class MLP(nn.Module):
    """SwiGLU feed-forward: w2(silu(w1 x) * w3 x). Used for the dense FFN, every expert and the
    shared experts."""

    def __init__(self, dim: int, inter_dim: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, inter_dim, bias=False)  # gate_proj
        self.w2 = nn.Linear(inter_dim, dim, bias=False)  # down_proj
        self.w3 = nn.Linear(dim, inter_dim, bias=False)  # up_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if type(self.w1) is nn.Linear and type(self.w3) is nn.Linear:
            # w1 and w3 read the same input: one matmul over the stacked rows is ~15% faster on CPU
            gate, up = F.linear(x, torch.cat([self.w1.weight, self.w3.weight])).chunk(2, dim=-1)
        else:  # e.g. Fp8Linear, which quantises each weight with its own block scales
            gate, up = self.w1(x), self.w3(x)
        return self.w2(F.silu(gate) * up)


class Gate(nn.Module):
    """The router: affinities, biased group-limited top-k selection, unbiased normalised weights."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.topk = cfg.n_activated_experts
        self.n_groups = cfg.n_expert_groups
        self.topk_groups = cfg.n_limited_groups
        self.score_func = cfg.score_func
        self.route_scale = cfg.route_scale
        self.init_std = cfg.init_std
        # expert centroids e_i
        self.weight = nn.Parameter(torch.empty(cfg.n_routed_experts, cfg.dim))
        # b_i: a buffer, since it is moved by the load rule, not by gradients; fp32 like
        # the official gate bias
        self.register_buffer("bias", torch.zeros(cfg.n_routed_experts, dtype=torch.float32))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if not self.weight.is_meta:
            nn.init.normal_(self.weight, std=self.init_std)
            nn.init.zeros_(self.bias)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Affinities s_{i,t} (Eq. 15), computed in fp32 whatever the model dtype.
        x: (N, dim) -> (N, E)."""
        logits = F.linear(x.float(), self.weight.float())
        return logits.sigmoid() if self.score_func == "sigmoid" else logits.softmax(dim=-1)

    def route(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k selection on biased scores, limited to the best groups (Eq. 16).
        Returns (weights, indices)."""
        biased = scores + self.bias
        if self.n_groups > 1:
            grouped = biased.unflatten(-1, (self.n_groups, -1))
            if self.score_func == "sigmoid":
                group_scores = grouped.topk(2, dim=-1).values.sum(dim=-1)
            else:
                group_scores = grouped.amax(dim=-1)
            keep = group_scores.topk(self.topk_groups, dim=-1).indices
            dropped = torch.ones_like(group_scores, dtype=torch.bool).scatter_(1, keep, False)
            biased = grouped.masked_fill(dropped.unsqueeze(-1), float("-inf")).flatten(-2)
        indices = biased.topk(self.topk, dim=-1).indices
        weights = scores.gather(1, indices)  # g'_{i,t}: the *unbiased* affinity
        if self.score_func == "sigmoid":
            weights = weights / weights.sum(dim=-1, keepdim=True)  # Eq. 13
        return (weights * self.route_scale if self.route_scale != 1 else weights), indices

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: (N, dim) -> (weights (N, K) in fp32, indices (N, K), scores (N, E) in fp32)."""
        scores = self.scores(x)
        weights, indices = self.route(scores)
        return weights, indices, scores


def permute(x: torch.Tensor, indices: torch.Tensor,
            n_experts: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Copy each token once per selected expert and sort the copies by expert.

    x: (N, dim), indices: (N, K). Returns (x_sorted (N*K, dim), order (N*K,), counts (n_experts,)):
    sorted row j is slot ``order[j]`` of the flattened (N, K) routing table, i.e. token
    ``order[j] // K``, and expert e owns rows ``counts[:e].sum() : counts[:e+1].sum()``.
    """
    flat = indices.flatten()
    order = flat.argsort(stable=True)
    # a scatter rather than ``bincount``, whose output size is read on the host (a sync on a GPU)
    counts = flat.new_zeros(n_experts).scatter_add_(0, flat, torch.ones_like(flat))
    return x.index_select(0, order // indices.shape[1]), order, counts


def unpermute(y_sorted: torch.Tensor, order: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Inverse of ``permute`` fused with the gate-weighted sum over each token's K experts.
    -> (N, dim)."""
    N, K = weights.shape
    w_sorted = weights.flatten().index_select(0, order).to(y_sorted.dtype)
    out = y_sorted.new_zeros(N, y_sorted.shape[-1])
    return out.index_add_(0, order // K, y_sorted * w_sorted.unsqueeze(-1))


class RoutedExperts(nn.ModuleList):
    """The N_r routed experts FFN^(r)_i, run on tokens already sorted by expert (``permute``).

    A list, so the parameters are named ``experts.{i}.w1.weight`` etc. by global expert index, as in
    the official checkpoints.
    """

    # "loop" (below), "grouped" (every expert in two grouped GEMMs, no host sync) or "auto":
    # grouped where torch has the kernel for this device and dtype (``minir1.model.grouped``)
    impl = "auto"

    def forward(self, x_sorted: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Run expert e on rows ``counts[:e].sum() : counts[:e+1].sum()`` of ``x_sorted``.

        An expert that got no tokens is skipped, so its parameters get no gradient and the
        optimiser leaves them alone this step (AdamW would still decay a zero gradient's moments
        and weights). Under expert parallelism every local expert runs, even on zero rows (see
        ``minir1.dist.expert_parallel``); the grouped GEMMs give an idle expert zeros, which the
        trainer drops (``minir1.model.grouped.drop_idle_gradients``).
        """
        if use_grouped(self.impl, self, x_sorted):  # the same sums, without the host sync
            return grouped_experts(self, x_sorted, counts)
        chunks = x_sorted.split(counts.tolist())
        return torch.cat([expert(c) if c.shape[0] else c
                          for expert, c in zip(self, chunks, strict=True)])

    def forward_with(self, x_sorted: torch.Tensor, counts: torch.Tensor,
                     also: Callable[[], torch.Tensor | None],
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``forward``, and ``also()`` (the shared experts) computed beside it: here one after
        the other; under expert parallelism while the combine all-to-all is in flight."""
        return self(x_sorted, counts), also()


class MoE(nn.Module):
    """Routed experts (with the gate) plus always-active shared experts."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_routed_experts = cfg.n_routed_experts
        self.topk = cfg.n_activated_experts
        self.gate = Gate(cfg)
        self.experts = RoutedExperts(MLP(cfg.dim, cfg.moe_inter_dim)
                                     for _ in range(cfg.n_routed_experts))
        self.shared_experts = (MLP(cfg.dim, cfg.n_shared_experts * cfg.moe_inter_dim)
                               if cfg.n_shared_experts else None)
        # tokens routed to each expert since the last bias update (a whole optimizer step,
        # micro-batches included)
        self.register_buffer("load", torch.zeros(cfg.n_routed_experts), persistent=False)

    def forward(self, x: torch.Tensor,
                balance_alpha: float = 0.0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Eq. 12 without the residual u_t (the block adds it): x (B, T, dim) ->
        (output (B, T, dim), sequence-wise balance loss (Eq. 17) or None when alpha is 0)."""
        B, T, dim = x.shape
        u = x.reshape(-1, dim)
        weights, indices, scores = self.gate(u)  # g_{i,t} of the K_r chosen experts (Eqs. 13-16)
        if self.dense_decode(u.shape[0]):  # the same sum for a decoding step (shortcut, below)
            out = self.all_experts(u, weights, indices)
        else:
            out = self.dispatch(u, weights, indices)
        aux = None
        if balance_alpha > 0:
            aux = balance_alpha * sequence_balance(scores.view(B, T, -1), indices.view(B, T, -1))
        return out.view(B, T, dim), aux

    def dispatch(self, u: torch.Tensor, weights: torch.Tensor,
                 indices: torch.Tensor) -> torch.Tensor:
        """sum_i FFN^(s)_i(u_t) + sum_i g_{i,t} FFN^(r)_i(u_t) (Eq. 12): permute the token copies by
        expert, run each expert once on its slice, unpermute with the gate weights. u: (N, dim)."""
        x_sorted, order, counts = permute(u, indices, self.n_routed_experts)
        if self.training:  # what the aux-loss-free bias update balances (``update_bias``)
            self.load += counts.to(self.load.dtype)
        shared = self.shared_experts
        routed, common = self.experts.forward_with(
            x_sorted, counts, lambda: shared(u) if shared is not None else None)
        out = unpermute(routed, order, weights)
        return out + common if common is not None else out

    @torch.no_grad()
    def update_bias(self, speed: float) -> torch.Tensor:
        """Aux-loss-free balancing: b_i += speed * sign(mean load - load_i); resets the load.
        Returns the load."""
        load = self.load.clone()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(load)  # the whole global batch decides, as in V3
        self.gate.bias += speed * torch.sign(load.mean() - load)
        self.load.zero_()
        return load

    # ------------------------------------------------------------ inference shortcut: every expert
    # Not in the paper: for a handful of tokens through small experts (a decoding step on a CPU),
    # running every expert on every token with the unchosen ones weighted 0 gives the same sum as
    # ``dispatch`` in two matmuls instead of a call per expert.

    def dense_decode(self, n_tokens: int) -> bool:
        """Whether ``all_experts`` is the cheaper way to run these tokens: inference only, a handful
        of tokens, experts small enough that reading all of them costs less than dispatching to a
        few (a decode step of a small model on a CPU, where each expert call costs far more in
        overhead than in arithmetic)."""
        return (not self.training and n_tokens <= DENSE_DECODE_MAX_TOKENS and self._stackable
                and self.experts[0].w1.weight.nbytes * len(self.experts) * 3
                <= DENSE_DECODE_MAX_BYTES)

    @property
    def _stackable(self) -> bool:
        # not FP8
        return all(type(m) is nn.Linear for m in (self.experts[0].w1, self.experts[0].w2))

    def stacked_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every expert's SwiGLU weights side by side, the shared experts last as N_s more experts
        of width moe_inter_dim: (W_in (n * 2 * inter, dim) with [w1_e; w3_e] per expert,
        W_out (dim, n * inter)); cached while sampling (``derived_weight``)."""
        return derived_weight(self, "stacked", self._stack, lambda: [
            w for m in self._mlps() for w in (m.w1.weight, m.w3.weight, m.w2.weight)])

    def _mlps(self) -> list[MLP]:
        return (list(self.experts)
                + ([self.shared_experts] if self.shared_experts is not None else []))

    def _stack(self) -> tuple[torch.Tensor, torch.Tensor]:
        # a shared MLP of width N_s * inter is N_s experts
        inter = self.experts[0].w1.weight.shape[0]
        w_in = torch.cat([torch.stack([m.w1.weight.view(-1, inter, m.w1.weight.shape[1]),
                                       m.w3.weight.view(-1, inter, m.w3.weight.shape[1])], dim=1)
                          for m in self._mlps()])  # (n, 2, inter, dim)
        return w_in.flatten(0, 2), torch.cat([m.w2.weight for m in self._mlps()], dim=1)

    def all_experts(self, x: torch.Tensor, weights: torch.Tensor,
                    indices: torch.Tensor) -> torch.Tensor:
        """Eq. 12 computed densely: every expert runs on every token, and the K_r chosen ones are
        weighted by g_{i,t} while the rest get weight 0 (shared experts weight 1). The same sum as
        ``dispatch`` (as long as no unchosen expert overflows: inf * 0 is NaN), with one matmul in
        and one out instead of a call per expert. x: (N, dim) -> (N, dim)."""
        w_in, w_out = self.stacked_weights()
        N, E = x.shape[0], self.n_routed_experts
        n = w_out.shape[1] // self.experts[0].w2.weight.shape[1]  # routed + shared experts
        g = torch.ones(N, n, dtype=x.dtype, device=x.device)
        g[:, :E] = 0
        g.scatter_(1, indices, weights.to(x.dtype))
        gate, up = F.linear(x, w_in).view(N, n, 2, -1).unbind(2)
        return F.linear((F.silu(gate) * up * g[..., None]).flatten(1), w_out)


def moe_layers(module: nn.Module) -> list[MoE]:
    """Every MoE in ``module`` (itself included), in module order."""
    return [m for m in module.modules() if isinstance(m, MoE)]


def set_expert_impl(module: nn.Module, impl: str) -> None:
    """Run the routed experts of every MoE in ``module`` as ``impl``: "loop", "grouped" or "auto"
    (``RoutedExperts.impl``)."""
    if impl not in IMPLS:
        raise ValueError(f"set_expert_impl: impl={impl!r} must be one of {IMPLS}")
    for moe in moe_layers(module):
        moe.experts.impl = impl


def sequence_balance(scores: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """sum_i f_i P_i averaged over sequences (Eqs. 18-20); equals 1 under perfectly uniform routing.

    scores: (B, T, N_r) affinities s_{i,t}; indices: (B, T, K_r) the selected experts.
    f_i = N_r / (K_r T) * #tokens of the sequence routed to i;
    P_i = mean_t s_{i,t} / sum_j s_{j,t}.
    """
    B, T, E = scores.shape
    K = indices.shape[-1]
    hits = torch.zeros(B, E, device=scores.device, dtype=scores.dtype)
    hits.scatter_add_(1, indices.reshape(B, T * K),
                      torch.ones(B, T * K, device=scores.device, dtype=scores.dtype))
    f = hits * (E / (K * T))
    P = (scores / scores.sum(dim=-1, keepdim=True)).mean(dim=1)
    return (f * P).sum(dim=-1).mean()


def max_violation(load: torch.Tensor) -> torch.Tensor:
    """MaxVio = (max_i load_i - mean load) / mean load (Wang et al. 2024, Eq. 4);
    0 is perfect balance.

    load: (..., N_r) token counts; reduces over the last dim.
    """
    mean = load.float().mean(dim=-1)
    return (load.float().amax(dim=-1) - mean) / mean.clamp_min(1e-9)
