"""Rule rewards: values in [0, 1], never raising, and closed against the known hacks."""

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minir1.data.rewards import accuracy_reward, extract_answer, format_reward
from tests.conftest import GOOD


def test_correct_well_formed_completion_earns_both():
    assert accuracy_reward(GOOD, 936) == 1.0
    assert accuracy_reward(GOOD, "936") == 1.0
    assert format_reward(GOOD) == 1.0
    assert format_reward(" <think> x </think>\n<answer> 936 </answer> <eos>") == 1.0


@pytest.mark.parametrize("completion", [
    "<think>...</think><answer>935</answer><answer>936</answer>",  # hedging: several answers
    "<think>...</think><answer>936 or 937</answer>",  # hedging inside one tag
    "<think>...</think><answer></answer>",  # empty answer
    "<think>...</think><answer>   </answer>",
    "<think>the answer is 936</think>",  # answer outside the tags
    "936",
    "<think>936</think><answer>12</answer>",  # numbers in the reasoning never count
    "<think>...</think></answer>936<answer>",  # tags in the wrong order
    "<think>...</think><answer>9 3 6</answer>",
])
def test_hacks_earn_no_accuracy(completion):
    assert accuracy_reward(completion, 936) == 0.0


@pytest.mark.parametrize("completion", [
    "<answer>936</answer>",  # no reasoning block
    "<think>x</think>",  # no answer
    "<think>x</think>junk<answer>936</answer>",  # text between the blocks
    "<think>x</think><answer>936</answer> trailing text",
    "<think>a</think><think>b</think><answer>936</answer>",
    "<answer>936</answer><think>x</think>",
    "<think>x</think><answer> </answer>",
])
def test_malformed_completions_earn_no_format(completion):
    assert format_reward(completion) == 0.0


def test_negative_answers():
    done = "<think>5-9=-4,-4-9=-13</think><answer>-13</answer>"
    assert accuracy_reward(done, -13) == 1.0 and accuracy_reward(done, "-13") == 1.0
    assert accuracy_reward(done, 13) == 0.0  # the sign is part of the answer
    assert accuracy_reward("<think>x</think><answer>--13</answer>", -13) == 0.0
    assert accuracy_reward("<think>x</think><answer>13</answer>", -13) == 0.0


def test_extract_answer():
    assert extract_answer(GOOD) == "936"
    assert extract_answer("<answer>1</answer><answer>2</answer>") is None


@settings(max_examples=300, deadline=None)
@given(st.text(), st.one_of(st.integers(), st.text()))
def test_rewards_never_raise_and_stay_in_range(text, answer):
    for value in (accuracy_reward(text, answer), format_reward(text)):
        assert 0.0 <= value <= 1.0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", "1", "x", " ",
                                 "<eos>"]), max_size=12))
def test_rewards_on_tag_soup(parts):
    text = "".join(parts)
    assert accuracy_reward(text, 1) in (0.0, 1.0)
    assert format_reward(text) in (0.0, 1.0)


def test_non_strings_score_zero():
    assert accuracy_reward(None, 3) == 0.0  # type: ignore[arg-type]
    assert format_reward(b"<think></think>") == 0.0  # type: ignore[arg-type]


def test_a_megabyte_is_scored_fast():
    big = "<think>" + "12+" * 350_000 + "</think><answer>7</answer>"
    start = time.perf_counter()
    assert accuracy_reward(big, 7) == 1.0 and format_reward(big) == 1.0
    assert accuracy_reward("<answer>" + "9" * 1_000_000 + "</answer>", 7) == 0.0
    assert time.perf_counter() - start < 0.5
