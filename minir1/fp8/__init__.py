"""FP8 mixed-precision training, simulated faithfully on any CPU (DeepSeek-V3 §3.3)."""

from minir1.fp8.formats import E4M3, E5M2, FP8Format, all_values, decode, encode, round_to_format
from minir1.fp8.gemm import fp8_gemm, fp8_matmul
from minir1.fp8.linear import Fp8Linear, Fp8Recipe, convert_to_fp8
from minir1.fp8.quant import dequantize, fake_quantize, quantize

__all__ = ["E4M3", "E5M2", "FP8Format", "Fp8Linear", "Fp8Recipe", "all_values", "convert_to_fp8", "decode",
           "dequantize", "encode", "fake_quantize", "fp8_gemm", "fp8_matmul", "quantize", "round_to_format"]
