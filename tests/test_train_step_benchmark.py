"""benchmarks/train_step.py's --breakdown: every op lands in one family, and the table counts the
matrix multiplies' FLOPs from the profiler."""

import re

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import benchmark_module


@pytest.fixture(scope="module")
def bench():
    with benchmark_module("train_step") as module:
        yield module


@pytest.mark.parametrize("op, family", [
    ("aten::mm", "matrix multiplies"), ("aten::bmm", "matrix multiplies"),
    ("aten::_scaled_dot_product_flash_attention_for_cpu_backward", "attention (SDPA kernels)"),
    ("aten::index_select", "MoE routing and dispatch"), ("aten::topk", "MoE routing and dispatch"),
    ("aten::scatter_add_", "MoE routing and dispatch"), ("aten::cat", "copies and concatenation"),
    ("aten::copy_", "copies and concatenation"), ("aten::_fused_adamw_", "optimizer (fused AdamW)"),
    ("aten::_log_softmax_backward_data", "loss (log-softmax, NLL)"),
    ("aten::silu_backward", "elementwise and reductions"),
    ("aten::mul", "elementwise and reductions"),
    ("aten::view", "other"), ("aten::as_strided", "other"),
])
def test_each_op_lands_in_its_family(bench, op, family):
    assert bench.family(op) == family


def test_the_breakdown_counts_the_matmul_flops(bench, capsys):
    torch.manual_seed(0)
    w = torch.randn(64, 64, requires_grad=True)
    x = torch.randn(128, 64)

    def step():
        loss = F.silu(x @ w).sum()
        loss.backward()
        w.grad = None

    bench.breakdown(step, peak=100.0, floor_ms=1.0, n=2)
    out = capsys.readouterr().out
    assert "matrix multiplies" in out and "elementwise and reductions" in out
    # forward x @ w and the weight's gradient: 2 matmuls of 2 * 128 * 64 * 64 FLOPs
    gflop = float(re.search(r"matrix multiplies: ([\d.]+) GFLOP", out).group(1))
    assert gflop == pytest.approx(2 * 2 * 128 * 64 * 64 / 1e9, rel=0.01)
