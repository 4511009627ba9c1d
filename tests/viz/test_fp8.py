import pytest

from minir1.viz.fp8 import (
    BLOCKS,
    bits_of,
    outlier_activations,
    quantization_stats,
    render_explorer,
    render_grids,
)


def test_bits_of_known_values():
    assert bits_of(1.0, "e4m3") == "0|0111|000"  # 2^(7 - 7) * 1.0
    assert bits_of(-448.0, "e4m3") == "1|1111|110"  # the largest E4M3 value (1111|111 is NaN)
    assert bits_of(57344.0, "e5m2") == "0|11110|11"
    assert bits_of(2.0**-9, "e4m3") == "0|0000|001"  # the smallest subnormal


def test_explorer_stats_show_why_fine_grained_scaling_exists():
    x = outlier_activations(1e4)
    tile = quantization_stats(x, "e4m3", "1x128 tiles")
    tensor = quantization_stats(x, "e4m3", "per tensor")
    raw = quantization_stats(x, "e4m3", "no scaling")
    assert raw["overflow"] > 0 and tile["overflow"] == tensor["overflow"] == 0
    assert tensor["median_rel"] > 2 * tile["median_rel"] and tensor["flushed"] > tile["flushed"]


@pytest.mark.parametrize("block", list(BLOCKS))
def test_render_explorer_for_every_block(block):
    fig = render_explorer("e4m3", block, 1000.0)
    assert "flushed" in fig.axes[0].get_title()


def test_render_grids_and_bad_block():
    assert len(render_grids().axes) == 1
    with pytest.raises(ValueError, match="block="):
        render_explorer("e4m3", "2x2", 1.0)
