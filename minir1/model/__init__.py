"""The DeepSeek-V3 model, one module per paper component (imports run top to bottom, no cycles):

- ``norm``: RMSNorm;  ``rope``: RoPE and YaRN (V3 §2.1.1, §4.3)
- ``derived``: weights derived from parameters and cached while sampling (inference only)
- ``mla``: Multi-head Latent Attention and its latent cache (V3 Eqs. 1-11)
- ``moe``: DeepSeekMoE, the gate, dispatch, aux-loss-free balancing (V3 Eqs. 12-20)
- ``grouped``: the routed experts in grouped GEMMs without a host sync (a GPU shortcut)
- ``init``: building modules without default initialisers, or on the meta device
- ``block``: the Transformer block (MLA + dense FFN or MoE)
- ``mtp``: Multi-Token Prediction modules (V3 Eqs. 21-25)
- ``transformer``: the model and its losses
- ``params``: parameters, KV-cache bytes and FLOPs counted on the meta device
"""

from minir1.model.block import Block
from minir1.model.mla import MLA, LatentCache
from minir1.model.moe import MLP, Gate, MoE, max_violation, sequence_balance
from minir1.model.mtp import MTPModule
from minir1.model.norm import RMSNorm
from minir1.model.params import ParamCount, count_params, kv_cache_bytes_per_token
from minir1.model.transformer import IGNORE_INDEX, Transformer, TransformerOutput
from minir1.utils import lazy_submodules

__getattr__, __dir__ = lazy_submodules(__name__, ('block', 'derived', 'grouped', 'init', 'mla',
                                                  'moe', 'mtp', 'norm', 'params', 'rope',
                                                  'transformer'))

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
