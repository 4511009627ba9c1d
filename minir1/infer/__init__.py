"""Inference (imports from config, model and data only):

- ``generate``: batched sampling through the MLA latent cache (left padding, temperature, top-p,
  stop tokens, log-probs); ``stream_tokens``, the same loop for one prompt yielding each token as
  it is drawn
- ``speculative``: greedy speculative decoding with the MTP module as the drafter (V3 §5.4.3)
"""

from minir1.infer.generate import generate, inverse_cdf, sample, stream_tokens
from minir1.infer.speculative import SpeculativeResult, speculative_generate
from minir1.utils import lazy_submodules

__getattr__, __dir__ = lazy_submodules(__name__, ('generate', 'speculative'))

__all__ = ["SpeculativeResult", "generate", "inverse_cdf", "sample", "speculative_generate",
           "stream_tokens"]
