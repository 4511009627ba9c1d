import pytest

from minir1.plan import compute
from minir1.plan.hardware import GPUS, H800
from tests.plan.conftest import DENSE_FFN, EXPERT, GATE, MLA, N_H, VOCAB, D


def hand_flops_per_token(seq_len: int) -> float:
    """3 x (2 x active weights + causal attention) for V3 with its MTP module, by hand."""
    moe_active = MLA + 9 * EXPERT + GATE  # 8 routed + 1 shared expert
    main = 3 * (MLA + DENSE_FFN) + 58 * moe_active + VOCAB * D + D  # head and final norm
    mtp = moe_active + 2 * D * D + 3 * D + VOCAB * D  # eh_proj, its norms, the shared head
    attention = 62 * N_H * (192 + 128) * (seq_len + 1)  # n_h (d_qk + d_v) (T+1) per block
    return 3 * (2 * (main + mtp) + attention)


def test_table1_sums_to_the_papers_bill(v3):
    rows = {r["stage"]: r for r in compute.table1(v3)}
    assert [r["gpu_hours"] for r in rows.values()] == [2664e3, 119e3, 5e3, 2788e3]
    assert rows["total"]["usd"] == pytest.approx(5.576e6)  # Table 1: $5.576M at $2/GPU-hour
    assert rows["pre-training"]["usd"] == pytest.approx(5.328e6)
    assert rows["context extension"]["usd"] == pytest.approx(0.238e6)
    assert rows["post-training"]["tokens"] is None  # not published


def test_180k_gpu_hours_per_trillion_is_37_days_and_the_pretraining_row(v3):
    t = compute.per_trillion(v3)
    assert round(t["days"], 1) == 3.7  # 180K / 2048 GPUs / 24 h (V3 §1)
    assert t["tokens_per_gpu_second"] == pytest.approx(1e12 / (180e3 * 3600))
    # the paper is self-consistent: 14.8T tokens x 180K GPU-hours per trillion = 2,664K
    assert compute.V3_TOKENS / 1e12 * compute.GPU_HOURS_PER_TRILLION == pytest.approx(2664e3)


def test_implied_mfu_matches_the_hand_calculation(v3):
    flops = 14.8e12 * hand_flops_per_token(4096)
    mfu = flops / (2664e3 * 3600 * 989.4e12)
    row = compute.table1(v3)[0]
    assert row["flops"] == pytest.approx(flops, rel=1e-4)
    assert row["mfu_bf16"] == pytest.approx(mfu, rel=1e-4)
    assert row["mfu_fp8"] == pytest.approx(row["mfu_bf16"] * 989.4 / 1978.9)
    assert 0.35 < row["mfu_bf16"] < 0.45  # what large runs reach; not a made-up efficiency
    assert compute.per_trillion(v3)["mfu_bf16"] == pytest.approx(mfu, rel=1e-4)


def test_context_extension_tokens_and_its_lower_mfu(v3):
    row = compute.table1(v3)[1]
    # V3 §4.3: 1000 steps at 1920 x 32K, then 1000 steps at 480 x 128K
    assert row["tokens"] == 1000 * 1920 * 32768 + 1000 * 480 * 131072
    flops = (1000 * 1920 * 32768 * hand_flops_per_token(32768)
             + 1000 * 480 * 131072 * hand_flops_per_token(131072))
    assert row["mfu_bf16"] == pytest.approx(flops / (119e3 * 3600 * 989.4e12), rel=1e-4)
    assert row["mfu_bf16"] < compute.table1(v3)[0]["mfu_bf16"]


def test_training_cost_round_trips_the_implied_mfu(v3):
    mfu = compute.table1(v3)[0]["mfu_bf16"]
    cost = compute.training_cost(v3, mfu=mfu)
    assert cost.gpu_hours == pytest.approx(2664e3)
    assert cost.days == pytest.approx(2664e3 / 2048 / 24)
    assert cost.usd == pytest.approx(5.328e6)
    half = compute.training_cost(v3, mfu=mfu, precision="fp8", usd_per_gpu_hour=3.0)
    assert half.gpu_hours == pytest.approx(2664e3 * 989.4 / 1978.9)
    assert half.usd == pytest.approx(half.gpu_hours * 3.0)


def test_bad_inputs_name_the_rule(v3):
    with pytest.raises(ValueError, match=r"mfu=1.5: must be in \(0, 1\]"):
        compute.training_cost(v3, mfu=1.5)
    with pytest.raises(ValueError, match="tokens=0: must be > 0"):
        compute.training_cost(v3, tokens=0)
    with pytest.raises(ValueError, match="RTX 3080 has no FP8 tensor cores"):
        compute.gpu_hours(1e20, GPUS["rtx3080"], 0.4, "fp8")
    with pytest.raises(ValueError, match="precision='fp16'"):
        H800.peak_flops("fp16")
