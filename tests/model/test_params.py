import pytest

from minir1 import ModelConfig, count_params
from minir1.model import kv_cache_bytes_per_token


def test_v3_counts_match_the_paper():
    c = count_params(ModelConfig.preset("v3"))
    assert round(c.total / 1e9, 1) == 671.0  # "671B" main model (V3 §4.2; README_WEIGHTS.md: 671B)
    assert c.activated / 1e9 == pytest.approx(37.55, abs=0.01)  # with embedding and head
    assert c.activated_no_embed / 1e9 == pytest.approx(36.63, abs=0.01)
    # one MoE layer + eh_proj + norms (README_WEIGHTS.md: 11.5B)
    assert c.mtp_total / 1e9 == pytest.approx(11.61, abs=0.01)
    # 685B on the hub = main + MTP + the MTP layer's own copies of embedding and head
    assert (c.total + c.mtp_total + c.embedding + c.head) / 1e9 == pytest.approx(684.5, abs=0.1)


def test_v2_lite_counts():
    c = count_params(ModelConfig.preset("v2-lite"))
    assert c.total / 1e9 == pytest.approx(15.71, abs=0.01)  # V3 Table 4-5 "15.7B"
    assert c.activated_no_embed / 1e9 == pytest.approx(2.45, abs=0.01)  # "2.4B" active


def test_component_arithmetic_v3():
    c = count_params(ModelConfig.preset("v3"))
    expert = 3 * 7168 * 2048
    assert c.components["routed_experts"] == 58 * 256 * expert
    assert c.components["dense_ffn"] == 3 * 3 * 7168 * 18432
    mla = 7168 * 1536 + 1536 * 128 * 192 + 7168 * 576 + 512 * 128 * 256 + 128 * 128 * 7168
    assert c.components["attention"] == 61 * mla


def test_tiny_and_small_sizes():
    assert 1e6 <= count_params(ModelConfig.preset("tiny")).total <= 5e6
    assert 50e6 <= count_params(ModelConfig.preset("small")).total <= 150e6


def test_kv_cache_bytes():
    cfg = ModelConfig.preset("v3")
    assert kv_cache_bytes_per_token(cfg, "absorbed") == 61 * 576 * 2 == 70_272
    assert kv_cache_bytes_per_token(cfg, "naive") == 61 * 128 * (192 + 128) * 2
    with pytest.raises(ValueError, match="attn_impl"):
        kv_cache_bytes_per_token(cfg, "flash")
