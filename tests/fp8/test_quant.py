"""Fine-grained scaling: scale shapes and values, error bounds, outliers, NaN, bad arguments."""

import pytest
import torch

from minir1.fp8 import E4M3, dequantize, quantize
from minir1.fp8.quant import AMAX_FLOOR, compute_scale


@pytest.mark.parametrize("shape, block, scale_shape", [
    ((4, 256), (1, 128), (4, 2)),
    ((4, 300), (1, 128), (4, 3)),  # partial last tile
    ((2, 5, 256), (1, 128), (2, 5, 2)),  # leading dims kept, like act_quant's [..., K/128]
    ((300, 200), (128, 128), (3, 2)),
    ((300, 200), (128, 1), (3, 200)),
    ((300,), (1, 128), (3,)),
    ((300, 200), None, ()),
])
def test_scale_shapes_and_values(shape, block, scale_shape):
    torch.manual_seed(0)
    x = torch.randn(shape)
    q, scale = quantize(x, "e4m3", block)
    assert q.dtype == torch.float8_e4m3fn and q.shape == x.shape and scale.dtype == torch.float32
    assert tuple(scale.shape) == scale_shape
    # every scale maps its block's amax exactly onto 448
    x2 = x.reshape(1, -1) if x.dim() == 1 else x
    if block is None:
        torch.testing.assert_close(scale, x.abs().max() / 448)
    else:
        br, bc = block
        s2 = (scale.reshape(*x2.shape[:-2], *scale.shape[-2:]) if x.dim() > 1
              else scale.reshape(1, -1))
        for i in range(s2.shape[-2]):
            for j in range(s2.shape[-1]):
                tile = x2[..., i * br:(i + 1) * br, j * bc:(j + 1) * bc]
                torch.testing.assert_close(s2[..., i, j], tile.abs().amax(dim=(-2, -1)) / 448)
    assert (q.float().abs().amax() <= 448) and (q.float().abs().amax() == 448)


def test_dequantize_error_is_bounded_by_half_an_ulp():
    torch.manual_seed(0)
    x = torch.randn(64, 384) * torch.logspace(-3, 3, 384)  # columns of very different magnitude
    q, scale = quantize(x, "e4m3", (1, 128))
    err = (dequantize(q, scale, (1, 128)) - x).abs()
    # 3 mantissa bits
    bound = x.abs() * 2**-4 + E4M3.min_subnormal * scale.repeat_interleave(128, -1) / 2
    assert (err <= bound + 1e-12).all()


def test_fine_grained_scaling_survives_an_outlier():
    torch.manual_seed(0)
    x = torch.randn(128, 1024)
    x[3, 5] = 1e5  # one activation outlier, ~2e4 times the typical magnitude
    rest = torch.ones_like(x, dtype=torch.bool)
    rest[3, 5] = False

    def error_and_flushed(block):
        y = dequantize(*quantize(x, block=block), block=block)
        return (((y - x)[rest].norm() / x[rest].norm()).item(),
                ((y == 0) & (x != 0))[rest].float().mean().item())

    tile_err, tile_flushed = error_and_flushed((1, 128))
    tensor_err, tensor_flushed = error_and_flushed(None)
    # 1x128 tiles: only the outlier's own tile shares its scale; every other value keeps E4M3's 3
    # mantissa bits
    assert tile_err < 0.03 and tile_flushed < 128 / x.numel()  # at most the outlier's own tile
    # per tensor: the outlier sets the scale, the other values fall into the coarse subnormals or
    # to zero
    assert tensor_err > 3 * tile_err and tensor_flushed > 0.1


def test_pow2_scales_are_powers_of_two_and_never_overflow():
    torch.manual_seed(0)
    x = torch.randn(8, 512) * 37
    q, scale = quantize(x, block=(1, 128), pow2_scale=True)
    assert torch.equal(scale, torch.exp2(torch.log2(scale).round()))
    assert (scale >= compute_scale(x, block=(1, 128))).all()
    assert q.float().abs().max() <= 448 and torch.isfinite(q.float()).all()


def test_nan_and_inf_propagate_to_their_block_only():
    x = torch.ones(3, 256)
    x[0, 0], x[1, 200] = float("nan"), float("inf")
    for fmt in ("e4m3", "e5m2"):
        y = dequantize(*quantize(x, fmt))
        assert torch.isnan(y[0, :128]).all() and torch.isnan(y[1, 128:]).all()  # the poisoned tiles
        torch.testing.assert_close(y[0, 128:], x[0, 128:])
        torch.testing.assert_close(y[1, :128], x[1, :128])
        torch.testing.assert_close(y[2], x[2])


def test_zero_block_gets_the_floor_scale():
    q, scale = quantize(torch.zeros(1, 128))
    assert scale.item() == pytest.approx(AMAX_FLOOR / 448) and (q.float() == 0).all()


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="fmt="):
        quantize(torch.ones(4), "e3m4")
    with pytest.raises(ValueError, match="block="):
        quantize(torch.ones(4, 4), block=(0, 128))
