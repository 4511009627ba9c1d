"""Tensor-core accumulation: limited-precision sums and promotion to fp32."""

import numpy as np
import pytest


def test_accumulation_error_grows_with_k_without_promotion_and_not_with_it():
    from minir1.fp8.accum import tc_matmul

    rng = np.random.default_rng(0)
    errors = {}
    for K in (256, 4096):
        a = rng.standard_normal((16, K)).astype(np.float32)
        b = rng.standard_normal((16, K)).astype(np.float32)
        exact = a.astype(np.float64) @ b.astype(np.float64).T
        for promote in (None, 128):
            c = tc_matmul(a, b, promote_every=promote)
            errors[K, promote] = np.linalg.norm(c - exact) / np.linalg.norm(exact)
    assert errors[4096, None] > 2.5 * errors[256, None]  # grows with K
    assert errors[4096, 128] < 1.5 * errors[256, 128]  # promotion keeps it flat
    assert errors[4096, 128] < errors[4096, None] / 3


def test_accumulation_with_enough_bits_is_exact_fp32():
    from minir1.fp8.accum import tc_matmul

    rng = np.random.default_rng(1)
    a = rng.standard_normal((8, 512)).astype(np.float32)
    b = rng.standard_normal((8, 512)).astype(np.float32)
    exact = a.astype(np.float64) @ b.astype(np.float64).T
    np.testing.assert_allclose(tc_matmul(a, b, acc_bits=52, promote_every=128), exact,
                               rtol=1e-6, atol=1e-5)
    with pytest.raises(ValueError, match="promote_every"):
        tc_matmul(a, b, promote_every=100)
