"""render_yarn draws exactly the frequencies minir1.model.rope computes (headless, Agg backend)."""

import math

import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.figure import Figure

from minir1 import ModelConfig
from minir1.model.rope import rope_frequencies
from minir1.viz.rope import render_yarn, yarn_config


def _line(ax, label):
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == label]
    return torch.tensor(line.get_ydata(), dtype=torch.float64)


@pytest.fixture
def v3_fig():
    fig = render_yarn()  # V3 defaults
    yield fig
    plt.close(fig)


def test_returns_three_labelled_panels(v3_fig):
    assert isinstance(v3_fig, Figure)
    ax_wave, ax_turn, ax_ramp = v3_fig.axes
    assert {"RoPE", "YaRN"} <= {ln.get_label() for ln in ax_wave.get_lines()}
    assert "rotations over L0" in {ln.get_label() for ln in ax_turn.get_lines()}
    assert "ramp γ_i" in {ln.get_label() for ln in ax_ramp.get_lines()}
    for ax in v3_fig.axes:
        # one point per rotary pair of d^R = 64
        assert len(_line(ax, ax.get_lines()[0].get_label())) == 32
    # V3's correction range (official precompute_freqs_cis)
    assert "[10, 23]" in ax_wave.get_title()
    assert ax_ramp.get_xlabel() and ax_wave.get_ylabel() and ax_wave.get_yscale() == "log"


def test_v3_lines_match_the_model_frequencies(v3_fig):
    ax_wave, ax_turn, ax_ramp = v3_fig.axes
    v3 = ModelConfig.preset("v3")
    plain = rope_frequencies(v3.replace(max_seq_len=v3.original_seq_len)).double()
    torch.testing.assert_close(_line(ax_wave, "RoPE"), 2 * math.pi / plain, rtol=1e-5, atol=0)
    torch.testing.assert_close(_line(ax_wave, "YaRN"), 2 * math.pi / rope_frequencies(v3).double(),
                               rtol=1e-5, atol=0)
    torch.testing.assert_close(_line(ax_turn, "rotations over L0"), 4096 * plain / (2 * math.pi),
                               rtol=1e-5, atol=0)
    ramp = _line(ax_ramp, "ramp γ_i")
    # kept below index 10, divided by s above 23
    assert ramp[:11].eq(0).all() and ramp[23:].eq(1).all()
    assert ((ramp[10:24].diff()) > 0).all()


def test_factor_one_is_plain_rope():
    fig = render_yarn(factor=1.0, original_len=256, dim=16)
    try:
        ax_wave, _, ax_ramp = fig.axes
        torch.testing.assert_close(_line(ax_wave, "YaRN"), _line(ax_wave, "RoPE"))
        assert _line(ax_ramp, "ramp γ_i").eq(0).all()
        assert "YaRN off" in ax_wave.get_title()
    finally:
        plt.close(fig)


def test_yarn_config_round_trips():
    cfg = yarn_config(4.0, 32, 1, original_len=32, dim=16)
    assert cfg.uses_yarn and cfg.max_seq_len == 128 and cfg.qk_rope_head_dim == 16
    assert not yarn_config(1.0, 32, 1, original_len=32, dim=16).uses_yarn
