import dataclasses

import pytest

from minir1 import ModelConfig
from minir1.config import PRESETS


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_valid(name):
    cfg = ModelConfig.preset(name)
    assert cfg.qk_head_dim == cfg.qk_nope_head_dim + cfg.qk_rope_head_dim


def test_official_field_names():
    official = ("dim inter_dim moe_inter_dim n_layers n_dense_layers n_heads n_routed_experts "
                "n_shared_experts n_activated_experts n_expert_groups n_limited_groups score_func "
                "route_scale q_lora_rank kv_lora_rank qk_nope_head_dim qk_rope_head_dim v_head_dim "
                "original_seq_len rope_theta rope_factor beta_fast beta_slow mscale vocab_size "
                "max_seq_len").split()
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    assert set(official) <= names
    assert {"n_mtp_modules", "mtp_loss_weight", "balance_alpha", "bias_update_speed", "init_std",
            "norm_eps"} <= names


def test_v3_preset_matches_config_671B():
    cfg = ModelConfig.preset("v3")
    shape = (cfg.dim, cfg.n_layers, cfg.n_heads, cfg.n_routed_experts, cfg.n_activated_experts)
    assert shape == (7168, 61, 128, 256, 8)
    assert (cfg.q_lora_rank, cfg.kv_lora_rank, cfg.route_scale, cfg.score_func) == (
        1536, 512, 2.5, "sigmoid")
    # YaRN softmax scale: 192^-0.5 * (0.1 ln 40 + 1)^2 = 0.1352 (the official MLA's
    # softmax_scale * mscale**2)
    assert cfg.softmax_scale == pytest.approx(0.1352, abs=1e-4)


def test_overrides_and_unknown_names():
    assert ModelConfig.preset("tiny", dim=64).dim == 64
    with pytest.raises(ValueError, match="unknown preset"):
        ModelConfig.preset("v4")
    with pytest.raises(ValueError, match="hidden_size"):
        ModelConfig.preset("tiny", hidden_size=64)


BAD = [
    (dict(n_activated_experts=20), "n_activated_experts", "n_routed_experts"),
    (dict(n_expert_groups=3), "n_expert_groups", "divide"),
    (dict(n_limited_groups=5), "n_limited_groups", "n_expert_groups"),
    (dict(qk_rope_head_dim=15), "qk_rope_head_dim", "even"),
    (dict(dim=0), "dim", "positive"),
    (dict(n_heads=-2), "n_heads", "positive"),
    (dict(vocab_size=1.5), "vocab_size", "positive integer"),
    (dict(q_lora_rank=-1), "q_lora_rank", "non-negative"),
    (dict(score_func="relu"), "score_func", "one of"),
    (dict(n_dense_layers=9), "n_dense_layers", "n_layers"),
    (dict(n_limited_groups=1, n_activated_experts=5), "n_activated_experts", "kept groups"),
    (dict(n_expert_groups=16, n_limited_groups=4), "n_expert_groups", "top-2"),
    (dict(rope_theta=0.0), "rope_theta", "> 0"),
    (dict(balance_alpha=-1e-4), "balance_alpha", ">= 0"),
    (dict(beta_fast=1, beta_slow=32), "beta_fast", "beta_slow"),
]


@pytest.mark.parametrize("overrides,field,rule", BAD)
def test_invalid_configs_name_field_and_rule(overrides, field, rule):
    with pytest.raises(ValueError) as err:
        ModelConfig.preset("tiny", **overrides)
    assert f"ModelConfig.{field}=" in str(err.value)
    assert rule in str(err.value)


def test_dict_round_trip():
    cfg = ModelConfig.preset("small")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
