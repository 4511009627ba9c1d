"""Inference: sampling through the latent cache, and speculative decoding with the MTP drafter."""

from minir1.infer.generate import generate
from minir1.infer.speculative import SpeculativeResult, speculative_generate

__all__ = ["SpeculativeResult", "generate", "speculative_generate"]
