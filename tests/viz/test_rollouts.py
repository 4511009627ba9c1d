"""The R1-Zero lesson's figures render headless and refuse malformed input."""

import pytest

from minir1.viz.rollouts import render_r1_zero_curves, render_rollout
from tests.conftest import TOK


def record(text="<think>1+2=3</think><answer>3</answer>", advantage=1.2):
    ids = TOK.encode(text)
    return {"question": "1+2", "answer": 3, "tokens": ids,
            "logprobs": [-0.01 * i for i in range(len(ids))], "reward": 2.0,
            "advantage": advantage}


@pytest.mark.parametrize("color_by", ["logprob", "advantage"])
def test_rollout_draws_one_box_per_token(color_by):
    rec = record()
    fig = render_rollout(rec, TOK, color_by)
    texts = fig.axes[0].texts
    assert len(texts) == 1 + len(rec["tokens"])  # the header, then every token
    assert "advantage +1.20" in texts[0].get_text()
    faces = {t.get_bbox_patch().get_facecolor() for t in texts[1:]}
    # one advantage per response, log-probs differ
    assert (len(faces) == 1) == (color_by == "advantage")


def test_long_rollouts_wrap_and_bad_records_are_refused():
    rec = record("<think>" + "12+34=46," * 30 + "</think><answer>46</answer>")
    fig = render_rollout(rec, TOK, width=40)
    ys = {t.get_position()[1] for t in fig.axes[0].texts[1:]}
    assert len(ys) > 5
    with pytest.raises(ValueError, match="color_by"):
        render_rollout(rec, TOK, "reward")
    with pytest.raises(ValueError, match="log-probs"):
        render_rollout({**rec, "logprobs": rec["logprobs"][:-1]}, TOK)


def test_curves_plot_training_and_heldout_points():
    history = [{"step": 0, "heldout_accuracy": 0.1, "heldout_length": 8.0}]
    history += [{"step": s, "accuracy": s / 10, "length": 8 + s} for s in range(1, 11)]
    history[-1].update(heldout_accuracy=0.9, heldout_length=40.0)
    fig = render_r1_zero_curves(history)
    acc, length = fig.axes
    assert len(acc.lines) == 2 and list(acc.lines[1].get_ydata()) == [0.1, 0.9]
    assert list(length.lines[1].get_ydata()) == [8.0, 40.0]
