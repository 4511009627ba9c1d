"""FP8 formats and fine-grained scaling, against torch's float8 casts and exact formulas."""

import numpy as np
import pytest
import torch

from minir1.fp8 import E4M3, E5M2, all_values, decode, dequantize, encode, quantize, round_to_format
from minir1.fp8.quant import AMAX_FLOOR, compute_scale

FMTS = [E4M3, E5M2]


def torch_codes(x: np.ndarray, fmt) -> np.ndarray:
    return torch.from_numpy(x).to(fmt.dtype).view(torch.uint8).numpy()


@pytest.mark.parametrize("fmt", FMTS, ids=lambda f: f.name)
def test_every_float16_value_encodes_like_torch(fmt):
    x = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)  # incl. inf, NaN, subnormals
    np.testing.assert_array_equal(encode(x, fmt), torch_codes(x, fmt))


@pytest.mark.parametrize("fmt", FMTS, ids=lambda f: f.name)
def test_a_million_random_float32_encode_like_torch(fmt):
    rng = np.random.default_rng(0)
    every_pattern = rng.integers(0, 1 << 32, 500_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    log_uniform = (rng.standard_normal(500_000) * np.exp(rng.uniform(-30, 30, 500_000))).astype(np.float32)
    x = np.concatenate([every_pattern, log_uniform])  # out-of-range, NaN and inf included
    np.testing.assert_array_equal(encode(x, fmt), torch_codes(x, fmt))


def test_format_constants():
    assert (E4M3.max, E4M3.min_normal, E4M3.min_subnormal) == (448.0, 2**-6, 2**-9)
    assert (E5M2.max, E5M2.min_normal, E5M2.min_subnormal) == (57344.0, 2**-14, 2**-16)
    assert all_values(E4M3)[-1] == 448 and len(all_values(E4M3)) == 127  # 0x00..0x7E
    assert all_values(E5M2)[-1] == 57344 and len(all_values(E5M2)) == 124  # exponents 0..30


def test_rounding_ties_to_even_and_subnormals():
    # 1 + 1/16 lies halfway between 1 and 1.125 (E4M3): ties go to the even mantissa, 1
    assert round_to_format(np.float32([1 + 1 / 16, 1 + 3 / 16]), E4M3).tolist() == [1.0, 1.25]
    # half the smallest subnormal rounds to zero (even); a little more rounds up
    tiny = E4M3.min_subnormal
    assert round_to_format(np.float32([tiny / 2, tiny * 0.51, tiny * 1.5]), E4M3).tolist() == [0, tiny, 2 * tiny]


def test_overflow_policies():
    big = np.float32([464, 480, 1e6, np.inf, -np.inf])
    assert round_to_format(big, E4M3).tolist() == [448, 448, 448, 448, -448]  # saturates
    assert round_to_format(np.float32([57344, 61439, 61440, np.inf]), E5M2).tolist() == [
        57344, 57344, np.inf, np.inf]  # overflows to infinity past the rounding midpoint
    assert np.isnan(round_to_format(np.float32([np.nan]), E4M3)).all()
    assert decode(np.uint8([0x7F, 0xFF]), E4M3).tolist() != decode(np.uint8([0x7F, 0xFF]), E4M3).tolist()  # NaN


def test_decode_is_the_inverse_on_every_code():
    for fmt in FMTS:
        codes = np.arange(256, dtype=np.uint8)
        values = decode(codes, fmt)
        finite = np.isfinite(values)
        ref = torch.from_numpy(codes).view(fmt.dtype).float().numpy()
        np.testing.assert_array_equal(values[finite], ref[finite])
        np.testing.assert_array_equal(np.isnan(values), np.isnan(ref))
        roundtrip = encode(values[finite], fmt)
        np.testing.assert_array_equal(decode(roundtrip, fmt), values[finite])


# ------------------------------------------------------------------------------------------------ scaling
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
        s2 = scale.reshape(*x2.shape[:-2], *scale.shape[-2:]) if x.dim() > 1 else scale.reshape(1, -1)
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
    bound = x.abs() * 2**-4 + E4M3.min_subnormal * scale.repeat_interleave(128, -1) / 2  # 3 mantissa bits
    assert (err <= bound + 1e-12).all()


def test_fine_grained_scaling_survives_an_outlier():
    torch.manual_seed(0)
    x = torch.randn(128, 1024)
    x[3, 5] = 1e5  # one activation outlier, ~2e4 times the typical magnitude
    rest = torch.ones_like(x, dtype=torch.bool)
    rest[3, 5] = False

    def error_and_flushed(block):
        y = dequantize(*quantize(x, block=block), block=block)
        return ((y - x)[rest].norm() / x[rest].norm()).item(), ((y == 0) & (x != 0))[rest].float().mean().item()

    tile_err, tile_flushed = error_and_flushed((1, 128))
    tensor_err, tensor_flushed = error_and_flushed(None)
    # 1x128 tiles: only the outlier's own tile shares its scale; every other value keeps E4M3's 3 mantissa bits
    assert tile_err < 0.03 and tile_flushed < 128 / x.numel()  # at most the outlier's own tile
    # per tensor: the outlier sets the scale, the other values fall into the coarse subnormals or to zero
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


# ------------------------------------------------------------------------------------------------ GEMM
def _reference_gemm(a, b, a_block, b_block):
    """Dequantise both operands completely, then one fp64 matmul: what fp8_gemm must equal."""
    qa, sa = quantize(a, "e4m3", a_block)
    qb, sb = quantize(b, "e4m3", b_block)
    return (dequantize(qa, sa, a_block).double() @ dequantize(qb, sb, b_block).double().T).float()


@pytest.mark.parametrize("a_block, b_block", [((1, 128), (128, 128)), ((1, 128), (1, 128)), (None, None)])
@pytest.mark.parametrize("M, N, K", [(64, 96, 256), (37, 200, 300)])  # partial tiles and blocks too
def test_fp8_matmul_equals_dequantise_then_matmul(a_block, b_block, M, N, K):
    from minir1.fp8 import fp8_matmul

    torch.manual_seed(0)
    a, b = torch.randn(M, K), torch.randn(N, K)
    torch.testing.assert_close(fp8_matmul(a, b, a_block=a_block, b_block=b_block),
                               _reference_gemm(a, b, a_block, b_block), rtol=1e-5, atol=1e-4)


def _has_scaled_mm():
    from minir1.fp8.gemm import scaled_mm_available

    return scaled_mm_available()


needs_scaled_mm = pytest.mark.skipif(not _has_scaled_mm(), reason="torch._scaled_mm has no CPU kernel here")


@needs_scaled_mm
@pytest.mark.parametrize("a_block, b_block", [((1, 128), (128, 128)), ((1, 128), (1, 128)), (None, None)])
def test_scaled_mm_backend_computes_the_same_numbers(a_block, b_block):
    """torch._scaled_mm with row-wise scales per K slice = the dequantising reference (CPU kernel here; the same
    call runs on FP8 tensor cores)."""
    from minir1.fp8 import fp8_matmul

    torch.manual_seed(0)
    a, b = torch.randn(37, 300), torch.randn(200, 300)
    torch.testing.assert_close(fp8_matmul(a, b, a_block=a_block, b_block=b_block, backend="scaled_mm"),
                               _reference_gemm(a, b, a_block, b_block), rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="backend"):
        fp8_matmul(a, b, backend="cublas")


@needs_scaled_mm
def test_scaled_mm_padding_to_multiples_of_16_changes_nothing():
    from minir1.fp8.gemm import _scaled_mm_slice

    torch.manual_seed(0)
    qa, qb = torch.randn(37, 100).to(torch.float8_e4m3fn), torch.randn(21, 100).to(torch.float8_e4m3fn)
    sa, sb = torch.rand(37) + 0.5, torch.rand(21) + 0.5
    plain = _scaled_mm_slice(qa, qb, sa, sb, multiple=1)
    padded = _scaled_mm_slice(qa, qb, sa, sb, multiple=16)  # what runs on CUDA
    assert padded.shape == (37, 21)
    torch.testing.assert_close(padded, plain, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(plain, (qa.float() @ qb.float().T) * sa[:, None] * sb, rtol=1e-5, atol=1e-4)


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


def test_fp8_gemm_rejects_mismatched_scales():
    from minir1.fp8 import fp8_gemm

    qa, sa = quantize(torch.randn(4, 256))
    qb, sb = quantize(torch.randn(8, 256), block=(128, 128))
    with pytest.raises(ValueError, match="share K"):
        fp8_gemm(qa, sa, qb[:, :128], sb)
    with pytest.raises(ValueError, match="sb"):
        fp8_gemm(qa, sa, qb, sb[:, :1])


# ------------------------------------------------------------------------------------------------ Fp8Linear
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
    assert rel(y, y32) < 0.06 and rel(x.grad, x32.grad) < bound and rel(gw8, lin.weight.grad) < bound
    assert y.dtype == x.dtype and x.grad.shape == x.shape and gw8.dtype == torch.float32


def test_fp8_linear_backward_uses_fp8_operands():
    """Dgrad and Wgrad equal hand-built GEMMs of the quantised operands, with the paper's tile shapes."""
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
    assert kinds["layers.0.attn.wkv_b"] is Fp8Linear and kinds["layers.1.ffn.experts.0.w1"] is Fp8Linear
    assert not any(t is torch.nn.Linear for n, t in kinds.items() if n != "head")
    assert model.state_dict().keys() == before.keys()  # same names: checkpoints and optimisers unchanged
    out = model(tokens, targets=tokens)
    assert 0 < (out.logits - ref).abs().max() < 0.5  # FP8 changes the numbers, a little
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters())  # gradients reach every fp32 master weight
    assert convert_to_fp8(Transformer(ModelConfig.preset("tiny")), "off").head is not None
    with pytest.raises(ValueError, match="recipe="):
        convert_to_fp8(model, "fp4")


# ------------------------------------------------------------------------------------------------ accumulation
def test_accumulation_error_grows_with_k_without_promotion_and_not_with_it():
    from minir1.fp8.accum import tc_matmul

    rng = np.random.default_rng(0)
    errors = {}
    for K in (256, 4096):
        a = rng.standard_normal((16, K)).astype(np.float32)
        b = rng.standard_normal((16, K)).astype(np.float32)
        exact = a.astype(np.float64) @ b.astype(np.float64).T
        for promote in (None, 128):
            c = tc_matmul(a, b, promote_every=promote)
            errors[K, promote] = np.linalg.norm(c - exact) / np.linalg.norm(exact)
    assert errors[4096, None] > 2.5 * errors[256, None]  # grows with K
    assert errors[4096, 128] < 1.5 * errors[256, 128]  # promotion keeps it flat
    assert errors[4096, 128] < errors[4096, None] / 3


def test_accumulation_with_enough_bits_is_exact_fp32():
    from minir1.fp8.accum import tc_matmul

    rng = np.random.default_rng(1)
    a = rng.standard_normal((8, 512)).astype(np.float32)
    b = rng.standard_normal((8, 512)).astype(np.float32)
    exact = a.astype(np.float64) @ b.astype(np.float64).T
    np.testing.assert_allclose(tc_matmul(a, b, acc_bits=52, promote_every=128), exact, rtol=1e-6, atol=1e-5)
    with pytest.raises(ValueError, match="promote_every"):
        tc_matmul(a, b, promote_every=100)


# ------------------------------------------------------------------------------------------------ fidelity
def test_ema_and_relative_gap():
    from minir1.train.fp8_fidelity import ema, relative_gap

    assert ema([1.0, 1.0, 1.0]) == [1.0, 1.0, 1.0]
    assert ema([0.0, 10.0]) == pytest.approx([0.0, 1.0])
    assert relative_gap([1.01] * 5, [1.0] * 5) == pytest.approx(0.01)
    assert relative_gap([2.0, 1.0], [2.0, 1.0], last=2) == 0.0


def test_channel_outlier_injection_scales_the_norm_channels():
    from minir1 import ModelConfig, Transformer
    from minir1.train.fp8_fidelity import inject_channel_outliers

    torch.manual_seed(0)
    model = Transformer(ModelConfig.preset("tiny"))
    before = model.layers[0].attn_norm.weight.clone()
    inject_channel_outliers(model, 1000.0, channels=(3,))
    after = model.layers[0].attn_norm.weight
    assert after[3] == 1000.0 * before[3] and torch.equal(after[4:], before[4:])


def test_token_outlier_injection_scales_every_nth_position_and_is_removable():
    from minir1 import ModelConfig, Transformer
    from minir1.train.fp8_fidelity import inject_token_outliers

    torch.manual_seed(0)
    model = Transformer(ModelConfig.preset("tiny"))
    x = torch.randn(2, 70, model.cfg.dim)
    norm = model.layers[0].ffn_norm
    plain = norm(x)
    handles = inject_token_outliers(model, 100.0, every=32)
    assert len(handles) == 2 * len(model.layers)
    hooked = norm(x)
    scaled = torch.zeros(70, dtype=torch.bool)
    scaled[[0, 32, 64]] = True
    torch.testing.assert_close(hooked[:, scaled], 100.0 * plain[:, scaled])
    assert torch.equal(hooked[:, ~scaled], plain[:, ~scaled])
    for h in handles:
        h.remove()
    assert torch.equal(norm(x), plain)
    with pytest.raises(ValueError, match="every"):
        inject_token_outliers(model, 10.0, every=0)


def test_perturb_weights_is_small_seeded_and_leaves_global_rng_alone():
    from minir1 import ModelConfig, Transformer
    from minir1.train.fp8_fidelity import perturb_weights

    torch.manual_seed(0)
    a, b = Transformer(ModelConfig.preset("tiny")), Transformer(ModelConfig.preset("tiny"))
    b.load_state_dict(a.state_dict())
    state = torch.get_rng_state()
    perturb_weights(a, 1e-3, seed=1)
    assert torch.equal(state, torch.get_rng_state())
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        rel = ((pa - pb) / pb.abs().clamp_min(1e-12)).abs()
        assert rel.max() < 6e-3, name  # 1e-3 * |N(0,1)|, below 6 sigma
    assert any(not torch.equal(pa, pb) for pa, pb in zip(a.parameters(), b.parameters(), strict=True))
    c, d = Transformer(ModelConfig.preset("tiny")), Transformer(ModelConfig.preset("tiny"))
    c.load_state_dict(b.state_dict())
    d.load_state_dict(b.state_dict())
    perturb_weights(c, 1e-3, seed=1)
    perturb_weights(d, 1e-3, seed=2)
    assert all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(), strict=True))  # same seed
    assert not all(torch.equal(pa, pd) for pa, pd in zip(a.parameters(), d.parameters(), strict=True))


def test_fidelity_report_statistics():
    from minir1.train.fp8_fidelity import NOISE_FLOOR, Curve, FidelityReport

    rep = FidelityReport(steps=20, outliers="none", seeds=[0, 1], labels=[NOISE_FLOOR, "deepseek"])
    for s, (noise, fp8) in enumerate([(1.03, 1.01), (0.96, 1.03)]):
        rep.curves["off", s] = Curve("off", [1.0] * 20, 2.0)
        rep.curves[NOISE_FLOOR, s] = Curve("off", [1.0] * 10 + [noise] * 10, 2.0)
        rep.curves["deepseek", s] = Curve("deepseek", [1.0] * 10 + [fp8] * 10, 7.0)
    assert rep.gaps("deepseek", step=10) == [0.0, 0.0]  # identical until step 10
    # read at step 15: the window is the last 15 // 10 = 1 step, where the EMA has seen 5 steps of the offset
    assert rep.gaps("deepseek", step=15)[0] == pytest.approx(0.01 * (1 - 0.9**5))
    with pytest.raises(ValueError, match="step"):
        rep.gaps("deepseek", step=21)
    d = rep.gaps("deepseek")
    # EMA(0.9) of a step of 0.01 at step 10, averaged over the last 2 of 20 steps
    assert d[0] == pytest.approx(0.01 * (2 - 0.9**9 - 0.9**10) / 2) and d[1] == pytest.approx(3 * d[0])
    assert rep.mean("deepseek") == pytest.approx(sum(d) / 2)
    assert rep.stderr("deepseek") == pytest.approx(abs(d[1] - d[0]) / 2)
    n = rep.gaps(NOISE_FLOOR)
    assert rep.noise_floor() == pytest.approx(((n[0] ** 2 + n[1] ** 2) / 2) ** 0.5) and n[1] < 0 < n[0]
    assert rep.slowdown("deepseek") == pytest.approx(3.5)


def test_loss_curve_is_deterministic_and_rejects_unknown_outliers():
    from minir1.train.fp8_fidelity import loss_curve

    a, b = loss_curve("off", 3, batch_size=2, seq_len=32), loss_curve("off", 3, batch_size=2, seq_len=32)
    assert a.losses == b.losses
    c = loss_curve("off", 3, batch_size=2, seq_len=32, perturb=1e-3)
    assert c.losses[0] != a.losses[0] and abs(c.losses[0] - a.losses[0]) < 1e-2
    with pytest.raises(ValueError, match="outliers"):
        loss_curve("off", 3, outliers="rows")
