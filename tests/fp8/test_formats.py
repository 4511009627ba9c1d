"""FP8 formats (E4M3, E5M2): encoding, rounding and decoding against torch's float8 casts."""

import numpy as np
import pytest
import torch

from minir1.fp8 import E4M3, E5M2, all_values, decode, encode, round_to_format

FMTS = [E4M3, E5M2]


def torch_codes(x: np.ndarray, fmt) -> np.ndarray:
    return torch.from_numpy(x).to(fmt.dtype).view(torch.uint8).numpy()


@pytest.mark.parametrize("fmt", FMTS, ids=lambda f: f.name)
def test_every_float16_value_encodes_like_torch(fmt):
    # incl. inf, NaN, subnormals
    x = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
    np.testing.assert_array_equal(encode(x, fmt), torch_codes(x, fmt))


@pytest.mark.parametrize("fmt", FMTS, ids=lambda f: f.name)
def test_a_million_random_float32_encode_like_torch(fmt):
    rng = np.random.default_rng(0)
    every_pattern = (rng.integers(0, 1 << 32, 500_000, dtype=np.uint64).astype(np.uint32)
                     .view(np.float32))
    log_uniform = (rng.standard_normal(500_000)
                   * np.exp(rng.uniform(-30, 30, 500_000))).astype(np.float32)
    x = np.concatenate([every_pattern, log_uniform])  # out-of-range, NaN and inf included
    np.testing.assert_array_equal(encode(x, fmt), torch_codes(x, fmt))


def test_format_constants():
    assert (E4M3.max, E4M3.min_normal, E4M3.min_subnormal) == (448.0, 2**-6, 2**-9)
    assert (E5M2.max, E5M2.min_normal, E5M2.min_subnormal) == (57344.0, 2**-14, 2**-16)
    assert all_values(E4M3)[-1] == 448 and len(all_values(E4M3)) == 127  # 0x00..0x7E
    assert all_values(E5M2)[-1] == 57344 and len(all_values(E5M2)) == 124  # exponents 0..30


def test_rounding_ties_to_even_and_subnormals():
    # 1 + 1/16 lies halfway between 1 and 1.125 (E4M3): ties go to the even mantissa, 1
    assert round_to_format(np.float32([1 + 1 / 16, 1 + 3 / 16]), E4M3).tolist() == [1.0, 1.25]
    # half the smallest subnormal rounds to zero (even); a little more rounds up
    tiny = E4M3.min_subnormal
    assert round_to_format(np.float32([tiny / 2, tiny * 0.51, tiny * 1.5]), E4M3).tolist() == [
        0, tiny, 2 * tiny]


def test_overflow_policies():
    big = np.float32([464, 480, 1e6, np.inf, -np.inf])
    assert round_to_format(big, E4M3).tolist() == [448, 448, 448, 448, -448]  # saturates
    assert round_to_format(np.float32([57344, 61439, 61440, np.inf]), E5M2).tolist() == [
        57344, 57344, np.inf, np.inf]  # overflows to infinity past the rounding midpoint
    assert np.isnan(round_to_format(np.float32([np.nan]), E4M3)).all()
    nans = np.uint8([0x7F, 0xFF])
    assert decode(nans, E4M3).tolist() != decode(nans, E4M3).tolist()  # NaN


def test_decode_is_the_inverse_on_every_code():
    for fmt in FMTS:
        codes = np.arange(256, dtype=np.uint8)
        values = decode(codes, fmt)
        finite = np.isfinite(values)
        ref = torch.from_numpy(codes).view(fmt.dtype).float().numpy()
        np.testing.assert_array_equal(values[finite], ref[finite])
        np.testing.assert_array_equal(np.isnan(values), np.isnan(ref))
        roundtrip = encode(values[finite], fmt)
        np.testing.assert_array_equal(decode(roundtrip, fmt), values[finite])
