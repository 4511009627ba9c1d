"""The two FP8 formats of DeepSeek-V3's training recipe, written from their bit layouts (V3 §3.3).

An FP8 number is 1 sign bit, ``e`` exponent bits and ``m`` mantissa bits. With exponent field
``E`` and mantissa field ``M`` it is ``(-1)^s * 2^(E - bias) * (1 + M / 2^m)`` when ``E > 0``
(normal) and ``(-1)^s * 2^(1 - bias) * (M / 2^m)`` when ``E == 0`` (subnormal: the grid continues
evenly down to zero).

* **E4M3** (``torch.float8_e4m3fn``, the one V3 uses on every tensor): bias 7, no infinities; the
  one NaN pattern per sign is ``S.1111.111``, so the largest value is ``1.75 * 2^8 = 448``; the
  smallest subnormal is ``2^-9``.
* **E5M2** (``torch.float8_e5m2``, the older choice for gradients): bias 15, IEEE-like, with
  ``±inf`` at ``S.11111.00`` and NaNs above it; the largest finite value is ``1.75 * 2^15 = 57344``;
  the smallest subnormal is ``2^-16``.

``encode`` rounds float32 values to the nearest representable value, ties to the even mantissa, and
returns the 8-bit codes. What happens beyond the largest finite value is the cast's *overflow
policy*, and it is what torch (2.4 and later) does, which the tests check bit for bit on every
finite float16 and on a million random float32 values:

* E4M3 **saturates**: anything that rounds past 448, including ``±inf``, becomes ``±448``;
* E5M2 **overflows to infinity**: anything that rounds past 57344 becomes ``±inf``;
* NaN stays NaN: the all-ones code ``0x7F``, or ``0xFF`` for a negative NaN, in both formats.

Float32 subnormals (below ``2^-126``) are far below either format's smallest subnormal
and round to ``±0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from minir1.utils import resolve


@dataclass(frozen=True)
class FP8Format:
    name: str
    exp_bits: int
    man_bits: int
    bias: int
    saturate: bool  # overflow policy: clamp to +-max (E4M3) or become +-inf (E5M2)
    dtype: torch.dtype  # torch's float8 dtype with the same bit layout

    @property
    def max(self) -> float:
        """The largest finite value."""
        top = (1 << self.exp_bits) - 1  # all-ones exponent field
        # E4M3fn: the all-ones exponent is a normal binade, minus the NaN mantissa
        if self.saturate:
            return (2.0 ** (top - self.bias)
                    * (1 + ((1 << self.man_bits) - 2) / (1 << self.man_bits)))
        return 2.0 ** (top - 1 - self.bias) * (2 - 2.0 ** -self.man_bits)

    @property
    def min_normal(self) -> float:
        return 2.0 ** (1 - self.bias)

    @property
    def min_subnormal(self) -> float:
        return 2.0 ** (1 - self.bias - self.man_bits)


E4M3 = FP8Format("e4m3", exp_bits=4, man_bits=3, bias=7, saturate=True, dtype=torch.float8_e4m3fn)
E5M2 = FP8Format("e5m2", exp_bits=5, man_bits=2, bias=15, saturate=False, dtype=torch.float8_e5m2)
FORMATS = {"e4m3": E4M3, "e5m2": E5M2}


def get_format(fmt: str | FP8Format) -> FP8Format:
    return resolve(fmt, FORMATS, "fmt")


def encode(x: np.ndarray | torch.Tensor, fmt: str | FP8Format = "e4m3") -> np.ndarray:
    """Float32 values -> FP8 codes (uint8), round-to-nearest-even,
    with the format's overflow policy."""
    f = get_format(fmt)
    a = np.ascontiguousarray(x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else x,
                             dtype=np.float32)
    bits = a.view(np.uint32).astype(np.int64)
    sign = (bits >> 31) << 7
    e32 = (bits >> 23) & 0xFF
    m32 = bits & 0x7FFFFF
    # significand and exponent of |x| = sig * 2^(exp - 23); float32 subnormals are treated as zero
    sig = np.where(e32 > 0, m32 | (1 << 23), 0)
    exp = e32 - 127
    emin = 1 - f.bias
    # the quantum (ulp) of the target grid at this magnitude, then round sig to a multiple of it
    shift = np.maximum(exp, emin) - f.man_bits - exp + 23  # >= 23 - man_bits > 0
    shift = np.minimum(shift, 40)  # beyond this everything rounds to zero anyway
    r = sig >> shift
    rem = sig & ((1 << shift) - 1)
    half = 1 << (shift - 1)
    r = r + ((rem > half) | ((rem == half) & (r & 1 == 1)))
    q = np.maximum(exp, emin) - f.man_bits  # value = r * 2^q
    carry = r >> (f.man_bits + 1)  # rounding overflowed the mantissa: 1.111 -> 10.000
    r, q = r >> carry, q + carry
    normal = r >= (1 << f.man_bits)
    exp_field = np.where(normal, q + f.man_bits + f.bias, 0)
    man_field = np.where(normal, r - (1 << f.man_bits), r)
    top = (1 << f.exp_bits) - 1
    if f.saturate:
        over = (exp_field > top) | ((exp_field == top) & (man_field == (1 << f.man_bits) - 1))
        over_code = (top << f.man_bits) | ((1 << f.man_bits) - 2)  # +-max
    else:
        over = exp_field >= top
        over_code = top << f.man_bits  # +-inf
    code = (exp_field << f.man_bits) | man_field
    # +-inf inputs follow the overflow policy
    code = np.where(over | (e32 == 0xFF), over_code, code)
    code = sign | code
    # NaN: all ones, the input's sign
    code = np.where((e32 == 0xFF) & (m32 != 0), sign | 0x7F, code)
    return code.astype(np.uint8)


def decode(codes: np.ndarray | torch.Tensor, fmt: str | FP8Format = "e4m3") -> np.ndarray:
    """FP8 codes (uint8) -> their exact values as float32."""
    f = get_format(fmt)
    c = np.asarray(codes.cpu().numpy() if isinstance(codes, torch.Tensor)
                   else codes).astype(np.int64)
    sign = np.where(c >> 7, -1.0, 1.0)
    e = (c >> f.man_bits) & ((1 << f.exp_bits) - 1)
    m = c & ((1 << f.man_bits) - 1)
    frac = m / float(1 << f.man_bits)
    value = np.where(e > 0, 2.0 ** (e - f.bias) * (1 + frac), 2.0 ** (1 - f.bias) * frac)
    top = (1 << f.exp_bits) - 1
    if f.saturate:
        value = np.where((e == top) & (m == (1 << f.man_bits) - 1), np.nan, value)
    else:
        value = np.where(e == top, np.where(m == 0, np.inf, np.nan), value)
    return (sign * value).astype(np.float32)


def round_to_format(x: np.ndarray | torch.Tensor, fmt: str | FP8Format = "e4m3") -> np.ndarray:
    """The FP8 value nearest to each input, as float32 (``decode(encode(x))``)."""
    return decode(encode(x, fmt), fmt)


def all_values(fmt: str | FP8Format = "e4m3") -> np.ndarray:
    """Every finite non-negative value of the format, ascending (the grid the lesson draws)."""
    v = decode(np.arange(128, dtype=np.uint8), fmt)
    return np.unique(v[np.isfinite(v)])


__all__ = ["E4M3", "E5M2", "FORMATS", "FP8Format", "all_values", "decode", "encode", "get_format",
           "round_to_format"]
