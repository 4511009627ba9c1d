"""transformers interop: read and write the Hugging Face hub layout of DeepSeek-V3 (and read V2's).

A hub directory holds ``config.json`` (``DeepseekV3Config`` fields) and ``model.safetensors`` (or
shards with an index) with keys such as ``model.layers.{i}.self_attn.q_a_proj.weight`` and
per-expert ``model.layers.{i}.mlp.experts.{e}.gate_proj.weight``. The renaming is the map of the
official ``inference/convert.py`` (DeepSeek-V3 repository). MTP modules, which transformers does not
run, are stored the way the V3 checkpoint stores its layer 61: as extra layers
``model.layers.{n_layers + k - 1}`` with ``enorm``, ``hnorm``, ``eh_proj`` and ``shared_head.norm``.
The released V3/R1 weights are FP8 E4M3 with one fp32 ``weight_scale_inv`` per 128x128 block
(README_WEIGHTS); ``from_pretrained`` dequantises them with ``minir1.fp8`` (whose ``Fp8Linear``
re-quantises them to the very same FP8 values) and can read a few layers alone. V2 and V2-Lite
(``deepseek_v2``: softmax router, no bias) load into the same model.

``transformers`` itself is not needed here: only ``safetensors`` and ``json``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from minir1.config import ModelConfig
from minir1.fp8.quant import dequantize
from minir1.model.init import meta_init
from minir1.model.transformer import Transformer
from minir1.weights import CheckpointError, read_safetensors, weight_map

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
# the MTP layer's copies of the shared embedding and head (README_WEIGHTS)
_MTP_COPIES = ("embed_tokens.", "shared_head.head.")
# model_type -> (scoring_func, topk_method values, norm_topk_prob): the routers minir1's Gate
# expresses. V3/R1: sigmoid, group top-2 sums with the bias (noaux_tc), normalised (V3 Eqs. 15-16,
# 13). V2: softmax, unnormalised, groups scored by their best expert (group_limited_greedy).
ROUTERS = {"deepseek_v3": ("sigmoid", ("noaux_tc",), True),
           "deepseek_v2": ("softmax", ("greedy", "group_limited_greedy"), False)}


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

    model_type = d.get("model_type", "deepseek_v3")
    if model_type not in ROUTERS:
        raise unsupported("model_type", "expected 'deepseek_v3' (V3, R1) or 'deepseek_v2' "
                          "(V2, V2-Lite)")
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
    score_func, topk_methods, normalised = ROUTERS[model_type]
    # transformers writes None for the fields its own class does not read
    if (d.get("scoring_func") or score_func) != score_func:
        raise unsupported("scoring_func", f"{model_type} routes with {score_func}")
    topk_method = d.get("topk_method") or topk_methods[0]
    if topk_method not in topk_methods:
        raise unsupported("topk_method", f"{model_type} selects experts by {topk_methods}")
    if d.get("norm_topk_prob") not in (None, normalised):
        raise unsupported("norm_topk_prob", "sigmoid weights are normalised over the selected "
                          "experts (V3 Eq. 13), softmax weights are not (V2, and the official "
                          "inference Gate)")
    if (d.get("moe_layer_freq") or 1) != 1:
        raise unsupported("moe_layer_freq", "every layer after first_k_dense_replace is MoE")
    # V2-Lite's "greedy" ignores groups; V2's "group_limited_greedy" and V3's "noaux_tc" use them
    grouped = topk_method != "greedy"
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
        n_activated_experts=d["num_experts_per_tok"],
        n_expert_groups=(d.get("n_group") or 1) if grouped else 1,
        n_limited_groups=(d.get("topk_group") or 1) if grouped else 1, score_func=score_func,
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
            if depth >= cfg.n_mtp_modules or rest.startswith(_MTP_COPIES):
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


# ------------------------------------------------------------------------------------------ FP8
FP8_BLOCK = (128, 128)  # README_WEIGHTS (DeepSeek-V3): "128x128 block scaling"


def fp8_block_size(raw: dict[str, Any]) -> tuple[int, int]:
    """The scale block of a ``config.json``'s ``quantization_config`` (V3/R1: ``quant_method``
    "fp8", ``fmt`` "e4m3", ``weight_block_size`` [128, 128]); ValueError for another scheme."""
    q = raw.get("quantization_config")
    if q is None:
        return FP8_BLOCK
    if q.get("quant_method") != "fp8" or q.get("fmt", "e4m3") != "e4m3":
        raise ValueError(f"config.json quantization_config={q!r}: only quant_method 'fp8' with "
                         "fmt 'e4m3' (DeepSeek-V3's block-scaled weights) can be dequantised")
    block = q.get("weight_block_size") or FP8_BLOCK
    if len(block) != 2 or not all(isinstance(b, int) and b > 0 for b in block):
        raise ValueError(f"config.json quantization_config.weight_block_size={block!r}: "
                         "must be [rows, cols], two positive integers")
    return block[0], block[1]


def dequantize_fp8(sd: dict[str, torch.Tensor], block: tuple[int, int] = FP8_BLOCK,
                   dtype: torch.dtype = torch.bfloat16) -> dict[str, torch.Tensor]:
    """Every FP8 ``{name}.weight`` with its ``{name}.weight_scale_inv`` -> ``weight * scale`` per
    ``block`` (README_WEIGHTS "Dequantization Method"; the official ``weight_dequant``) in
    ``dtype``; other tensors pass through. ``sd`` is emptied as it goes, so the FP8 copies are
    freed while the dequantised ones are made. CheckpointError for a weight without its scale,
    a scale without its weight, or a scale whose grid does not match the weight's blocks."""
    out = {}
    for key in list(sd):
        if key.endswith("_scale_inv"):
            weight = key.removesuffix("_scale_inv")
            if weight not in sd and weight not in out:
                raise CheckpointError(f"{key}: a block scale without its weight")
            continue
        tensor = sd.pop(key)
        scale = sd.pop(key + "_scale_inv", None)
        if scale is None:
            if tensor.dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
                raise CheckpointError(f"{key} is stored in {tensor.dtype} without "
                                      f"{key}_scale_inv: an FP8 weight needs its block scales")
            out[key] = tensor
            continue
        if tensor.dtype != torch.float8_e4m3fn or tensor.dim() != 2:
            raise CheckpointError(f"{key}_scale_inv scales a {tensor.dtype} tensor of shape "
                                  f"{tuple(tensor.shape)}: expected a 2-D float8_e4m3fn weight")
        grid = tuple(-(-n // b) for n, b in zip(tensor.shape, block, strict=True))
        if tuple(scale.shape) != grid:
            raise CheckpointError(
                f"{key}_scale_inv has shape {tuple(scale.shape)}: a {tuple(tensor.shape)} weight "
                f"in {block[0]}x{block[1]} blocks (the last ones partial) needs {grid}")
        out[key] = dequantize(tensor, scale.float(), block, dtype)
    return out


# ------------------------------------------------------------------------------------------ files
# A part of a checkpoint: a layer index (the MTP modules follow the main layers, as V3's layer 61
# does) or one of the tensors around the layers.
Part = int | str
_TOP = {"model.embed_tokens.weight": "embed", "model.norm.weight": "norm",
        "lm_head.weight": "head"}


def _hub_part(key: str) -> Part | None:
    m = re.match(r"model\.layers\.(\d+)\.", key)
    return int(m[1]) if m else _TOP.get(key)


def _our_part(name: str, cfg: ModelConfig) -> Part:
    if m := re.match(r"(layers|mtp)\.(\d+)\.", name):
        return int(m[2]) + (cfg.n_layers if m[1] == "mtp" else 0)
    return name.removesuffix(".weight")


def _module(model: Transformer, part: Part) -> nn.Module:
    if isinstance(part, str):
        return getattr(model, part)
    n = model.cfg.n_layers
    return model.layers[part] if part < n else model.mtp[part - n]


def _wanted(key: str, cfg: ModelConfig, parts: set[Part] | None) -> bool:
    """Whether ``from_pretrained`` reads ``key``: not the MTP layer's copies of the embedding and
    head (README_WEIGHTS: they share the main model's), nor MTP layers beyond the depth."""
    part = _hub_part(key)
    if isinstance(part, int) and part >= cfg.n_layers:
        rest = key.split(".", 3)[3]
        if part >= cfg.n_layers + cfg.n_mtp_modules or rest.startswith(_MTP_COPIES):
            return False
    return parts is None or part in parts


def _check_parts(layers: Iterable[Part] | None, cfg: ModelConfig) -> set[Part] | None:
    if layers is None:
        return None
    parts, n = set(layers), cfg.n_layers + cfg.n_mtp_modules
    for p in parts:
        if not (p in _TOP.values() or (type(p) is int and 0 <= p < n)):
            raise ValueError(f"layers: {p!r} is not a part of this checkpoint: choose layer "
                             f"indices 0..{n - 1} (num_hidden_layers={cfg.n_layers}, then "
                             f"{cfg.n_mtp_modules} MTP) or 'embed', 'norm', 'head'")
    return parts


def _declared_dtype(raw: dict[str, Any]) -> torch.dtype:
    """The dtype ``config.json`` declares for the unquantised weights (V3: ``torch_dtype``
    bfloat16), which the FP8 ones are dequantised to."""
    dtype = getattr(torch, str(raw.get("torch_dtype") or raw.get("dtype")), None)
    return dtype if isinstance(dtype, torch.dtype) and dtype.is_floating_point else torch.float32


def from_pretrained(path: str | Path, device: torch.device | str = "cpu",
                    dtype: torch.dtype | None = None, *,
                    layers: Iterable[Part] | None = None) -> Transformer:
    """Load a hub-layout directory into a minir1 ``Transformer`` (weights and routing biases).

    Reads what the hub ships for DeepSeek-V3/R1 (``model_type`` deepseek_v3) and V2/V2-Lite
    (deepseek_v2): ``model.safetensors`` or the shards of ``model.safetensors.index.json``; FP8
    weights with their ``weight_scale_inv`` (``quantization_config``), dequantised to ``dtype``
    (default: the ``torch_dtype`` of ``config.json``); the MTP module stored as the layer after
    the main ones (V3: layer 61), whose ``embed_tokens`` and ``shared_head.head`` copies are not
    read, since the model shares its own.

    ``layers`` reads only those parts (layer indices, MTP ones included, and any of "embed",
    "norm", "head"), opening only the shards that hold them: one real layer from a checkpoint too
    large for the machine, even from a copy with just those shards. The rest of the model stays
    on the meta device (shapes, no memory); a loaded block runs on its own.
    """
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.exists():
        raise FileNotFoundError(f"{path}: no config.json")
    raw = json.loads(config_file.read_text())
    files = weight_map(path)
    n_layers = raw["num_hidden_layers"]
    mtp_layers = {int(m[1]) for k in files
                  if (m := re.match(r"model\.layers\.(\d+)\.eh_proj\.", k))}
    n_mtp = sum(1 for k in range(n_layers, n_layers + raw.get("num_nextn_predict_layers", 0))
                if k in mtp_layers)
    cfg = config_from_hf(raw, n_mtp_modules=n_mtp)
    parts = _check_parts(layers, cfg)
    hf_sd = read_safetensors(path, [k for k in files if _wanted(k, cfg, parts)])
    sd = from_hf_state_dict(dequantize_fp8(hf_sd, fp8_block_size(raw),
                                           dtype or _declared_dtype(raw)), cfg)
    with meta_init():
        model = Transformer(cfg)
    missing, unexpected = model.load_state_dict(sd, strict=False, assign=True)
    if unexpected:
        raise KeyError(f"{path}: checkpoint tensors minir1 does not know: {unexpected[:5]}")
    # a checkpoint without routing biases (e.g. V2-style) starts from zero bias, like a fresh model
    missing = [k for k in missing if not k.endswith("ffn.gate.bias")
               and (parts is None or _our_part(k, cfg) in parts)]
    if missing:
        raise KeyError(f"{path}: checkpoint lacks {len(missing)} tensors, e.g. {missing[:5]}")
    for top in [model] if parts is None else [_module(model, p) for p in parts]:
        # non-persistent buffers (expert loads) and absent biases are still on meta
        for module in top.modules():
            for name, buf in list(module.named_buffers(recurse=False)):
                if buf.is_meta:
                    setattr(module, name, torch.zeros(buf.shape, dtype=buf.dtype))
        top.to(device)
        if dtype is not None:
            top.to(dtype)
    return model


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
    "FP8_BLOCK",
    "config_from_hf",
    "config_to_hf",
    "dequantize_fp8",
    "fp8_block_size",
    "from_hf_state_dict",
    "from_pretrained",
    "save_pretrained",
    "to_hf_state_dict",
]
