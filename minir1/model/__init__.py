"""The DeepSeek-V3 model, one module per paper component."""

from minir1.model.mla import MLA, LatentCache
from minir1.model.moe import MLP, Gate, MoE, max_violation, sequence_balance
from minir1.model.mtp import MTPModule
from minir1.model.norm import RMSNorm
from minir1.model.params import ParamCount, count_params, kv_cache_bytes_per_token
from minir1.model.transformer import IGNORE_INDEX, Block, Transformer, TransformerOutput

__all__ = [
           "IGNORE_INDEX",
           "MLA",
           "MLP",
           "Block",
           "Gate",
           "LatentCache",
           "MTPModule",
           "MoE",
           "ParamCount",
           "RMSNorm",
           "Transformer",
           "TransformerOutput",
           "count_params",
           "kv_cache_bytes_per_token",
           "max_violation",
           "sequence_balance",
]
