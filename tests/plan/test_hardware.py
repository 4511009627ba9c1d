import pytest

from minir1.plan import hardware


def test_links_and_peaks():
    assert hardware.NVLINK_GBPS / hardware.IB_GBPS == pytest.approx(3.2)  # V3 §3.2.2
    h800 = hardware.get_gpu("H800")
    assert h800.peak_flops("fp8") == pytest.approx(2 * h800.peak_flops("bf16"), rel=1e-3)
    node = hardware.get_gpu("8x H800")
    assert node.usable_bytes == pytest.approx(8 * h800.usable_bytes)
    assert hardware.get_gpu("rtx 3080").usable_bytes == (10 - 1) * 2**30


def test_unknown_gpu_names_the_choices():
    with pytest.raises(ValueError, match=r"gpu='a100': unknown GPU; choose one of \['8xh800'"):
        hardware.get_gpu("a100")
