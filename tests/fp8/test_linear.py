"""Fp8Linear and convert_to_fp8: forward and backward through FP8 operands."""

import pytest
import torch

from minir1.fp8 import dequantize, quantize
from tests.fp8.conftest import needs_scaled_mm


@needs_scaled_mm
def test_fp8_linear_scaled_mm_recipe_matches_the_dequant_recipe():
    from dataclasses import replace

    from minir1.fp8 import Fp8Linear
    from minir1.fp8.linear import FP8_RECIPES

    for name in ("deepseek", "tensorwise"):  # tensorwise mixes E4M3 and E5M2 operands in backward
        torch.manual_seed(0)
        lin = torch.nn.Linear(256, 128, bias=False)
        x = torch.randn(150, 256, requires_grad=True)
        dy = torch.randn(150, 128)
        grads = []
        for backend in ("dequant", "scaled_mm"):
            x.grad, lin.weight.grad = None, None
            y = Fp8Linear.from_linear(lin, replace(FP8_RECIPES[name], backend=backend))(x)
            y.backward(dy)
            grads.append((y.detach(), x.grad.clone(), lin.weight.grad.clone()))
        for ref, got in zip(grads[0], grads[1], strict=True):
            torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("recipe", ["deepseek", "tensorwise"])
def test_fp8_linear_matches_fp32_within_the_quantisation_error(recipe):
    from minir1.fp8 import Fp8Linear

    torch.manual_seed(0)
    lin = torch.nn.Linear(256, 192, bias=False)
    fp8 = Fp8Linear.from_linear(lin, recipe)
    assert fp8.weight is lin.weight  # the fp32 master weight is shared, not copied
    x = torch.randn(3, 70, 256, requires_grad=True)
    x32 = x.detach().clone().requires_grad_()
    gy = torch.randn(3, 70, 192)
    y = fp8(x)
    (y * gy).sum().backward()
    gw8, lin.weight.grad = lin.weight.grad, None
    y32 = lin(x32)
    (y32 * gy).sum().backward()

    def rel(p, q):
        return ((p - q).norm() / q.norm()).item()

    # E4M3 keeps 3 mantissa bits: each operand is off by <= 2^-4 relative, ~2-4% on a dot product
    bound = 0.06 if recipe == "deepseek" else 0.12  # E5M2 gradients keep only 2 bits
    assert rel(y, y32) < 0.06
    assert rel(x.grad, x32.grad) < bound and rel(gw8, lin.weight.grad) < bound
    assert y.dtype == x.dtype and x.grad.shape == x.shape and gw8.dtype == torch.float32


def test_fp8_linear_backward_uses_fp8_operands():
    """Dgrad and Wgrad equal hand-built GEMMs of the quantised operands, with the paper's tile
    shapes."""
    from minir1.fp8 import Fp8Linear

    torch.manual_seed(1)
    lin = torch.nn.Linear(256, 128, bias=False)
    x = torch.randn(200, 256, requires_grad=True)
    dy = torch.randn(200, 128)
    Fp8Linear.from_linear(lin)(x).backward(dy)
    fq = lambda t, block: dequantize(*quantize(t, "e4m3", block), block).double()
    dx_ref = fq(dy, (1, 128)) @ fq(lin.weight, (128, 128))
    dw_ref = fq(dy, (128, 1)).T @ fq(x.detach(), (128, 1))
    torch.testing.assert_close(x.grad.double(), dx_ref, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(lin.weight.grad.double(), dw_ref, rtol=1e-5, atol=1e-4)


def test_convert_to_fp8_leaves_the_high_precision_modules_alone():
    from minir1 import ModelConfig, Transformer
    from minir1.fp8 import Fp8Linear, convert_to_fp8
    from minir1.model.moe import Gate

    torch.manual_seed(0)
    model = Transformer(ModelConfig.preset("tiny"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tokens = torch.randint(0, 100, (2, 32))
    ref = model(tokens).logits
    convert_to_fp8(model, "deepseek")
    kinds = {name: type(m) for name, m in model.named_modules()}
    assert kinds["head"] is torch.nn.Linear and kinds["embed"] is torch.nn.Embedding
    assert all(t is Gate for n, t in kinds.items() if n.endswith(".gate"))
    assert kinds["layers.0.attn.wkv_b"] is Fp8Linear
    assert kinds["layers.1.ffn.experts.0.w1"] is Fp8Linear
    assert not any(t is torch.nn.Linear for n, t in kinds.items() if n != "head")
    # same names: checkpoints and optimisers unchanged
    assert model.state_dict().keys() == before.keys()
    out = model(tokens, targets=tokens)
    assert 0 < (out.logits - ref).abs().max() < 0.5  # FP8 changes the numbers, a little
    out.loss.backward()
    # gradients reach every fp32 master weight
    assert all(p.grad is not None for p in model.parameters())
    assert convert_to_fp8(Transformer(ModelConfig.preset("tiny")), "off").head is not None
    with pytest.raises(ValueError, match="recipe="):
        convert_to_fp8(model, "fp4")
