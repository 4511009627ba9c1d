"""Figures of the distillation lesson (notebooks/11_distillation.ipynb; R1 §2.4, §4.1, Tables 5-6).

``render_paths()`` draws the two ways to train the small student: SFT on the teacher's traces, or
GRPO on its own samples. ``render_sizes(here)`` sets the parameter counts of R1 and its distilled
students (R1 §2.4) beside ours. ``token_labels`` and ``render_token_nll`` show where in one trace
the student is unsure, token by token. ``render_cost`` draws the distillation run's SFT loss and
each path's training seconds; ``training_work`` counts each path's work in tokens from the recipe
and the logs, which (unlike seconds) does not depend on the machine. ``render_answers`` shows one
held-out problem and each student's greedy completion, for the answer browser widget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from matplotlib.figure import Figure

from minir1.data.tags import ANSWER_CLOSE, ANSWER_OPEN, THINK_CLOSE, THINK_OPEN
from minir1.viz.diagrams import box_diagram, draw_arrow

TEACHER_BAR, STUDENT_BAR = "#e67e22", "#2e86c1"  # bar colours: teachers orange, students blue

# R1 and its six distilled students (R1 §2.4, Table 5): billions of parameters; "t" teacher,
# "s" student. R1 is a mixture of experts, 37B of its 671B active per token; the students are dense.
R1_SIZES: dict[str, tuple[float, str]] = {
    "R1 total": (671, "t"), "R1 active": (37, "t"), "Qwen-1.5B": (1.5, "s"), "Qwen-7B": (7, "s"),
    "Llama-8B": (8, "s"), "Qwen-14B": (14, "s"), "Qwen-32B": (32, "s"), "Llama-70B": (70, "s"),
}

# short names of the tags in token labels; "" is what the <eos> token decodes to
_SHORT = {THINK_OPEN: "<t>", THINK_CLOSE: "</t>", ANSWER_OPEN: "<a>", ANSWER_CLOSE: "</a>",
          "": "eos"}


class _Codec(Protocol):  # what ``token_labels`` needs of a tokenizer (minir1's ``Tokenizer``)
    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


def render_paths() -> Figure:
    """Teacher traces -> SFT -> distilled student; student base -> GRPO -> RL-only student.

    The top path is R1's distillation (R1 §2.4: SFT only, on ~800k samples curated with R1); the
    bottom one is R1-Zero's recipe applied to the small model (R1 §4.1, Table 6).
    """
    boxes = {  # key: (x, y, title, what it is)
        "teacher": (0, 1, "teacher", "the R1 model of lesson 10\n(MoE, 4 layers)"),
        "traces": (1.5, 1, "its traces", "rejection-sampled:\ncorrect and readable"),
        "base": (0, 0, "student base", "dense, 3 layers,\nsame pre-training corpus"),
        "distilled": (3, 1, "student distilled", "SFT on the traces\n(R1: 800k samples, 2-3 ep.)"),
        "rl": (3, 0, "student RL-only", "GRPO, rule rewards\n(R1: >10k steps on 32B)"),
    }
    w, h = 0.98, 0.62
    fig, ax = box_diagram(boxes, (w, h), (10, 3.4), (-0.6, 3.6), (-0.55, 1.45),
                          orange=("teacher", "traces"), title_dy=0.14, note_dy=-0.12)

    def arrow(a: str, b: str, label: str, dy: float = 0.0) -> None:
        (xa, ya), (xb, yb) = boxes[a][:2], boxes[b][:2]
        # level arrows join the boxes' middles; a climbing one leaves and enters a quarter off them
        start = (xa + w / 2, ya) if ya == yb else (xa + w / 2, ya + h / 4)
        end = (xb - w / 2, yb) if ya == yb else (xb - w / 2, yb - h / 4)
        draw_arrow(ax, start, end, label=label, label_dy=0.07 + dy)

    arrow("teacher", "traces", "sample, keep\nthe right ones", dy=0.02)
    arrow("traces", "distilled", "SFT")
    arrow("base", "distilled", "starting weights", dy=-0.2)
    arrow("base", "rl", "GRPO on its own samples (lesson 09)")
    return fig


def render_sizes(here: Mapping[str, tuple[float, str]],
                 paper: Mapping[str, tuple[float, str]] = R1_SIZES) -> Figure:
    """Parameter counts, teachers orange and students blue: R1's in billions (log scale, R1 §2.4),
    ours in millions. ``here`` and ``paper`` map a name to (count, "t" for teacher or "s")."""
    for data in (paper, here):
        if not data:
            raise ValueError("render_sizes: no models to draw")
        kinds = {kind for _, kind in data.values()}
        if not kinds <= {"t", "s"}:
            raise ValueError(f"render_sizes: kinds {sorted(kinds)}: each must be 't' or 's'")
    fig = Figure(figsize=(11, 3.4))
    axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2.4, 1]})
    for ax, data, unit, title in ((axes[0], paper, "B", "DeepSeek-R1 and its students (paper)"),
                                  (axes[1], here, "M", "here")):
        names = list(data)
        values = [v for v, _ in data.values()]
        colors = [TEACHER_BAR if kind == "t" else STUDENT_BAR for _, kind in data.values()]
        bars = ax.bar(range(len(names)), values, color=colors)
        ax.bar_label(bars, labels=[f"{v:g}{unit}" for v in values], fontsize=8, padding=1)
        ax.set_xticks(range(len(names)), names, fontsize=8, rotation=20)
        ax.set(title=title, ylabel=f"parameters ({'billions' if unit == 'B' else 'millions'})")
        if unit == "B":  # 1.5B to 671B: a log scale
            ax.set(yscale="log", ylim=(min(values) / 2, max(values) * 4))
        else:
            ax.set(ylim=(0, max(values) * 1.2))
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def token_labels(tok: _Codec, completion: str) -> list[str]:
    """One label per token of ``completion`` and the final <eos>, as the SFT loss sees them: each
    token decoded alone, the tags shortened (<t>, </t>, <a>, </a>) so the axis stays readable."""
    return [_SHORT.get(t, t) for t in (tok.decode([i]) for i in tok.encode(completion, eos=True))]


def _check_aligned(fn: str, per_model: Mapping[str, Sequence[Any]], n: int, items: str,
                   of: str) -> None:
    """Every model's sequence must hold one entry per label / problem (``n``)."""
    for name, values in per_model.items():
        if len(values) != n:
            raise ValueError(f"{fn}: {name!r} has {len(values)} {items} for {n} {of}")


def render_token_nll(labels: Sequence[str], nlls: Mapping[str, Sequence[float]],
                     title: str = "") -> Figure:
    """One bar per completion token and model: -log p of the trace's token (nats), models side by
    side at each token. ``nlls`` maps a model's name to one value per label."""
    if not nlls:
        raise ValueError("render_token_nll: no model's values to draw")
    _check_aligned("render_token_nll", nlls, len(labels), "values", "token labels")
    fig = Figure(figsize=(11, 3.0))
    ax = fig.subplots()
    width = 0.8 / len(nlls)
    for i, (name, values) in enumerate(nlls.items()):
        xs = [x + (i - (len(nlls) - 1) / 2) * width for x in range(len(labels))]
        ax.bar(xs, values, width, label=name)
    ax.set_xticks(range(len(labels)), labels, fontsize=7, family="monospace")
    ax.set(ylabel="-log p (nats)", title=title, xlim=(-0.7, len(labels) - 0.3))
    ax.legend(loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def render_cost(sft_log: Sequence[Mapping[str, float]], start_loss: float,
                seconds: Mapping[str, float]) -> Figure:
    """SFT loss per step (left, ``sft_log`` rows with ``step`` and ``loss``) against the student
    base's loss on the traces (``start_loss``, dashed), and training seconds per path (right)."""
    rows = [r for r in sft_log if "loss" in r]
    if not rows:
        raise ValueError("render_cost: sft_log has no rows with a loss")
    if not seconds:
        raise ValueError("render_cost: no training seconds to draw")
    fig = Figure(figsize=(11, 3.3))
    ax, bx = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], "o-", ms=3,
            label="distillation: SFT loss on a batch of traces")
    ax.axhline(start_loss, ls="--", color="grey", label="student base on the traces (section 4)")
    ax.set(xlabel="SFT step", ylabel="loss (nats per token)", ylim=(0, None),
           title="distillation: the loss on the teacher's traces")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    bars = bx.barh(list(seconds), list(seconds.values()), color=[STUDENT_BAR, TEACHER_BAR])
    bx.bar_label(bars, labels=[f"{s:.1f}s" for s in seconds.values()], fontsize=8, padding=2)
    bx.set(xlabel="training seconds", title="compute", xlim=(0, 1.25 * max(seconds.values())))
    bx.invert_yaxis()
    fig.tight_layout()
    return fig


def training_work(sft_steps: int, sft_batch: int, grpo_log: Sequence[Mapping[str, float]],
                  prompts_per_step: int, group_size: int, inner_updates: int = 1,
                  reference: bool = True, seq_len: int = 256) -> dict[str, float]:
    """Each path's work in tokens run through the student, from the recipe and the logs alone.

    Seconds depend on the machine and on what else runs on it; these counts do not. Returns:

    - ``sft_tokens``: ``sft_steps`` x ``sft_batch`` packed rows of ``seq_len`` token slots, each
      run forward and backward once.
    - ``rl_sampled``: the completion tokens GRPO generated, one decoding step each: per step row of
      ``grpo_log`` (rows with ``length``, the step's mean completion length), ``prompts_per_step``
      x ``group_size`` completions.
    - ``rl_tokens``: the passes of the student over those completion tokens: generating them, the
      old policy's log-probabilities, the reference model's (if ``reference``, i.e. kl_beta > 0)
      and ``inner_updates`` forward and backward passes. Prompts and padding are left out, so this
      is a lower bound.
    - ``rl_signal``: the completion tokens of groups whose rewards differ (estimated with the
      step's mean length), the only ones with a non-zero advantage: an all-equal group
      standardises to zero (R1 Eq. 3).
    """
    if sft_steps < 1 or sft_batch < 1 or seq_len < 1:
        raise ValueError(f"training_work: sft_steps={sft_steps}, sft_batch={sft_batch} and "
                         f"seq_len={seq_len} must be >= 1")
    if prompts_per_step < 1 or group_size < 2 or inner_updates < 1:
        raise ValueError(f"training_work: prompts_per_step={prompts_per_step} (>= 1), group_size="
                         f"{group_size} (>= 2) and inner_updates={inner_updates} (>= 1)")
    steps = [r for r in grpo_log if "length" in r]  # step 0 is a held-out check, not a step
    if not steps:
        raise ValueError("training_work: grpo_log has no step rows (with 'length')")
    n = prompts_per_step * group_size
    sampled = sum(r["length"] for r in steps) * n
    signal = sum(r["length"] * (1 - r.get("zero_variance_groups", 0.0)) for r in steps) * n
    passes = 1 + 1 + int(reference) + inner_updates
    return {"sft_tokens": float(sft_steps * sft_batch * seq_len), "rl_sampled": sampled,
            "rl_tokens": sampled * passes, "rl_signal": signal}


def render_answers(problems: Sequence[Any], results: Mapping[str, Sequence[Any]], task: str = "add",
                   index: int = 0) -> Figure:
    """The ``index``-th held-out problem of ``task`` (cycling; every problem if the task has none)
    and each model's completion, green when right and red when wrong.

    ``problems`` have ``question``, ``answer``, ``task`` and ``level``; ``results`` maps a model's
    name to one result per problem, in the same order, with ``completion`` and ``correct`` (the
    ``EvalResult`` rows of ``minir1.eval.greedy.evaluate``).
    """
    if not problems:
        raise ValueError("render_answers: no problems")
    _check_aligned("render_answers", results, len(problems), "results", "problems")
    chosen = [i for i, q in enumerate(problems) if q.task == task] or list(range(len(problems)))
    i = chosen[index % len(chosen)]
    q = problems[i]
    lines = [(f"{q.question} = {q.answer}   (task {q.task}, level {q.level})", "black", "bold")]
    for name, rows in results.items():
        r = rows[i]
        text = r.completion
        color = "#2a9d4b" if r.correct else "#c0392b"
        lines.append((f"{name}: {'right' if r.correct else 'wrong'}", color, "bold"))
        lines += [(text[j:j + 100], "black", "normal") for j in range(0, max(len(text), 1), 100)]
    fig = Figure(figsize=(11, 0.4 + 0.27 * len(lines)))
    ax = fig.add_axes((0.01, 0.0, 0.98, 1.0))
    ax.set_axis_off()
    ax.set(xlim=(0, 1), ylim=(len(lines) + 0.2, -0.8))
    for y, (text, color, weight) in enumerate(lines):
        ax.text(0, y, text, color=color, weight=weight, fontsize=9, family="monospace",
                va="center")
    return fig


__all__ = ["R1_SIZES", "STUDENT_BAR", "TEACHER_BAR", "render_answers", "render_cost",
           "render_paths", "render_sizes", "render_token_nll", "token_labels", "training_work"]
