"""RoPE and YaRN: the rotation, relative positions, V3's frequency blend, the real and complex
forms."""

import pytest
import torch

from minir1 import ModelConfig
from minir1.model.rope import (
    apply_rope,
    rope_cos_sin,
    rope_frequencies,
    rope_real,
    yarn_correction_range,
)
from tests.conftest import small_cfg


def test_rope_rotates_interleaved_pairs_like_complex_multiplication():
    cfg = small_cfg()
    cos, sin = rope_cos_sin(cfg)
    x = torch.randn(2, 10, 3, cfg.qk_rope_head_dim)
    ref = torch.view_as_complex(x.unflatten(-1, (-1, 2)).contiguous())
    rot = torch.polar(torch.ones_like(cos[:10]), torch.atan2(sin[:10], cos[:10]))
    ref = torch.view_as_real(ref * rot[None, :, None])
    torch.testing.assert_close(apply_rope(x, cos[:10], sin[:10]), ref.flatten(-2))


def test_rope_scores_depend_only_on_relative_position():
    cfg = small_cfg()
    cos, sin = rope_cos_sin(cfg)
    q, k = torch.randn(cfg.qk_rope_head_dim), torch.randn(cfg.qk_rope_head_dim)
    def score(m, n):
        qm = apply_rope(q.view(1, 1, -1), cos[m:m + 1], sin[m:m + 1])
        kn = apply_rope(k.view(1, 1, -1), cos[n:n + 1], sin[n:n + 1])
        return (qm * kn).sum()
    torch.testing.assert_close(score(7, 3), score(30, 26), atol=1e-5, rtol=1e-5)


def test_yarn_v3_correction_range_and_blend():
    cfg = ModelConfig.preset("v3")
    # as the official precompute_freqs_cis gives for V3
    assert yarn_correction_range(32, 1, 64, 10000.0, 4096) == (10, 23)
    base = 1.0 / (10000.0 ** (torch.arange(0, 64, 2, dtype=torch.float32) / 64))
    f = rope_frequencies(cfg)
    torch.testing.assert_close(f[:10], base[:10])  # high frequencies kept
    torch.testing.assert_close(f[24:], base[24:] / 40)  # low frequencies interpolated by s = 40
    assert torch.all(f[10:24] <= base[10:24]) and torch.all(f[10:24] >= base[10:24] / 40)
    no_yarn = ModelConfig.preset("v3", max_seq_len=4096)
    torch.testing.assert_close(rope_frequencies(no_yarn), base)
    assert no_yarn.softmax_scale == pytest.approx(192**-0.5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_complex_rope_equals_real_rope(dtype):
    cos, sin = rope_cos_sin(small_cfg())
    wide = torch.randn(2, 9, 3, 1 + 16 + 16).to(dtype)
    # odd offset: the pairs must be copied
    for x in (wide[..., 1:17], wide[..., 17:], wide[:, :, 0, 17:]):
        torch.testing.assert_close(apply_rope(x, cos[:9], sin[:9]), rope_real(x, cos[:9], sin[:9]))
        assert apply_rope(x, cos[:9], sin[:9]).dtype == dtype
