"""``Fp8Linear``: all three GEMMs of a Linear in FP8, master weights in fp32 (V3 §3.3.1, Fig. 6).

For ``y = x Wᵀ`` with x ``[T, K]`` (tokens x in-features) and W ``[N, K]``:

* **Fprop** ``y = x · Wᵀ``: x in 1x128 tiles (per token, per 128 channels), W in 128x128 blocks.
* **Dgrad** ``dx = dy · W``: dy in 1x128 tiles (per token, per 128 output channels),
  W's blocks transposed.
* **Wgrad** ``dW = dyᵀ · x``: the inner dimension is now the tokens, so both dy and x are quantised
  in 128x1 tiles (128 tokens per scale, per channel), the "transposed use" of V3 §3.3.2. x is cached
  for backward in that FP8 form, as V3 caches activations in FP8.

Every GEMM dequantises per 128-wide inner slice into fp32 (``fp8_gemm``). The weight gradient is
returned in fp32 to the fp32 master weight, so the optimiser never sees FP8.

``convert_to_fp8(model, recipe)`` swaps the Linears that V3 runs in FP8 and keeps in high precision
what the paper keeps there (§3.3.1): the embedding, the output head, the MoE gate, the norms and the
attention core (softmax(QKᵀ)V is not a Linear at all).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from minir1.fp8.gemm import fp8_gemm
from minir1.fp8.quant import Block, quantize
from minir1.utils import resolve


@dataclass(frozen=True)
class Fp8Recipe:
    name: str
    act_block: Block  # x in Fprop and dy in Dgrad (the inner dimension is the channels)
    weight_block: Block  # W in Fprop and (transposed) in Dgrad
    wgrad_block: Block  # x and dy in Wgrad, in their [T, C] layout: (128, 1) = 128 tokens per scale
    fwd_fmt: str = "e4m3"
    bwd_fmt: str = "e4m3"
    pow2_scale: bool = False
    # fp8_gemm's: "dequant" (fp32 matmul of FP8 values) or "scaled_mm" (torch._scaled_mm)
    backend: str = "dequant"


FP8_RECIPES = {
    # DeepSeek-V3: fine-grained tiles and blocks, E4M3 on every tensor
    "deepseek": Fp8Recipe("deepseek", act_block=(1, 128), weight_block=(128, 128),
                          wgrad_block=(128, 1)),
    # the older practice: one scale per tensor,
    # E4M3 forward and E5M2 (more range, less precision) backward
    "tensorwise": Fp8Recipe("tensorwise", act_block=None, weight_block=None, wgrad_block=None,
                            bwd_fmt="e5m2"),
}


def get_recipe(recipe: str | Fp8Recipe) -> Fp8Recipe:
    return resolve(recipe, FP8_RECIPES, "recipe", also=" or 'off'")


def _t(s: torch.Tensor) -> torch.Tensor:
    return s if s.dim() == 0 else s.T


class _Fp8LinearFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor,  # type: ignore[override]
                r: Fp8Recipe) -> torch.Tensor:
        qx, sx = quantize(x, r.fwd_fmt, r.act_block, r.pow2_scale)
        qw, sw = quantize(weight, r.fwd_fmt, r.weight_block, r.pow2_scale)
        y = fp8_gemm(qx, sx, qw, sw, backend=r.backend)
        qx_t, sx_t = quantize(x, r.fwd_fmt, r.wgrad_block, r.pow2_scale)  # cached for Wgrad, in FP8
        ctx.save_for_backward(qx_t, sx_t, qw, sw)
        ctx.recipe, ctx.x_dtype = r, x.dtype
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx, dy: torch.Tensor,  # type: ignore[override]
                 ) -> tuple[torch.Tensor, torch.Tensor, None]:
        qx_t, sx_t, qw, sw = ctx.saved_tensors
        r: Fp8Recipe = ctx.recipe
        dy = dy.contiguous()
        # Dgrad: dx [T, K] = dy [T, N] . (W^T [K, N])^T; W's 128x128 block scales transpose with it
        qdy, sdy = quantize(dy, r.bwd_fmt, r.act_block, r.pow2_scale)
        dx = fp8_gemm(qdy, sdy, qw.T, _t(sw), backend=r.backend)
        # Wgrad: dW [N, K] = dy^T [N, T] . (x^T [K, T])^T, both scaled per 128 tokens
        qdy_t, sdy_t = quantize(dy, r.bwd_fmt, r.wgrad_block, r.pow2_scale)
        dw = fp8_gemm(qdy_t.T, _t(sdy_t), qx_t.T, _t(sx_t), backend=r.backend)
        return dx.to(ctx.x_dtype), dw, None


class Fp8Linear(nn.Linear):
    """An ``nn.Linear`` (no bias) whose forward and backward GEMMs run on FP8-quantised operands.

    The parameter stays an fp32 ``weight`` under the same name, so state dicts, optimisers and
    checkpoints do not change.
    """

    def __init__(self, in_features: int, out_features: int, recipe: str | Fp8Recipe = "deepseek",
                 device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__(in_features, out_features, bias=False, device=device, dtype=dtype)
        self.recipe = get_recipe(recipe)

    @classmethod
    def from_linear(cls, linear: nn.Linear, recipe: str | Fp8Recipe = "deepseek") -> Fp8Linear:
        if linear.bias is not None:
            raise ValueError("Fp8Linear: Linears with a bias are not used in DeepSeek-V3 "
                             "and not supported")
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        new.in_features, new.out_features = linear.in_features, linear.out_features
        new.weight = linear.weight  # the same Parameter: the optimiser and state dict are unchanged
        new.register_parameter("bias", None)
        new.recipe = get_recipe(recipe)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        return (_Fp8LinearFunction.apply(flat, self.weight, self.recipe)
                .view(*x.shape[:-1], self.out_features))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, recipe={self.recipe.name}"


KEEP_HIGH_PRECISION = ("head",)  # the output head; the embedding, gate and norms are not nn.Linear


def convert_to_fp8(model: nn.Module, recipe: str | Fp8Recipe = "deepseek") -> nn.Module:
    """Swap every FP8-eligible ``nn.Linear`` of ``model`` for an ``Fp8Linear``
    (in place; returns ``model``).

    ``recipe="off"`` leaves the model as it is. Kept in high precision: the output head (by
    name), and, since they are not Linears, the embedding, the MoE gate (fp32 routing), the norms
    and the attention core.
    """
    if recipe == "off":
        return model
    r = get_recipe(recipe)
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if type(child) is nn.Linear and child_name not in KEEP_HIGH_PRECISION:
                setattr(module, child_name, Fp8Linear.from_linear(child, r))
            elif isinstance(child, Fp8Linear):
                child.recipe = r
    return model


__all__ = ["FP8_RECIPES", "KEEP_HIGH_PRECISION", "Fp8Linear", "Fp8Recipe", "convert_to_fp8",
           "get_recipe"]
