import matplotlib.pyplot as plt
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from minir1.viz.mtp import expected_tokens_per_pass, render_mtp_chain, render_speculative_speedup


def test_one_draft_is_one_plus_acceptance():
    for a in (0.0, 0.3, 0.85, 0.9, 1.0):
        assert expected_tokens_per_pass(a) == pytest.approx(1 + a)
    # V3 §5.4.3: 85-90% acceptance of the second token bounds the speed-up at 1.85-1.90x (1.8x
    # measured)
    assert 1.8 < expected_tokens_per_pass(0.85) < expected_tokens_per_pass(0.90) <= 1.9


def test_chained_drafts_are_a_geometric_sum():
    a = 0.8
    assert expected_tokens_per_pass(a, 3) == pytest.approx(1 + a + a**2 + a**3)
    assert expected_tokens_per_pass(a, 0) == 1.0
    assert expected_tokens_per_pass(1.0, 4) == 5.0  # every draft accepted: n + 1 tokens per pass
    # per-depth rates: the third token counts only when the second was accepted too
    assert expected_tokens_per_pass([0.9, 0.5]) == pytest.approx(1 + 0.9 + 0.9 * 0.5)
    assert expected_tokens_per_pass([0.9, 0.5], 2) == pytest.approx(1.0 + 0.9 + 0.45)


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_rates_outside_unit_interval_are_rejected(bad):
    with pytest.raises(ValueError, match="acceptance"):
        expected_tokens_per_pass(bad)
    with pytest.raises(ValueError, match="acceptance"):
        expected_tokens_per_pass([0.5, bad])


def test_inconsistent_draft_counts_are_rejected():
    with pytest.raises(ValueError, match="n_drafts"):
        expected_tokens_per_pass([0.5, 0.5], 3)
    with pytest.raises(ValueError, match="n_drafts"):
        expected_tokens_per_pass(0.5, -1)


def _texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


@pytest.mark.parametrize("depth", [0, 1, 2, 3])
def test_chain_shows_what_each_depth_predicts(depth):
    seq_len, position = 8, 1
    fig = render_mtp_chain(seq_len=seq_len, depth=depth, position=position)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert len(ax.get_yticks()) == depth + 2  # tokens, main model, depths 1..D
    texts = _texts(fig)
    # depth k at position i predicts t_{i+k+1} and reads Emb(t_{i+k}); no target beyond the window
    n_reads = sum(seq_len - k - 1 for k in range(1, depth + 1))
    assert sum(t.startswith("+ Emb(") for t in texts) == n_reads
    for k in range(1, depth + 1):
        assert f"+ Emb($t_{{{position + k}}}$)" in texts
        assert f"$t_{{{position + k + 1}}}$" in texts
    n_boxes_with_target = sum(seq_len - k - 1 for k in range(depth + 1))
    assert sum(t == "-" for t in texts) == (depth + 1) * seq_len - n_boxes_with_target
    title = ax.get_title()
    assert ", ".join(f"$t_{{{position + k + 1}}}$" for k in range(depth + 1)) in title
    plt.close("all")


def test_chain_boxes_rings_and_arrows():
    seq_len, depth, position = 7, 2, 3
    ax = render_mtp_chain(seq_len=seq_len, depth=depth, position=position).axes[0]
    boxes = [p for p in ax.patches if isinstance(p, FancyBboxPatch)]
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    rings = [b for b in boxes if b.get_facecolor()[3] == 0]
    assert len(boxes) == seq_len * (depth + 2) + len(rings) and len(rings) == depth + 1
    # one ring per depth, around the token it predicts at `position`, on the token row
    centres = sorted(round(r.get_x() + r.get_width() / 2, 6) for r in rings)
    assert centres == [position + k + 1 for k in range(depth + 1)]
    assert all(abs(r.get_y() + r.get_height() / 2) < 1e-9 for r in rings)
    # the hidden state passed up: one arrow per level in the position's column, below each depth
    assert len(arrows) == depth + 1
    dashed = [b for b in boxes if b.get_linestyle() == "--"]  # no target inside the window
    assert len(dashed) == sum(k + 1 for k in range(depth + 1))
    plt.close("all")


@pytest.mark.parametrize("kwargs", [dict(depth=-1), dict(seq_len=3, depth=2, position=1),
                                    dict(seq_len=8, depth=2, position=6), dict(position=0)])
def test_chain_rejects_windows_without_a_target(kwargs):
    with pytest.raises(ValueError):
        render_mtp_chain(**kwargs)


def test_speedup_plot_marks_the_point_and_the_measurements():
    fig = render_speculative_speedup(0.8, 2, measured={"tiny": 0.75, "other": 0.5}, max_drafts=3)
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert {"1 draft", "2 drafts", "3 drafts"} <= set(labels)
    assert any(label.startswith("tiny: a = 75%") for label in labels)
    assert any("1.8x" in label for label in labels)
    assert f"{expected_tokens_per_pass(0.8, 2):.2f}" in ax.get_title()
    plt.close("all")


@pytest.mark.parametrize("kwargs", [dict(acceptance=1.2), dict(n_drafts=0), dict(n_drafts=5),
                                    dict(measured={"x": 2.0})])
def test_speedup_plot_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        render_speculative_speedup(**kwargs)
