"""The distillation lesson's figures render headless from plain data and refuse malformed input."""

from types import SimpleNamespace

import pytest
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from minir1.viz.distill import (
    R1_SIZES,
    STUDENT_BAR,
    TEACHER_BAR,
    render_answers,
    render_cost,
    render_paths,
    render_sizes,
    render_token_nll,
    token_labels,
    training_work,
)


def _texts(ax):
    return [t.get_text() for t in ax.texts]


def test_paths_draw_both_routes_with_their_labels():
    ax = render_paths().axes[0]
    boxes = [p for p in ax.patches if isinstance(p, FancyBboxPatch)]
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    assert len(boxes) == 5 and len(arrows) == 4
    texts = _texts(ax)
    for title in ("teacher", "its traces", "student base", "student distilled",
                  "student RL-only"):
        assert title in texts
    for label in ("SFT", "starting weights", "GRPO on its own samples (lesson 09)"):
        assert label in texts
    # the teacher and its traces share one fill, the three students another
    fills = [tuple(b.get_facecolor()) for b in boxes]
    assert len(set(fills)) == 2 and fills[0] == fills[1] and len(set(fills[2:])) == 1


def test_sizes_bars_carry_the_counts_and_the_kind():
    here = {"teacher total": (1.64, "t"), "student": (0.34, "s")}
    fig = render_sizes(here)
    paper_ax, here_ax = fig.axes
    assert [p.get_height() for p in paper_ax.patches] == [v for v, _ in R1_SIZES.values()]
    assert paper_ax.get_yscale() == "log" and here_ax.get_yscale() == "linear"
    assert [p.get_height() for p in here_ax.patches] == [1.64, 0.34]
    assert [t.get_text() for t in here_ax.texts] == ["1.64M", "0.34M"]
    colors = [p.get_facecolor() for p in here_ax.patches]
    assert colors[0] != colors[1]
    assert [t.get_text() for t in here_ax.get_xticklabels()] == list(here)
    assert here_ax.get_title() == "here" and "paper" in paper_ax.get_title()
    assert (TEACHER_BAR, STUDENT_BAR) == ("#e67e22", "#2e86c1")


@pytest.mark.parametrize("here", [{}, {"student": (0.3, "x")}])
def test_sizes_refuse_no_models_or_unknown_kinds(here):
    with pytest.raises(ValueError, match="render_sizes"):
        render_sizes(here)


class _Chars:
    """A tokenizer of single characters and whole tags, <eos> decoding to ""."""

    tags = ("<think>", "</think>", "<answer>", "</answer>")

    def encode(self, text, bos=False, eos=False):
        ids = []
        while text:
            tag = next((t for t in self.tags if text.startswith(t)), text[0])
            ids.append(self.tags.index(tag) + 1000 if tag in self.tags else ord(tag))
            text = text[len(tag):]
        return ids + ([0] if eos else [])

    def decode(self, ids):
        return "".join("" if i == 0 else self.tags[i - 1000] if i >= 1000 else chr(i) for i in ids)


def test_token_labels_shorten_the_tags_and_end_with_eos():
    labels = token_labels(_Chars(), "<think>1+2=3</think><answer>3</answer>")
    assert labels == ["<t>", "1", "+", "2", "=", "3", "</t>", "<a>", "3", "</a>", "eos"]


def test_token_nll_one_bar_per_token_and_model():
    labels = ["<t>", "7", "</t>", "eos"]
    nlls = {"base": [1.0, 0.1, 0.2, 0.0], "distilled": [0.1, 0.1, 0.1, 0.0]}
    ax = render_token_nll(labels, nlls, "7-3").axes[0]
    assert len(ax.patches) == 8
    assert [p.get_height() for p in ax.patches] == nlls["base"] + nlls["distilled"]
    assert [t.get_text() for t in ax.get_xticklabels()] == labels
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(nlls)
    assert ax.get_title() == "7-3"
    # the models stand side by side at each token, not on top of each other
    assert ax.patches[0].get_x() < ax.patches[4].get_x() < ax.patches[1].get_x()


@pytest.mark.parametrize("nlls", [{}, {"base": [1.0, 0.5]}])
def test_token_nll_refuses_missing_or_misaligned_values(nlls):
    with pytest.raises(ValueError, match="render_token_nll"):
        render_token_nll(["a", "b", "c"], nlls)


def test_cost_plots_the_loss_and_the_seconds():
    log = [{"step": 10, "loss": 0.10, "lr": 1e-4}, {"step": 20, "loss": 0.08}, {"step": 25}]
    fig = render_cost(log, 0.12, {"distilled (SFT)": 19.6, "RL-only (GRPO)": 55.2})
    ax, bx = fig.axes
    (line,) = ax.lines[:1]
    assert list(line.get_xdata()) == [10, 20] and list(line.get_ydata()) == [0.10, 0.08]
    assert ax.lines[1].get_ydata()[0] == 0.12  # the student base's loss on the traces
    assert [p.get_width() for p in bx.patches] == [19.6, 55.2]
    assert [t.get_text() for t in bx.texts] == ["19.6s", "55.2s"]
    assert [t.get_text() for t in bx.get_yticklabels()] == ["distilled (SFT)", "RL-only (GRPO)"]


@pytest.mark.parametrize("log, seconds", [([{"step": 1}], {"sft": 1.0}), ([{"loss": 0.1}], {})])
def test_cost_refuses_an_empty_log_or_no_seconds(log, seconds):
    with pytest.raises(ValueError, match="render_cost"):
        render_cost(log, 0.1, seconds)


def test_training_work_counts_tokens_from_the_logs():
    grpo_log = [{"step": 0, "heldout_accuracy": 0.0},  # the held-out check before training
                {"step": 1, "length": 10.0, "zero_variance_groups": 0.75},
                {"step": 2, "length": 20.0, "zero_variance_groups": 0.5, "heldout_accuracy": 0.1}]
    work = training_work(5, 4, grpo_log, prompts_per_step=2, group_size=4, seq_len=8)
    assert work["sft_tokens"] == 5 * 4 * 8
    assert work["rl_sampled"] == (10 + 20) * 8  # 8 completions per step
    assert work["rl_tokens"] == 4 * work["rl_sampled"]  # generate, old, reference, train
    assert work["rl_signal"] == (10 * 0.25 + 20 * 0.5) * 8
    lean = training_work(5, 4, grpo_log, 2, 4, inner_updates=2, reference=False, seq_len=8)
    assert lean["rl_tokens"] == 4 * work["rl_sampled"]


@pytest.mark.parametrize("args", [(0, 4, [{"length": 1.0}], 2, 4), (5, 4, [{"step": 0}], 2, 4),
                                  (5, 4, [{"length": 1.0}], 2, 1)])
def test_training_work_refuses_empty_logs_and_bad_recipes(args):
    with pytest.raises(ValueError, match="training_work"):
        training_work(*args)


def _problem(question, answer, task, level=3):
    return SimpleNamespace(question=question, answer=answer, task=task, level=level)


def _result(completion, correct):
    return SimpleNamespace(completion=completion, correct=correct)


PROBLEMS = [_problem("12+34", 46, "add"), _problem("9*9", 81, "mul", 4),
            _problem("5+5", 10, "add")]
RESULTS = {"student base": [_result("<answer>45</answer>", False), _result("", False),
                            _result("<answer>10</answer>", True)],
           "student distilled": [_result("<think>2+4=6,1+3=4</think><answer>46</answer>", True),
                                 _result("x" * 150, True), _result("<answer>11</answer>", False)]}


def test_answers_show_the_chosen_problem_and_every_model():
    ax = render_answers(PROBLEMS, RESULTS, "add", 1).axes[0]
    texts = _texts(ax)
    assert texts[0] == "5+5 = 10   (task add, level 3)"  # the second add problem
    assert texts[1:] == ["student base: right", "<answer>10</answer>",
                         "student distilled: wrong", "<answer>11</answer>"]
    assert ax.texts[1].get_color() != ax.texts[3].get_color()  # right and wrong are told apart


def test_answers_wrap_long_completions_cycle_and_fall_back_to_all_problems():
    texts = _texts(render_answers(PROBLEMS, RESULTS, "mul", 3).axes[0])  # index cycles
    assert texts[0].startswith("9*9 = 81") and texts.count("x" * 100) == 1 and "x" * 50 in texts
    assert "" in texts  # an empty completion still gets its line
    assert _texts(render_answers(PROBLEMS, RESULTS, "sub", 2).axes[0])[0].startswith("5+5")


@pytest.mark.parametrize("problems, results", [([], {}),
                                               (PROBLEMS, {"short": RESULTS["student base"][:2]})])
def test_answers_refuse_no_problems_or_misaligned_results(problems, results):
    with pytest.raises(ValueError, match="render_answers"):
        render_answers(problems, results)
