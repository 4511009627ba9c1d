"""``from_pretrained`` on checkpoints in the layout the hub ships DeepSeek-V3/R1 and V2 in.

The V3/R1 repositories hold ``config.json`` with a ``quantization_config`` (fp8, e4m3,
``weight_block_size`` [128, 128]), 163 shards and ``model.safetensors.index.json``; every Linear
of the decoder layers is FP8 E4M3 with an fp32 ``weight_scale_inv`` per 128x128 block, zero-padded
at the edges (README_WEIGHTS, DeepSeek-V3 repository); the MTP module is the layer after the main
ones (V3: 61) with ``enorm``, ``hnorm``, ``eh_proj``, ``shared_head.norm``, and its own copies of
``embed_tokens`` and ``shared_head.head``. The tests write tiny checkpoints in exactly that layout,
quantised by the block formula below rather than by ``minir1.fp8``.
"""

import json
import shutil
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

from minir1 import ModelConfig, Transformer
from minir1 import hf as mhf
from minir1 import weights as mweights
from minir1.fp8 import quantize
from minir1.weights import CheckpointError, CheckpointFileMissing

BLOCK = 128
# every size is a multiple of 128 or below it, which transformers' dequantiser needs (see below)
ALIGNED = ModelConfig(vocab_size=128, dim=256, inter_dim=384, moe_inter_dim=64, n_layers=3,
                      n_dense_layers=1, n_heads=4, n_routed_experts=8, n_shared_experts=1,
                      n_activated_experts=2, n_expert_groups=4, n_limited_groups=2,
                      route_scale=2.5, q_lora_rank=64, kv_lora_rank=32, qk_nope_head_dim=16,
                      qk_rope_head_dim=16, v_head_dim=16, original_seq_len=32, max_seq_len=128,
                      rope_factor=4.0, n_mtp_modules=1)
# wq_b has 4 * 48 = 192 rows and every dim-wide weight 160 columns: partial edge blocks, as the
# real wkv_a's 576 rows are (its scale is 5 x 56)
PARTIAL = ModelConfig.preset("tiny", n_layers=2, dim=160, n_mtp_modules=1)

# config.json of the V3/R1 and V2-Lite hub repositories: the official inference/configs
# (config_671B.json, config_16B.json) in hub field names, with README_WEIGHTS' quantization_config
V3_HUB = {
    "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
    "vocab_size": 129280, "hidden_size": 7168, "intermediate_size": 18432,
    "moe_intermediate_size": 2048, "num_hidden_layers": 61, "num_nextn_predict_layers": 1,
    "first_k_dense_replace": 3, "moe_layer_freq": 1, "num_attention_heads": 128,
    "num_key_value_heads": 128, "n_routed_experts": 256, "n_shared_experts": 1,
    "num_experts_per_tok": 8, "n_group": 8, "topk_group": 4, "topk_method": "noaux_tc",
    "scoring_func": "sigmoid", "norm_topk_prob": True, "routed_scaling_factor": 2.5,
    "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
    "v_head_dim": 128, "max_position_embeddings": 163840, "rope_theta": 10000,
    "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096,
                     "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0},
    "rms_norm_eps": 1e-6, "hidden_act": "silu", "attention_bias": False,
    "tie_word_embeddings": False, "aux_loss_alpha": 0.001, "seq_aux": True,
    "torch_dtype": "bfloat16",
    "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                            "weight_block_size": [128, 128]},
}
V2_LITE_HUB = {
    **{k: v for k, v in V3_HUB.items()
       if k not in ("quantization_config", "num_nextn_predict_layers")},
    "architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2",
    "vocab_size": 102400, "hidden_size": 2048, "intermediate_size": 10944,
    "moe_intermediate_size": 1408, "num_hidden_layers": 27, "first_k_dense_replace": 1,
    "num_attention_heads": 16, "num_key_value_heads": 16, "n_routed_experts": 64,
    "n_shared_experts": 2, "num_experts_per_tok": 6, "n_group": 1, "topk_group": 1,
    "topk_method": "greedy", "scoring_func": "softmax", "norm_topk_prob": False,
    "routed_scaling_factor": 1.0, "q_lora_rank": None,
    "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096,
                     "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707},
}


# ------------------------------------------------------------------------------------------ writer
def quantize_blocks(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One scale per 128x128 block: amax / 448 (E4M3's largest value), the edges as they are."""
    grid = [-(-n // BLOCK) for n in w.shape]
    q, scale = torch.empty(w.shape, dtype=torch.float8_e4m3fn), torch.empty(grid)
    for i in range(grid[0]):
        for j in range(grid[1]):
            rows, cols = slice(i * BLOCK, (i + 1) * BLOCK), slice(j * BLOCK, (j + 1) * BLOCK)
            scale[i, j] = w[rows, cols].float().abs().max().clamp_min(1e-4) / 448
            q[rows, cols] = (w[rows, cols].float() / scale[i, j]).to(torch.float8_e4m3fn)
    return q, scale


def dequantize_blocks(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """README_WEIGHTS: ``(128x128 weight block) * weight_scale_inv``, block by block."""
    w = q.float()
    for i in range(scale.shape[0]):
        for j in range(scale.shape[1]):
            w[i * BLOCK:(i + 1) * BLOCK, j * BLOCK:(j + 1) * BLOCK] *= scale[i, j]
    return w


def is_fp8_linear(key: str, t: torch.Tensor) -> bool:
    """Every decoder Linear but the router; not the embedding, head, norms or eh_proj."""
    return (key.startswith("model.layers.") and key.endswith("_proj.weight") and t.dim() == 2
            and ".eh_proj." not in key)


def random_model(cfg: ModelConfig, seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    model = Transformer(cfg).eval()
    with torch.no_grad():  # non-zero biases and norms exercise every path
        for name, p in model.named_parameters():
            p.normal_(1.0 if "norm" in name else 0.0, 0.1 if "norm" in name else 0.05)
        for m in model.moe_layers():
            m.gate.bias.normal_(0, 0.05)
    return model


def write_hub_checkpoint(model: Transformer, path, n_shards: int = 4) -> dict[str, torch.Tensor]:
    """``model`` as the V3 repositories ship it; returns the tensors as written."""
    cfg = model.cfg
    sd = mhf.to_hf_state_dict(model)
    mtp = f"model.layers.{cfg.n_layers}"
    sd[f"{mtp}.embed_tokens.weight"] = sd["model.embed_tokens.weight"].clone()
    sd[f"{mtp}.shared_head.head.weight"] = sd["lm_head.weight"].clone()
    written: dict[str, torch.Tensor] = {}
    for key, t in sd.items():
        if is_fp8_linear(key, t):
            written[key], written[key + "_scale_inv"] = quantize_blocks(t)
        else:
            written[key] = t
    keys = list(written)  # in model order, so a layer spans one or two neighbouring shards
    step = -(-len(keys) // n_shards)
    weight_map = {}
    path.mkdir(parents=True, exist_ok=True)
    for s in range(n_shards):
        shard = f"model-{s + 1:05d}-of-{n_shards:05d}.safetensors"
        chunk = {k: written[k].contiguous() for k in keys[s * step:(s + 1) * step]}
        save_file(chunk, path / shard, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(chunk, shard))
    total = sum(t.numel() * t.element_size() for t in written.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (path / mweights.INDEX).write_text(json.dumps(index, indent=2))
    config = mhf.config_to_hf(cfg)
    del config["minir1"]
    config.update(torch_dtype="float32", quantization_config={
        "activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
        "weight_block_size": [BLOCK, BLOCK]})
    (path / "config.json").write_text(json.dumps(config, indent=2))
    return written


def expected_state_dict(written: dict[str, torch.Tensor], cfg: ModelConfig):
    hub = {k: dequantize_blocks(t, written[k + "_scale_inv"]) if k + "_scale_inv" in written
           else t for k, t in written.items() if not k.endswith("_scale_inv")}
    return mhf.from_hf_state_dict(hub, cfg)


@pytest.fixture(scope="module")
def partial_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("fp8")
    return path, write_hub_checkpoint(random_model(PARTIAL), path)


# ------------------------------------------------------------------------------------------ FP8
def test_fp8_shards_dequantise_block_by_block(partial_ckpt):
    path, written = partial_ckpt
    assert written["model.layers.0.self_attn.q_b_proj.weight_scale_inv"].shape == (2, 1)
    assert written["model.layers.1.self_attn.q_a_proj.weight_scale_inv"].shape == (1, 2)
    model = mhf.from_pretrained(path)
    assert model.cfg.n_mtp_modules == 1 and next(model.parameters()).dtype == torch.float32
    expected = expected_state_dict(written, model.cfg)
    got = model.state_dict()
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        assert torch.equal(got[key], value), key
    # the MTP module is the stored layer 2, sharing the main embedding and head
    assert torch.equal(model.mtp[0].eh_proj.weight, written["model.layers.2.eh_proj.weight"])
    x = torch.randint(0, PARTIAL.vocab_size, (1, 12))
    with torch.no_grad():
        assert torch.isfinite(model(x, targets=x).mtp_logits[0]).all()


def test_dequantised_weights_requantise_to_the_stored_bytes(partial_ckpt):
    """What an ``Fp8Linear`` with the 128x128 weight blocks multiplies is the checkpoint's FP8."""
    path, written = partial_ckpt
    hub = mhf.to_hf_state_dict(mhf.from_pretrained(path))
    for key, q in written.items():
        if q.dtype == torch.float8_e4m3fn:
            again, scale = quantize(hub[key], "e4m3", (BLOCK, BLOCK))
            assert torch.equal(again.view(torch.uint8), q.view(torch.uint8)), key
            assert torch.equal(scale, written[key + "_scale_inv"]), key


def test_dtype_defaults_to_the_declared_torch_dtype(partial_ckpt, tmp_path):
    path, _ = partial_ckpt
    shutil.copytree(path, tmp_path / "c")
    config = json.loads((tmp_path / "c/config.json").read_text())
    (tmp_path / "c/config.json").write_text(json.dumps({**config, "torch_dtype": "bfloat16"}))
    model = mhf.from_pretrained(tmp_path / "c", layers=[0])
    assert model.layers[0].attn.wq_b.weight.dtype == torch.bfloat16  # FP8 -> V3's declared dtype
    block = mhf.from_pretrained(path, dtype=torch.bfloat16, layers=[0]).layers[0]
    assert {p.dtype for p in block.parameters()} == {torch.bfloat16}


# ------------------------------------------------------------------------------------------ layers
def test_layers_read_only_their_tensors_from_only_their_shards(partial_ckpt, tmp_path,
                                                               monkeypatch):
    path, _ = partial_ckpt
    full = mhf.from_pretrained(path)
    index = json.loads((path / mweights.INDEX).read_text())["weight_map"]
    layer = 1
    mine = {k for k in index if k.startswith(f"model.layers.{layer}.")}
    shutil.copytree(path, tmp_path / "c")
    for shard in set(index.values()) - {index[k] for k in mine}:
        (tmp_path / "c" / shard).unlink()  # a local copy with only the layer's shards
    read: list[str] = []
    real = mweights.safe_open

    class Recorder:
        def __init__(self, *args, **kwargs):
            self.f = real(*args, **kwargs)

        def __enter__(self):
            self.f.__enter__()
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

        def keys(self):
            return self.f.keys()

        def get_tensor(self, key):
            read.append(key)
            return self.f.get_tensor(key)

    monkeypatch.setattr(mweights, "safe_open", Recorder)
    one = mhf.from_pretrained(tmp_path / "c", layers=[layer])
    assert set(read) == mine
    for key, value in full.layers[layer].state_dict().items():
        assert torch.equal(one.layers[layer].state_dict()[key], value), key
    assert one.embed.weight.is_meta and one.layers[0].attn.wq_b.weight.is_meta
    # the loaded block runs on its own and gives the full model's output
    h = torch.randn(2, 10, PARTIAL.dim)
    cos, sin = (t[:10] for t in one.rope_tables(h.device))
    with torch.no_grad():
        assert torch.equal(one.layers[layer](h, cos, sin)[0], full.layers[layer](h, cos, sin)[0])
    with pytest.raises(CheckpointFileMissing, match=r"index\.json puts .* which is missing"):
        mhf.from_pretrained(tmp_path / "c")


def test_the_mtp_layer_loads_without_its_copies_of_embedding_and_head(partial_ckpt, monkeypatch):
    path, written = partial_ckpt
    read: list[str] = []
    real = mweights.read_safetensors
    monkeypatch.setattr(mhf, "read_safetensors", lambda p, keys: read.extend(keys) or real(p, keys))
    model = mhf.from_pretrained(path, layers=[PARTIAL.n_layers, "embed", "head"])
    assert "model.layers.2.embed_tokens.weight" not in read
    assert "model.layers.2.shared_head.head.weight" not in read
    assert torch.equal(model.mtp[0].norm.weight, written["model.layers.2.shared_head.norm.weight"])
    assert torch.equal(model.head.weight, written["lm_head.weight"])
    assert model.norm.weight.is_meta and model.layers[1].ffn.gate.weight.is_meta


# ------------------------------------------------------------------------------------------ errors
def broken_copy(path, tmp_path, edit) -> object:
    dest = tmp_path / "c"
    shutil.copytree(path, dest)
    edit(dest)
    return dest


def rewrite_shard(dest, key, change):
    index = json.loads((dest / mweights.INDEX).read_text())["weight_map"]
    shard = dest / index[key]
    tensors = load_file(shard)
    change(tensors)
    save_file(tensors, shard)


KEY = "model.layers.1.self_attn.q_a_proj.weight"


def drop_scale(dest):
    rewrite_shard(dest, KEY, lambda t: t.pop(KEY + "_scale_inv"))
    index = json.loads((dest / mweights.INDEX).read_text())
    del index["weight_map"][KEY + "_scale_inv"]
    (dest / mweights.INDEX).write_text(json.dumps(index))


@pytest.mark.parametrize("edit,error,match", [
    (lambda d: (d / json.loads((d / mweights.INDEX).read_text())["weight_map"][KEY]).unlink(),
     CheckpointFileMissing, r"model-0000\d-of-00004\.safetensors, which is missing"),
    (lambda d: rewrite_shard(d, KEY, lambda t: t.pop(KEY + "_scale_inv")),
     CheckpointError, r"puts 'model.layers.1.self_attn.q_a_proj.weight_scale_inv' in .* does not "
                      r"hold it"),
    (lambda d: rewrite_shard(d, KEY, lambda t: t.update({KEY + "_scale_inv": torch.ones(2, 2)})),
     CheckpointError, r"q_a_proj.weight_scale_inv has shape \(2, 2\): a \(64, 160\) weight in "
                      r"128x128 blocks .* needs \(1, 2\)"),
    (lambda d: rewrite_shard(d, KEY, lambda t: t.update({KEY: t[KEY].float()})),
     CheckpointError, r"scales a torch.float32 tensor"),
    (drop_scale, CheckpointError, r"q_a_proj.weight is stored in torch.float8_e4m3fn without "
                                  r"model.layers.1.self_attn.q_a_proj.weight_scale_inv"),
], ids=["missing-shard", "index-names-absent-key", "scale-grid", "scale-on-unquantised",
        "fp8-without-scale"])
def test_broken_checkpoints_name_the_file_or_key(partial_ckpt, tmp_path, edit, error, match):
    with pytest.raises(error, match=match):
        mhf.from_pretrained(broken_copy(partial_ckpt[0], tmp_path, edit))


def test_fp8_weight_without_scale_is_refused():
    q = torch.zeros(4, 4, dtype=torch.float8_e4m3fn)
    with pytest.raises(CheckpointError, match=r"model.x.weight is stored in torch.float8_e4m3fn "
                                              r"without model.x.weight_scale_inv"):
        mhf.dequantize_fp8({"model.x.weight": q})
    with pytest.raises(CheckpointError, match=r"model.x.weight_scale_inv: a block scale without"):
        mhf.dequantize_fp8({"model.x.weight_scale_inv": torch.ones(1, 1)})


def test_unknown_layers_are_refused(partial_ckpt):
    with pytest.raises(ValueError, match=r"layers: 3 is not a part .* indices 0\.\.2"):
        mhf.from_pretrained(partial_ckpt[0], layers=[3])


@pytest.mark.parametrize("change,match", [
    ({"model_type": "llama"}, "model_type='llama'"),
    ({"topk_method": "greedy"}, "topk_method='greedy'"),
    ({"moe_layer_freq": 2}, "moe_layer_freq=2"),
    ({**V2_LITE_HUB, "norm_topk_prob": True}, "norm_topk_prob=True"),
    ({**V2_LITE_HUB, "scoring_func": "sigmoid"}, "deepseek_v2 routes with softmax"),
    ({**V2_LITE_HUB, "topk_method": "noaux_tc"}, "topk_method='noaux_tc'"),
])
def test_unexpressible_hub_configs_are_refused(change, match):
    with pytest.raises(ValueError, match=match):
        mhf.config_from_hf({**V3_HUB, **change})


@pytest.mark.parametrize("q,match", [
    ({"quant_method": "fp8", "fmt": "e5m2"}, "fmt 'e4m3'"),
    ({"quant_method": "gptq"}, "quant_method 'fp8'"),
    ({"quant_method": "fp8", "weight_block_size": [128]}, "weight_block_size"),
])
def test_other_quantisations_are_refused(q, match):
    with pytest.raises(ValueError, match=match):
        mhf.fp8_block_size({"quantization_config": q})


# ------------------------------------------------------------------------------------------ configs
@pytest.mark.parametrize("hub,preset", [(V3_HUB, "v3"), (V2_LITE_HUB, "v2-lite")])
def test_hub_configs_are_the_presets(hub, preset):
    # the presets serve 16K tokens, as the official demo does; the hub declares 163,840 (4096 x 40)
    assert mhf.config_from_hf(hub) == ModelConfig.preset(preset, max_seq_len=163840)
    assert mhf.fp8_block_size(hub) == (128, 128)


def test_v2_group_limited_greedy_is_the_softmax_gate_with_groups():
    cfg = mhf.config_from_hf({**V2_LITE_HUB, "n_group": 8, "topk_group": 3,
                              "topk_method": "group_limited_greedy", "routed_scaling_factor": 16.0})
    assert (cfg.score_func, cfg.n_expert_groups, cfg.n_limited_groups) == ("softmax", 8, 3)
    assert cfg.route_scale == 16.0


# ------------------------------------------------------------------------------- transformers
def test_fp8_checkpoint_gives_transformers_logits(tmp_path):
    """transformers' fine-grained FP8 loader dequantises on CPU (it needs ``accelerate``); both read
    the same sharded FP8 files. Its dequantiser takes the block size from the scale grid
    (rows // grid rows), so the sizes here are whole blocks or below one."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate", reason="transformers' FP8 quantizer requires accelerate")
    write_hub_checkpoint(random_model(ALIGNED, seed=1), tmp_path)
    ours = mhf.from_pretrained(tmp_path).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = transformers.DeepseekV3ForCausalLM.from_pretrained(
            tmp_path, dtype=torch.float32).eval()
    assert type(theirs.model.layers[1].self_attn.q_a_proj) is torch.nn.Linear  # dequantised
    x = torch.randint(0, ALIGNED.vocab_size, (2, 60))
    with torch.no_grad():
        ref = theirs(input_ids=x).logits
        for impl in ("naive", "absorbed"):
            assert (ours(x, attn_impl=impl).logits - ref).abs().max() <= 1e-4


@pytest.mark.parametrize("overrides", [
    {"q_lora_rank": None, "topk_method": "greedy", "n_group": 1, "topk_group": 1},
    # one group of two: the second expert is often not the second best overall
    {"q_lora_rank": 32, "topk_method": "group_limited_greedy", "n_group": 4, "topk_group": 1,
     "routed_scaling_factor": 16.0},
], ids=["v2-lite", "v2"])
def test_v2_checkpoint_gives_transformers_logits(tmp_path, overrides):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf_cfg = transformers.DeepseekV2Config(
        vocab_size=96, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
        num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4, n_routed_experts=8,
        n_shared_experts=2, num_experts_per_tok=2, first_k_dense_replace=1, kv_lora_rank=16,
        qk_rope_head_dim=8, qk_nope_head_dim=16, v_head_dim=16, max_position_embeddings=64,
        **overrides)
    theirs = transformers.DeepseekV2ForCausalLM(hf_cfg).eval()
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            if "layernorm" in name or name.endswith("norm.weight"):
                p.normal_(1.0, 0.1)
            elif name.endswith("mlp.gate.weight"):
                p.normal_(0.0, 0.5)  # routing far from uniform
    theirs.save_pretrained(tmp_path, max_shard_size="100KB")
    assert (tmp_path / mweights.INDEX).exists()
    ours = mhf.from_pretrained(tmp_path).eval()
    assert ours.cfg.score_func == "softmax" and ours.cfg.n_mtp_modules == 0
    assert ours.cfg.q_lora_rank == (overrides["q_lora_rank"] or 0)
    x = torch.randint(0, 96, (2, 40))
    with torch.no_grad():
        ref = theirs(input_ids=x).logits
        for impl in ("naive", "absorbed"):
            assert (ours(x, attn_impl=impl).logits - ref).abs().max() <= 1e-4
