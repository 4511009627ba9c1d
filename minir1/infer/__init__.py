"""Inference: sampling through the latent cache."""

from minir1.infer.generate import generate

__all__ = ["generate"]
