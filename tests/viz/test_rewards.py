import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

from minir1.viz.rewards import (
    DEFAULT_REWARDS,
    render_reward_table,
    render_tokens,
    reward_matrix,
    shorten,
    token_roles,
)
from tests.conftest import GOOD

HEDGE = "<think></think><answer>935</answer><answer>936</answer>"
EMPTY = "<think></think><answer></answer>"


def crashing(completion, answer):  # a naive reward: int("") raises on an empty answer
    return float(int(completion.split("<answer>")[1].split("</answer>")[0]) == answer)


def test_matrix_holds_the_library_rewards():
    values, errors = reward_matrix([GOOD, HEDGE, EMPTY, "936"], 936, DEFAULT_REWARDS)
    assert values.shape == (4, 2)
    np.testing.assert_array_equal(values, [[1, 1], [0, 0], [0, 0], [0, 0]])
    assert all(e == "" for row in errors for e in row)


def test_a_raising_reward_is_recorded_not_propagated():
    values, errors = reward_matrix([GOOD, EMPTY, "no tags"], 936, {"naive": crashing})
    assert values[0, 0] == 1.0
    assert math.isnan(values[1, 0]) and errors[1][0] == "ValueError"
    assert math.isnan(values[2, 0]) and errors[2][0] == "IndexError"


def test_shorten_keeps_one_line_and_both_ends():
    assert shorten("a\nb") == "a⏎b"
    s = shorten("x" * 30 + "MIDDLE" + "y" * 30, max_chars=20)
    assert len(s) == 20 and s.startswith("x") and s.endswith("y") and "…" in s
    with pytest.raises(ValueError, match="max_chars"):
        shorten("abc", max_chars=2)


def _cells(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.axes[0].texts]


def test_table_has_one_row_per_completion_and_one_column_per_reward():
    rewards = {**DEFAULT_REWARDS, "naive": crashing}
    fig = render_reward_table({"good": GOOD, "hedge": HEDGE, "empty": EMPTY}, 936, rewards)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["accuracy", "format", "naive"]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == 3
    assert labels[0].startswith("good: <think>") and labels[2].startswith("empty: ")
    cells = _cells(fig)
    assert len(cells) == 9
    assert cells.count("raised\nValueError") == 1  # the empty answer crashes the naive reward
    assert cells[:3] == ["1", "1", "1"]  # the correct completion earns everything
    assert "936" in ax.get_title()
    plt.close("all")


def test_your_completion_is_added_and_highlighted():
    fig = render_reward_table([GOOD], "936", completion="<think>x</think><answer>936</answer>")
    ax = fig.axes[0]
    labels = ax.get_yticklabels()
    assert len(labels) == 2 and labels[-1].get_text().startswith("your completion: ")
    assert labels[-1].get_fontweight() == "bold"
    assert _cells(fig) == ["1", "1", "1", "1"]
    plt.close("all")


def test_list_input_is_labelled_by_the_shortened_text():
    long = "<think>" + "1+1=2," * 40 + "</think><answer>2</answer>"
    fig = render_reward_table([long], 2, max_chars=30)
    label = fig.axes[0].get_yticklabels()[0].get_text()
    assert label == shorten(long, 30) and len(label) == 30
    plt.close("all")


@pytest.mark.parametrize("kwargs", [dict(completions=[]), dict(completions=[GOOD], rewards={})])
def test_nothing_to_show_is_an_error(kwargs):
    with pytest.raises(ValueError):
        render_reward_table(answer=1, **kwargs)


def test_token_roles_follow_the_tags():
    from minir1.data.tokenizer import Tokenizer

    tok = Tokenizer()
    prompt = "User: 12+3\nAssistant: "
    roles = token_roles(tok, prompt, "<think>2+3=5</think>x<answer>15</answer><eos>",
                        question="12+3")
    assert len(roles) == len(tok.encode(prompt)) + 13
    assert "".join(t for t, r in roles if r == "question") == "12+3"
    assert [t for t, r in roles if r == "tag"] == ["<think>", "</think>", "<answer>", "</answer>"]
    assert "".join(t for t, r in roles if r == "reasoning") == "2+3=5"
    assert "".join(t for t, r in roles if r == "answer") == "15"
    assert [t for t, r in roles if r == "outside"] == ["x"]
    assert roles[-1] == ("<eos>", "control")


def test_token_strip_draws_one_cell_per_token_and_the_rewards():
    from minir1.data.tokenizer import Tokenizer

    tok = Tokenizer()
    prompt, completion = "User: 1+2\nAssistant: ", "<think>1+2=3</think><answer>3</answer>"
    fig = render_tokens(tok, prompt, completion, question="1+2", answer=3)
    ax = fig.axes[0]
    n_tokens = len(tok.encode(prompt + completion))
    assert len(ax.texts) == n_tokens and len(ax.patches) == n_tokens
    assert {"<think>", "␣", "⏎"} <= {t.get_text() for t in ax.texts}
    assert ax.get_title().startswith(f"{len(tok.encode(prompt))} prompt tokens")
    assert "accuracy_reward = 1" in fig.get_supxlabel()
    with pytest.raises(ValueError, match="width"):
        render_tokens(tok, prompt, completion, width=5)
    plt.close("all")
