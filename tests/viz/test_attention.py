import matplotlib.pyplot as plt
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from minir1 import ModelConfig
from minir1.model import kv_cache_bytes_per_token
from minir1.viz.attention import (
    SCHEMES,
    format_cache_table,
    kv_cache_table,
    render_cache_squares,
    render_kv_cache,
)


def _table_for(cfg: ModelConfig, bytes_per_value: int = 2, **kw):
    return {r.scheme: r for r in kv_cache_table(
        n_layers=cfg.n_layers, n_heads=cfg.n_heads, head_dim=cfg.qk_nope_head_dim,
        kv_lora_rank=cfg.kv_lora_rank, rope_dim=cfg.qk_rope_head_dim, v_head_dim=cfg.v_head_dim,
        bytes_per_value=bytes_per_value, **kw)}


@pytest.mark.parametrize("preset", ["tiny", "small", "v2-lite", "v3"])
@pytest.mark.parametrize("bytes_per_value", [1, 2, 4])
def test_table_matches_library_cache_bytes(preset, bytes_per_value):
    cfg = ModelConfig.preset(preset)
    rows = _table_for(cfg, bytes_per_value, n_groups=1)
    assert rows["MLA"].bytes_per_token == kv_cache_bytes_per_token(cfg, "absorbed", bytes_per_value)
    assert rows["MHA"].bytes_per_token == kv_cache_bytes_per_token(cfg, "naive", bytes_per_value)


def test_v3_numbers_from_the_facts_sheet():
    rows = {r.scheme: r for r in kv_cache_table(context=131072)}  # defaults: V3 shapes, bf16, GQA-8
    assert rows["MLA"].values_per_layer == 576 == 512 + 64
    assert rows["MHA"].values_per_layer == 40_960 == 128 * (192 + 128)
    assert rows["GQA"].values_per_layer == 8 * 320
    assert rows["MQA"].values_per_layer == 320
    assert rows["MLA"].bytes_per_token == 70_272  # 61 x 576 x 2 B = 68.6 KiB
    assert rows["MHA"].values_per_layer / rows["MLA"].values_per_layer == pytest.approx(
        71.1, abs=0.05)
    assert rows["MLA"].total_bytes == 70_272 * 131072
    assert rows["MLA"].total_gb == pytest.approx(9.21, abs=0.01)


def test_groups_interpolate_between_mha_and_mqa():
    mha = {r.scheme: r for r in kv_cache_table(n_heads=16, n_groups=16)}
    mqa = {r.scheme: r for r in kv_cache_table(n_heads=16, n_groups=1)}
    assert mha["GQA"].bytes_per_token == mha["MHA"].bytes_per_token
    assert mqa["GQA"].bytes_per_token == mqa["MQA"].bytes_per_token


def test_total_scales_with_context_and_batch():
    one = kv_cache_table(context=1000, batch=1)
    many = kv_cache_table(context=3000, batch=5)
    for a, b in zip(one, many, strict=True):
        assert b.total_bytes == 15 * a.total_bytes == 15 * 1000 * a.bytes_per_token


@pytest.mark.parametrize("kw", [dict(n_groups=3), dict(n_groups=0), dict(n_groups=256),
                                dict(context=0), dict(rope_dim=-1), dict(bytes_per_value=0)])
def test_bad_arguments_raise(kw):
    with pytest.raises(ValueError):
        kv_cache_table(**kw)


def test_format_table_lists_every_scheme():
    text = format_cache_table(kv_cache_table())
    assert len(text.splitlines()) == 1 + len(SCHEMES)
    assert "70,272" in text and "71.1" in text


def test_render_kv_cache_bars_are_the_table():
    kw = dict(n_layers=27, n_heads=16, head_dim=128, n_groups=4, kv_lora_rank=512, rope_dim=64,
              context=32768, batch=2, bytes_per_value=2)
    fig = render_kv_cache(**kw)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    bars = [p.get_height() for p in fig.axes[0].patches]
    assert bars == pytest.approx([r.total_gb for r in kv_cache_table(**kw)])
    # one curve per scheme, the GPU line, the context line
    assert len(fig.axes[1].lines) == len(SCHEMES) + 2
    plt.close(fig)


def test_render_kv_cache_accepts_any_slider_values():
    fig = render_kv_cache(n_heads=12, n_groups=7, rope_dim=0, context=5000, bytes_per_value=1)
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert "GQA (6 groups)" in labels  # rounded down to a divisor of n_heads
    plt.close(fig)


def test_render_cache_squares_to_scale():
    fig = render_cache_squares()  # V3: 640 + 40 + 5 + 9 squares of 64 numbers
    squares = [p for p in fig.axes[0].patches if isinstance(p, Rectangle)]
    assert len(squares) == 640 + 40 + 5 + 9
    plt.close(fig)
