import pytest


def _has_scaled_mm():
    from minir1.fp8.gemm import scaled_mm_available

    return scaled_mm_available()


needs_scaled_mm = pytest.mark.skipif(not _has_scaled_mm(),
                                     reason="torch._scaled_mm has no CPU kernel here")
