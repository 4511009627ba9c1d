import pytest
import torch
from matplotlib.figure import Figure

from minir1.rl.grpo import group_advantages
from minir1.viz.grpo import (
    DEFAULT_LENGTH,
    parse_lengths,
    parse_numbers,
    render_advantages,
    token_weights,
)

REWARDS = "1, 0, 0, 1, 1, 0, 0, 0"
R = torch.tensor([1.0, 0, 0, 1, 1, 0, 0, 0])


def heights(ax) -> list[float]:
    (bars,) = ax.containers  # one bar series per panel
    return [b.get_height() for b in bars]


def panels(fig: Figure):
    rewards, advantages, per_token, per_response = fig.axes[:4]
    return rewards, advantages, per_token, per_response


def test_parse_numbers_accepts_commas_spaces_and_semicolons():
    assert parse_numbers(" 1, 0;0.5  -2 ", "rewards") == [1.0, 0.0, 0.5, -2.0]
    assert parse_lengths(None, 3) == [DEFAULT_LENGTH] * 3
    assert parse_lengths("3 5 7", 3) == [3, 5, 7]


@pytest.mark.parametrize("text", ["", "  ,, ", "1, x, 0", "1, nan", "1, inf"])
def test_unparsable_rewards_name_the_argument(text):
    with pytest.raises(ValueError, match="rewards"):
        render_advantages(text)


@pytest.mark.parametrize("lengths", ["3, 4", "3, 4, 0, 1", "3, 4, 2.5, 1", "a b c d"])
def test_bad_lengths_name_the_argument(lengths):
    with pytest.raises(ValueError, match="lengths"):
        render_advantages("1, 0, 1, 0", lengths=lengths)


def test_bad_options_name_the_argument():
    with pytest.raises(ValueError, match="scale"):
        render_advantages(REWARDS, scale="max")
    with pytest.raises(ValueError, match="aggregation"):
        render_advantages(REWARDS, aggregation="batch")


@pytest.mark.parametrize("scale", ["std", "none"])
def test_bars_are_the_library_advantages(scale):
    fig = render_advantages(REWARDS, scale=scale)
    assert isinstance(fig, Figure)
    ax_r, ax_a, _, _ = panels(fig)
    assert heights(ax_r) == pytest.approx(R.tolist())
    expected = group_advantages(R, 8, scale=scale)
    assert heights(ax_a) == pytest.approx(expected.tolist(), abs=1e-6)
    # z-score: correct answers get +(1-p)/std with p = 3/8 correct; mean-only: +(1-p)
    top = (5 / 8) / ((3 / 8 * 5 / 8) ** 0.5 + 1e-4) if scale == "std" else 5 / 8
    assert max(heights(ax_a)) == pytest.approx(top, rel=1e-5)


def test_sequence_weights_divide_by_each_length_token_weights_by_the_total():
    lengths = [4, 16, 8, 2]
    text = ", ".join(map(str, lengths))
    adv = group_advantages(torch.tensor([1.0, 0, 1, 0]), 4)
    seq = render_advantages("1, 0, 1, 0", aggregation="sequence", lengths=text)
    tok = render_advantages("1, 0, 1, 0", aggregation="token", lengths=text)
    _, _, seq_token, seq_response = panels(seq)
    _, _, tok_token, tok_response = panels(tok)
    want_seq = [a / (4 * n) for a, n in zip(adv.tolist(), lengths, strict=True)]
    want_tok = [a / sum(lengths) for a in adv.tolist()]
    assert heights(seq_token) == pytest.approx(want_seq, rel=1e-6)
    assert heights(tok_token) == pytest.approx(want_tok, rel=1e-6)
    # per response: sequence aggregation ignores length, token aggregation grows with it
    assert heights(seq_response) == pytest.approx([a / 4 for a in adv.tolist()], rel=1e-6)
    assert heights(tok_response) == pytest.approx(
        [w * n for w, n in zip(want_tok, lengths, strict=True)], rel=1e-6)


def test_equal_lengths_make_the_aggregations_agree():
    a = heights(panels(render_advantages(REWARDS, aggregation="sequence"))[2])
    b = heights(panels(render_advantages(REWARDS, aggregation="token"))[2])
    assert a == pytest.approx(b, rel=1e-9)


def test_a_group_with_equal_rewards_teaches_nothing():
    fig = render_advantages("1, 1, 1, 1", lengths="3, 9, 1, 4")
    _, ax_a, ax_t, ax_s = panels(fig)
    assert heights(ax_a) == [0.0] * 4 and heights(ax_t) == [0.0] * 4 and heights(ax_s) == [0.0] * 4
    assert "teaches nothing" in fig._suptitle.get_text()


def test_token_weights_is_the_gradient_of_the_library_loss():
    adv = torch.tensor([1.0, -0.5])
    torch.testing.assert_close(token_weights(adv, [2, 5]),
                               torch.tensor([1 / 4, -0.5 / 10], dtype=torch.float64))
    torch.testing.assert_close(token_weights(adv, [2, 5], "token"),
                               torch.tensor([1 / 7, -0.5 / 7], dtype=torch.float64))
    with pytest.raises(ValueError, match="lengths"):
        token_weights(adv, [2])
