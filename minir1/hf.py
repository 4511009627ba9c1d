"""transformers interop: read and write the Hugging Face hub layout of DeepSeek-V3.

A hub directory holds ``config.json`` (``DeepseekV3Config`` fields) and ``model.safetensors`` (or
shards with an index) with keys such as ``model.layers.{i}.self_attn.q_a_proj.weight`` and
per-expert ``model.layers.{i}.mlp.experts.{e}.gate_proj.weight``. The renaming is the map of the
official ``inference/convert.py`` (DeepSeek-V3 repository). MTP modules, which transformers does not
run, are stored the way the V3 checkpoint stores its layer 61: as extra layers
``model.layers.{n_layers + k - 1}`` with ``enorm``, ``hnorm``, ``eh_proj`` and ``shared_head.norm``.

``transformers`` itself is not needed here: only ``safetensors`` and ``json``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from minir1.config import ModelConfig
from minir1.model.init import meta_init
from minir1.model.transformer import Transformer
from minir1.weights import read_safetensors

# minir1 name -> HF name, per module inside a decoder layer
_LAYER_RENAMES = [
    ("attn_norm", "input_layernorm"), ("ffn_norm", "post_attention_layernorm"),
    ("attn.wq_a", "self_attn.q_a_proj"), ("attn.q_norm", "self_attn.q_a_layernorm"),
    ("attn.wq_b", "self_attn.q_b_proj"), ("attn.wq", "self_attn.q_proj"),
    ("attn.wkv_a", "self_attn.kv_a_proj_with_mqa"), ("attn.kv_norm", "self_attn.kv_a_layernorm"),
    ("attn.wkv_b", "self_attn.kv_b_proj"), ("attn.wo", "self_attn.o_proj"),
    ("ffn.gate.bias", "mlp.gate.e_score_correction_bias"), ("ffn.gate.weight", "mlp.gate.weight"),
    ("ffn.", "mlp."),
]
_MLP_RENAMES = [(".w1.", ".gate_proj."), (".w2.", ".down_proj."), (".w3.", ".up_proj.")]
_MTP_RENAMES = [("enorm", "enorm"), ("hnorm", "hnorm"), ("eh_proj", "eh_proj"),
                ("norm", "shared_head.norm")]


# ------------------------------------------------------------------------------------------ config
def config_to_hf(cfg: ModelConfig) -> dict[str, Any]:
    """A ``DeepseekV3Config``-compatible dict (legacy ``rope_scaling`` form, read by transformers
    4.x and 5.x)."""
    if cfg.score_func != "sigmoid":
        raise ValueError("ModelConfig.score_func='softmax' cannot be saved as DeepseekV3: "
                         "transformers' DeepseekV3 router always uses sigmoid affinities")
    rope_scaling = None
    if cfg.uses_yarn:
        rope_scaling = {"type": "yarn", "factor": cfg.rope_factor,
                        "original_max_position_embeddings": cfg.original_seq_len,
                        "beta_fast": cfg.beta_fast, "beta_slow": cfg.beta_slow,
                        "mscale": cfg.mscale, "mscale_all_dim": cfg.mscale}
    return {
        "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.dim, "intermediate_size": cfg.inter_dim,
        "moe_intermediate_size": cfg.moe_inter_dim, "num_hidden_layers": cfg.n_layers,
        "first_k_dense_replace": cfg.n_dense_layers, "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_heads, "n_routed_experts": cfg.n_routed_experts,
        "n_shared_experts": cfg.n_shared_experts, "num_experts_per_tok": cfg.n_activated_experts,
        "n_group": cfg.n_expert_groups, "topk_group": cfg.n_limited_groups,
        "scoring_func": "sigmoid", "topk_method": "noaux_tc", "norm_topk_prob": True,
        "routed_scaling_factor": cfg.route_scale, "q_lora_rank": cfg.q_lora_rank or None,
        "kv_lora_rank": cfg.kv_lora_rank, "qk_nope_head_dim": cfg.qk_nope_head_dim,
        "qk_rope_head_dim": cfg.qk_rope_head_dim, "v_head_dim": cfg.v_head_dim,
        "max_position_embeddings": cfg.max_seq_len, "rope_theta": cfg.rope_theta,
        "rope_scaling": rope_scaling, "rope_interleave": True, "rms_norm_eps": cfg.norm_eps,
        "hidden_act": "silu", "attention_bias": False, "tie_word_embeddings": False,
        "num_nextn_predict_layers": cfg.n_mtp_modules, "initializer_range": cfg.init_std,
        # minir1's training fields, so a save/load round trip is lossless
        "minir1": {"mtp_loss_weight": cfg.mtp_loss_weight, "balance_alpha": cfg.balance_alpha,
                   "bias_update_speed": cfg.bias_update_speed, "init_std": cfg.init_std},
    }


def config_from_hf(d: dict[str, Any], n_mtp_modules: int | None = None) -> ModelConfig:
    """``ModelConfig`` from a hub ``config.json`` dict; ValueError for what minir1's model
    cannot express."""
    def unsupported(key: str, rule: str) -> ValueError:
        return ValueError(f"config.json {key}={d.get(key)!r}: {rule}; "
                          "minir1 cannot express this model")

    if d.get("model_type", "deepseek_v3") != "deepseek_v3":
        raise unsupported("model_type", "expected 'deepseek_v3'")
    if d.get("hidden_act", "silu") != "silu":
        raise unsupported("hidden_act", "DeepSeek-V3 uses SiLU (SwiGLU)")
    if d.get("attention_bias", False):
        raise unsupported("attention_bias", "DeepSeek-V3 linears have no bias")
    if d.get("tie_word_embeddings", False):
        raise unsupported("tie_word_embeddings",
                          "the embedding and the head are separate in DeepSeek-V3")
    if not d.get("rope_interleave", True):
        raise unsupported("rope_interleave",
                          "minir1 rotates interleaved pairs, as the official weights expect")
    if d.get("scoring_func", "sigmoid") != "sigmoid":
        raise unsupported("scoring_func", "transformers' DeepseekV3 routes with sigmoid")
    if not d.get("norm_topk_prob", True):
        raise unsupported("norm_topk_prob",
                          "sigmoid routing weights are normalised over the selected experts")
    heads = d.get("num_attention_heads", 128)
    if d.get("num_key_value_heads", heads) != heads:
        raise unsupported("num_key_value_heads", f"MLA expands one latent into all {heads} heads")

    rope = dict(d.get("rope_parameters") or d.get("rope_scaling") or {})
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    theta = rope.get("rope_theta", d.get("rope_theta", 10000.0))
    max_len = d.get("max_position_embeddings", 4096)
    yarn: dict[str, Any] = {"original_seq_len": max_len, "max_seq_len": max_len}
    if rope_type == "yarn":
        original = rope["original_max_position_embeddings"]
        factor = rope.get("factor") or max_len / original
        mscale, mscale_all = rope.get("mscale"), rope.get("mscale_all_dim")
        if max_len <= original:
            raise unsupported("max_position_embeddings",
                              "minir1 (like the official code) applies YaRN only when it exceeds "
                              "rope_scaling.original_max_position_embeddings")
        if not mscale or mscale != mscale_all or rope.get("attention_factor") not in (None, 1, 1.0):
            raise unsupported("rope_scaling", "YaRN must put its whole temperature in the softmax "
                              "scale (mscale == mscale_all_dim, no attention_factor), "
                              "as DeepSeek-V3 does")
        yarn = {"original_seq_len": original, "max_seq_len": max_len, "rope_factor": float(factor),
                "beta_fast": rope.get("beta_fast") or 32, "beta_slow": rope.get("beta_slow") or 1,
                "mscale": float(mscale)}
    elif rope_type != "default":
        raise unsupported("rope_scaling",
                          f"rope type {rope_type!r} is not supported (only default or yarn)")

    extra = d.get("minir1", {})
    return ModelConfig(
        vocab_size=d["vocab_size"], dim=d["hidden_size"], inter_dim=d["intermediate_size"],
        moe_inter_dim=d["moe_intermediate_size"], n_layers=d["num_hidden_layers"],
        n_dense_layers=d.get("first_k_dense_replace", 0), n_heads=heads,
        n_routed_experts=d["n_routed_experts"], n_shared_experts=d.get("n_shared_experts") or 0,
        n_activated_experts=d["num_experts_per_tok"], n_expert_groups=d.get("n_group") or 1,
        n_limited_groups=d.get("topk_group") or 1, score_func="sigmoid",
        route_scale=d.get("routed_scaling_factor", 1.0), q_lora_rank=d.get("q_lora_rank") or 0,
        kv_lora_rank=d["kv_lora_rank"], qk_nope_head_dim=d["qk_nope_head_dim"],
        qk_rope_head_dim=d["qk_rope_head_dim"], v_head_dim=d["v_head_dim"], rope_theta=float(theta),
        norm_eps=d.get("rms_norm_eps", 1e-6),
        n_mtp_modules=(d.get("num_nextn_predict_layers", 0) if n_mtp_modules is None
                       else n_mtp_modules),
        **yarn, **extra,
    )


# ------------------------------------------------------------------------------------------ weights
def _hf_layer_name(name: str) -> str:
    for ours, theirs in _LAYER_RENAMES:
        if name.startswith(ours):
            name = theirs + name[len(ours):]
            break
    for ours, theirs in _MLP_RENAMES:
        name = name.replace(ours, theirs)
    return name


def to_hf_state_dict(model: Transformer) -> dict[str, torch.Tensor]:
    """minir1 parameter names -> hub names (per-expert keys; MTP as extra layers after the
    main model)."""
    cfg, out = model.cfg, {}
    for name, tensor in model.state_dict().items():
        if name == "embed.weight":
            out["model.embed_tokens.weight"] = tensor
        elif name == "norm.weight":
            out["model.norm.weight"] = tensor
        elif name == "head.weight":
            out["lm_head.weight"] = tensor
        elif m := re.match(r"layers\.(\d+)\.(.+)", name):
            out[f"model.layers.{m[1]}.{_hf_layer_name(m[2])}"] = tensor
        elif m := re.match(r"mtp\.(\d+)\.(.+)", name):
            layer, rest = cfg.n_layers + int(m[1]), m[2]
            if rest.startswith("block."):
                rest = _hf_layer_name(rest[len("block."):])
            else:
                rest = next(theirs + rest[len(ours):] for ours, theirs in _MTP_RENAMES
                            if rest.startswith(ours + "."))
            out[f"model.layers.{layer}.{rest}"] = tensor
        else:
            raise KeyError(f"no hub name for parameter {name!r}")
    return {k: v.detach().contiguous() for k, v in out.items()}


def from_hf_state_dict(sd: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Hub names -> minir1 names. Accepts per-expert keys and transformers 5's packed
    expert tensors."""
    inverse = {theirs: ours for ours, theirs in _LAYER_RENAMES}
    mtp_inverse = {theirs: ours for ours, theirs in _MTP_RENAMES}
    mlp_inverse = [(theirs, ours) for ours, theirs in _MLP_RENAMES]
    out: dict[str, torch.Tensor] = {}
    for key, tensor in sd.items():
        if key == "model.embed_tokens.weight":
            out["embed.weight"] = tensor
            continue
        if key == "model.norm.weight":
            out["norm.weight"] = tensor
            continue
        if key == "lm_head.weight":
            out["head.weight"] = tensor
            continue
        m = re.match(r"model\.layers\.(\d+)\.(.+)", key)
        if not m:
            raise KeyError(f"unexpected checkpoint key {key!r}")
        layer, rest = int(m[1]), m[2]
        if layer >= cfg.n_layers:  # an MTP module stored as an extra layer
            depth = layer - cfg.n_layers
            if (depth >= cfg.n_mtp_modules
                    or rest.startswith(("embed_tokens.", "shared_head.head."))):
                continue  # beyond the configured depth, or a copy of the shared embedding / head
            prefix = f"mtp.{depth}."
            head = next((t for t in mtp_inverse if rest.startswith(t + ".")), None)
            if head is not None:
                out[prefix + mtp_inverse[head] + rest[len(head):]] = tensor
                continue
            prefix += "block."
        else:
            prefix = f"layers.{layer}."
        # transformers 5 in-memory layout
        if pm := re.match(r"mlp\.experts\.(gate_up_proj|down_proj)$", rest):
            for e, w in enumerate(tensor):
                if pm[1] == "gate_up_proj":
                    w1, w3 = w.chunk(2, dim=0)
                    (out[f"{prefix}ffn.experts.{e}.w1.weight"],
                     out[f"{prefix}ffn.experts.{e}.w3.weight"]) = w1, w3
                else:
                    out[f"{prefix}ffn.experts.{e}.w2.weight"] = w
            continue
        for theirs, ours in mlp_inverse:
            rest = rest.replace(theirs, ours)
        for theirs, ours in sorted(inverse.items(), key=lambda kv: -len(kv[0])):
            if rest.startswith(theirs):
                rest = ours + rest[len(theirs):]
                break
        out[prefix + rest] = tensor
    return out


# ------------------------------------------------------------------------------------------ files
def from_pretrained(path: str | Path, device: torch.device | str = "cpu",
                    dtype: torch.dtype | None = None) -> Transformer:
    """Load a hub-layout directory into a minir1 ``Transformer`` (weights and routing biases)."""
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.exists():
        raise FileNotFoundError(f"{path}: no config.json")
    raw = json.loads(config_file.read_text())
    hf_sd = read_safetensors(path)
    n_layers = raw["num_hidden_layers"]
    mtp_layers = {int(m[1]) for k in hf_sd
                  if (m := re.match(r"model\.layers\.(\d+)\.eh_proj\.", k))}
    n_mtp = sum(1 for k in range(n_layers, n_layers + raw.get("num_nextn_predict_layers", 0))
                if k in mtp_layers)
    cfg = config_from_hf(raw, n_mtp_modules=n_mtp)
    sd = from_hf_state_dict(hf_sd, cfg)
    with meta_init():
        model = Transformer(cfg)
    missing, unexpected = model.load_state_dict(sd, strict=False, assign=True)
    if unexpected:
        raise KeyError(f"{path}: checkpoint tensors minir1 does not know: {unexpected[:5]}")
    # a checkpoint without routing biases (e.g. V2-style) starts from zero bias, like a fresh model
    missing = [k for k in missing if not k.endswith("ffn.gate.bias")]
    if missing:
        raise KeyError(f"{path}: checkpoint lacks {len(missing)} tensors, e.g. {missing[:5]}")
    # non-persistent buffers (expert loads) and absent biases are still on meta
    for module in model.modules():
        for name, buf in list(module.named_buffers(recurse=False)):
            if buf.is_meta:
                setattr(module, name, torch.zeros(buf.shape, dtype=buf.dtype))
    model = model.to(device)
    return model.to(dtype) if dtype is not None else model


def save_pretrained(model: Transformer, path: str | Path) -> None:
    """Write ``config.json`` + ``model.safetensors`` that
    ``DeepseekV3ForCausalLM.from_pretrained`` loads."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    hf_cfg = config_to_hf(model.cfg)
    hf_cfg["dtype"] = str(next(model.parameters()).dtype).removeprefix("torch.")
    sd = {k: v.cpu() for k, v in to_hf_state_dict(model).items()}
    save_file(sd, path / "model.safetensors", metadata={"format": "pt"})
    (path / "config.json").write_text(json.dumps(hf_cfg, indent=2) + "\n")


__all__ = [
    "config_from_hf",
    "config_to_hf",
    "from_hf_state_dict",
    "from_pretrained",
    "save_pretrained",
    "to_hf_state_dict",
]
