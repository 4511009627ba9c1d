"""Inference: sampling through the latent cache, and speculative decoding with the MTP drafter."""

from minir1.infer.generate import generate, inverse_cdf, sample
from minir1.infer.speculative import SpeculativeResult, speculative_generate

__all__ = ["SpeculativeResult", "generate", "inverse_cdf", "sample", "speculative_generate"]
