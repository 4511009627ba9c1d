"""FP8 mixed-precision training, simulated faithfully on any CPU (DeepSeek-V3 §3.3):

- ``formats``: E4M3 and E5M2 bit by bit, rounding as torch's casts do
- ``quant``: fine-grained scaling, one scale per 1x128 tile or 128x128 block (§3.3.2, Fig. 7a)
- ``gemm``: the FP8 GEMM with fp32 promotion every 128 inner elements (Fig. 7b)
- ``accum``: an emulator of the tensor core's ~14-bit accumulation, and of promotion (numba)
- ``linear``: ``Fp8Linear`` (all three GEMMs of a Linear in FP8, Fig. 6) and ``convert_to_fp8``
- ``speed``: the FP8 GEMM timed against a bf16 matmul, and its distance from the simulation

Whether training in FP8 tracks FP32 is an experiment, not numerics: ``minir1.train.fp8_fidelity``.
"""

from minir1.fp8.formats import E4M3, E5M2, FP8Format, all_values, decode, encode, round_to_format
from minir1.fp8.gemm import fp8_gemm, fp8_matmul
from minir1.fp8.linear import Fp8Linear, Fp8Recipe, convert_to_fp8
from minir1.fp8.quant import dequantize, fake_quantize, quantize
from minir1.utils import lazy_submodules

__getattr__, __dir__ = lazy_submodules(__name__, ('accum', 'formats', 'gemm', 'linear', 'quant',
                                                  'speed'))

__all__ = ["E4M3", "E5M2", "FP8Format", "Fp8Linear", "Fp8Recipe", "all_values", "convert_to_fp8",
           "decode", "dequantize", "encode", "fake_quantize", "fp8_gemm", "fp8_matmul", "quantize",
           "round_to_format"]
