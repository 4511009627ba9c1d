"""minir1 <-> transformers DeepseekV3ForCausalLM: the same logits both ways (max abs diff <= 1e-4,
fp32)."""

import json
import warnings

import pytest
import torch

from minir1 import ModelConfig, Transformer
from minir1 import hf as mhf

transformers = pytest.importorskip("transformers")

HF_KW = dict(vocab_size=96, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
             num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4, n_routed_experts=8,
             n_shared_experts=1, num_experts_per_tok=2, n_group=4, topk_group=2,
             first_k_dense_replace=1, q_lora_rank=32, kv_lora_rank=16, qk_rope_head_dim=8,
             qk_nope_head_dim=16, v_head_dim=16, max_position_embeddings=64,
             routed_scaling_factor=2.5)
YARN = {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32, "beta_fast": 32,
        "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707}


def random_hf(**overrides):
    cfg = transformers.DeepseekV3Config(**{**HF_KW, **overrides})
    model = transformers.DeepseekV3ForCausalLM(cfg).eval()
    with torch.no_grad():  # non-zero routing biases and norms exercise every path
        for layer in model.model.layers[cfg.first_k_dense_replace:]:
            layer.mlp.gate.e_score_correction_bias.normal_(0, 0.05)
        for name, p in model.named_parameters():
            if "layernorm" in name or name.endswith("norm.weight"):
                p.normal_(1.0, 0.1)
    return model


def hf_logits(model, x):
    with torch.no_grad():
        return model(input_ids=x).logits


@pytest.mark.parametrize("overrides", [{}, {"q_lora_rank": None},
                                       {"max_position_embeddings": 64, "rope_scaling": YARN}],
                         ids=["base", "no-q-lora", "yarn"])
def test_hf_to_minir1_same_logits(tmp_path, overrides):
    hf = random_hf(**overrides)
    hf.save_pretrained(tmp_path)
    ours = mhf.from_pretrained(tmp_path).eval()
    x = torch.randint(0, HF_KW["vocab_size"], (2, 48))
    ref = hf_logits(hf, x)
    with torch.no_grad():
        for impl in ("naive", "absorbed"):
            assert (ours(x, attn_impl=impl).logits - ref).abs().max() <= 1e-4
    if "rope_scaling" in overrides:
        assert ours.cfg.uses_yarn and ours.cfg.original_seq_len == 32 and ours.cfg.mscale == 0.707


def test_minir1_to_hf_same_logits(tmp_path):
    cfg = ModelConfig.preset("tiny", n_layers=3, max_seq_len=128, original_seq_len=64,
                             rope_factor=4.0, route_scale=2.5, mscale=0.8, n_mtp_modules=1)
    ours = Transformer(cfg).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.normal_(0, 0.05)
        for m in ours.moe_layers():
            m.gate.bias.normal_(0, 0.05)
    mhf.save_pretrained(ours, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = transformers.DeepseekV3ForCausalLM.from_pretrained(tmp_path).eval()
    x = torch.randint(0, cfg.vocab_size, (2, 100))
    with torch.no_grad():
        assert (ours(x).logits - hf_logits(theirs, x)).abs().max() <= 1e-4
    # and the round trip is lossless, MTP module and training fields included
    back = mhf.from_pretrained(tmp_path)
    assert back.cfg == cfg
    for (k, a), (k2, b) in zip(ours.state_dict().items(), back.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b), k


def test_hub_layout_keys(tmp_path):
    cfg = ModelConfig.preset("tiny", n_layers=2)
    mhf.save_pretrained(Transformer(cfg), tmp_path)
    from safetensors import safe_open

    keys = set(safe_open(tmp_path / "model.safetensors", "pt").keys())
    assert "model.layers.1.mlp.experts.3.gate_proj.weight" in keys
    assert "model.layers.1.mlp.gate.e_score_correction_bias" in keys
    assert "model.layers.0.self_attn.kv_a_proj_with_mqa.weight" in keys
    assert "model.layers.2.eh_proj.weight" in keys
    assert "model.layers.2.shared_head.norm.weight" in keys
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["num_nextn_predict_layers"] == 1 and config["model_type"] == "deepseek_v3"


def test_packed_transformers_state_dict_converts():
    hf = random_hf()
    cfg = mhf.config_from_hf(hf.config.to_dict(), n_mtp_modules=0)
    # live transformers 5 model: packed expert tensors
    sd = mhf.from_hf_state_dict(hf.state_dict(), cfg)
    ours = Transformer(cfg).eval()
    ours.load_state_dict(sd)
    x = torch.randint(0, HF_KW["vocab_size"], (1, 20))
    with torch.no_grad():
        assert (ours(x).logits - hf_logits(hf, x)).abs().max() <= 1e-4


@pytest.mark.parametrize("key,value,match", [
    ("hidden_act", "gelu", "hidden_act"), ("attention_bias", True, "attention_bias"),
    ("scoring_func", "softmax", "scoring_func"), ("norm_topk_prob", False, "norm_topk_prob"),
    ("num_key_value_heads", 2, "num_key_value_heads"),
    ("rope_interleave", False, "rope_interleave"),
    ("rope_scaling", {"type": "linear", "factor": 2.0}, "rope_scaling"),
    ("rope_scaling", {**YARN, "mscale_all_dim": 1.0}, "rope_scaling"),
])
def test_inexpressible_configs_are_refused(key, value, match):
    d = transformers.DeepseekV3Config(**HF_KW).to_dict()
    d.pop("rope_parameters", None)
    d[key] = value
    with pytest.raises(ValueError, match=match):
        mhf.config_from_hf(d)


def test_missing_files_are_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        mhf.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(mhf.config_to_hf(ModelConfig.preset("tiny"))))
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors"):
        mhf.from_pretrained(tmp_path)


def test_softmax_model_cannot_be_saved_as_v3(tmp_path):
    cfg = ModelConfig.preset("tiny", score_func="softmax", n_expert_groups=1, n_limited_groups=1)
    with pytest.raises(ValueError, match="score_func"):
        mhf.save_pretrained(Transformer(cfg), tmp_path)
