"""FP8 GEMMs equal dequantise-then-matmul, on both backends."""

import pytest
import torch

from minir1.fp8 import dequantize, quantize
from tests.fp8.conftest import needs_scaled_mm


def _reference_gemm(a, b, a_block, b_block):
    """Dequantise both operands completely, then one fp64 matmul: what fp8_gemm must equal."""
    qa, sa = quantize(a, "e4m3", a_block)
    qb, sb = quantize(b, "e4m3", b_block)
    return (dequantize(qa, sa, a_block).double() @ dequantize(qb, sb, b_block).double().T).float()


@pytest.mark.parametrize("a_block, b_block",
                         [((1, 128), (128, 128)), ((1, 128), (1, 128)), (None, None)])
@pytest.mark.parametrize("M, N, K", [(64, 96, 256), (37, 200, 300)])  # partial tiles and blocks too
def test_fp8_matmul_equals_dequantise_then_matmul(a_block, b_block, M, N, K):
    from minir1.fp8 import fp8_matmul

    torch.manual_seed(0)
    a, b = torch.randn(M, K), torch.randn(N, K)
    torch.testing.assert_close(fp8_matmul(a, b, a_block=a_block, b_block=b_block),
                               _reference_gemm(a, b, a_block, b_block), rtol=1e-5, atol=1e-4)


@needs_scaled_mm
@pytest.mark.parametrize("a_block, b_block",
                         [((1, 128), (128, 128)), ((1, 128), (1, 128)), (None, None)])
def test_scaled_mm_backend_computes_the_same_numbers(a_block, b_block):
    """torch._scaled_mm with row-wise scales per K slice = the dequantising reference (CPU kernel
    here; the same call runs on FP8 tensor cores)."""
    from minir1.fp8 import fp8_matmul

    torch.manual_seed(0)
    a, b = torch.randn(37, 300), torch.randn(200, 300)
    torch.testing.assert_close(fp8_matmul(a, b, a_block=a_block, b_block=b_block,
                                          backend="scaled_mm"),
                               _reference_gemm(a, b, a_block, b_block), rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="backend"):
        fp8_matmul(a, b, backend="cublas")


@needs_scaled_mm
def test_scaled_mm_padding_to_multiples_of_16_changes_nothing():
    from minir1.fp8.gemm import _scaled_mm_slice

    torch.manual_seed(0)
    qa = torch.randn(37, 100).to(torch.float8_e4m3fn)
    qb = torch.randn(21, 100).to(torch.float8_e4m3fn)
    sa, sb = torch.rand(37) + 0.5, torch.rand(21) + 0.5
    plain = _scaled_mm_slice(qa, qb, sa, sb, multiple=1)
    padded = _scaled_mm_slice(qa, qb, sa, sb, multiple=16)  # what runs on CUDA
    assert padded.shape == (37, 21)
    torch.testing.assert_close(padded, plain, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(plain, (qa.float() @ qb.float().T) * sa[:, None] * sb,
                               rtol=1e-5, atol=1e-4)


def test_fp8_gemm_rejects_mismatched_scales():
    from minir1.fp8 import fp8_gemm

    qa, sa = quantize(torch.randn(4, 256))
    qb, sb = quantize(torch.randn(8, 256), block=(128, 128))
    with pytest.raises(ValueError, match="share K"):
        fp8_gemm(qa, sa, qb[:, :128], sb)
    with pytest.raises(ValueError, match="sb"):
        fp8_gemm(qa, sa, qb, sb[:, :1])


def test_blockwise_backend_takes_tile_and_block_scales_and_names_what_it_needs():
    from minir1.fp8 import fp8_matmul
    from minir1.fp8.gemm import scaled_mm_available

    a, b = torch.randn(256, 512), torch.randn(384, 512)
    with pytest.raises(ValueError, match="1x128 tile scales for A"):
        fp8_matmul(a, b, b_block=(1, 128), backend="blockwise")
    if scaled_mm_available():  # PyTorch's CPU kernel has row-wise scales, not block scales
        with pytest.raises(RuntimeError, match=r"SM90 GPU with cuBLAS >= 12\.9"):
            fp8_matmul(a, b, backend="blockwise")


@needs_scaled_mm
def test_speed_comparison_reports_every_backend_and_its_distance_from_the_simulation():
    from minir1.fp8.speed import compare_with_bf16

    r = compare_with_bf16(256, "cpu", repeats=2)
    assert r["bf16"]["ms"] > 0 and r["n"] == 256
    assert set(r["backends"]) == {"scaled_mm", "blockwise"}
    assert r["backends"]["scaled_mm"]["rel_err"] < 1e-5  # the CPU kernel: the simulation's numbers
    assert r["backends"]["scaled_mm"]["speedup"] > 0
    assert "error" in r["backends"]["blockwise"]


# ------------------------------------------------------------------- on FP8 tensor cores (CUDA)
def _hopper() -> bool:
    return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 9


@pytest.mark.gpu
@pytest.mark.parametrize("backend, tol", [("scaled_mm", 1e-3), ("blockwise", 1e-2)])
def test_fp8_tensor_cores_match_the_simulation_on_the_same_operands(backend, tol):
    """V3 §3.3.2 on real hardware: the FP8 products with 1x128/128x128 scales and promotion per
    128-wide K slice, within ``tol`` (Frobenius, relative) of the dequantising simulation."""
    if not _hopper():
        pytest.skip("FP8 tensor cores with row-wise/block scales need SM90+")
    from minir1.fp8 import fp8_gemm

    torch.manual_seed(0)
    a, b = torch.randn(512, 1024, device="cuda"), torch.randn(768, 1024, device="cuda")
    qa, sa = quantize(a, "e4m3", (1, 128))
    qb, sb = quantize(b, "e4m3", (128, 128))
    simulated = fp8_gemm(qa, sa, qb, sb, backend="dequant")
    hardware = fp8_gemm(qa, sa, qb, sb, backend=backend)
    assert hardware.is_cuda
    rel = ((hardware - simulated).norm() / simulated.norm()).item()
    assert rel < tol
    cpu = fp8_gemm(qa.cpu(), sa.cpu(), qb.cpu(), sb.cpu(), backend="dequant")
    torch.testing.assert_close(simulated.cpu(), cpu, rtol=1e-4, atol=1e-3)
