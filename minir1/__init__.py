"""minir1: DeepSeek-V3 and R1, rebuilt small enough to train on a laptop, faithful enough to load the real thing."""

from minir1.config import ModelConfig
from minir1.model import LatentCache, Transformer, TransformerOutput, count_params
from minir1.utils import show_source

__version__ = "0.1.0"

__all__ = [
           "LatentCache",
           "ModelConfig",
           "Transformer",
           "TransformerOutput",
           "__version__",
           "count_params",
           "show_source",
]
