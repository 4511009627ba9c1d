"""The reward inspector of the tasks-and-rewards lesson (notebooks/01_tokens_and_tasks.ipynb).

``reward_matrix`` scores a list of completions with several reward functions
``reward(completion, answer)``. A reward function that raises is recorded as NaN instead of taking
the table down, because finding the strings that crash a reward is part of testing it.
``render_reward_table`` draws the matrix as a grid: one row per completion (its text, shortened, as
the row label), one column per reward, green for full reward, red for none, grey with the
exception's name where the reward crashed. Passing ``completion`` adds a highlighted last row, which
is what the widget's text box feeds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from minir1.data.rewards import accuracy_reward, format_reward
from minir1.data.tags import ANSWER_CLOSE, ANSWER_OPEN, THINK_CLOSE, THINK_OPEN

Reward = Callable[[str, int | str], float]

DEFAULT_REWARDS: dict[str, Reward] = {
    "accuracy": accuracy_reward,
    "format": lambda completion, answer: format_reward(completion),
}
_CMAP = LinearSegmentedColormap.from_list("reward", ["#f4a3a3", "#f7f7f7", "#9fd89a"])


def reward_matrix(completions: Sequence[str], answer: int | str, rewards: Mapping[str, Reward],
                  ) -> tuple[np.ndarray, list[list[str]]]:
    """(n_completions, n_rewards) float array, and the name of the exception where a reward raised
    (NaN)."""
    values = np.full((len(completions), len(rewards)), np.nan)
    errors = [["" for _ in rewards] for _ in completions]
    for i, text in enumerate(completions):
        for j, fn in enumerate(rewards.values()):
            try:
                values[i, j] = float(fn(text, answer))
            except Exception as exc:  # a crashing reward is a finding, not a reason to stop
                errors[i][j] = type(exc).__name__
    return values, errors


def shorten(text: str, max_chars: int = 60) -> str:
    """One line: newlines shown as '⏎', the middle cut out ('…') when longer than ``max_chars``."""
    if max_chars < 5:
        raise ValueError(f"max_chars={max_chars}: must be >= 5")
    one_line = text.replace("\n", "⏎")
    if len(one_line) <= max_chars:
        return one_line
    head = (max_chars - 1) * 2 // 3
    tail = max_chars - 1 - head
    return one_line[:head] + "…" + one_line[len(one_line) - tail:]


def render_reward_table(completions: Mapping[str, str] | Sequence[str], answer: int | str,
                        rewards: Mapping[str, Reward] | None = None, completion: str | None = None,
                        max_chars: int = 60, title: str | None = None) -> Figure:
    """A completions x rewards grid of reward values for the reference ``answer``.

    completions: ``{label: completion}`` or a list of completions (labelled by their text).
    rewards: ``{name: reward(completion, answer) -> float}``; default: the library's accuracy and
        format.
    completion: an extra completion (e.g. typed into the widget), added as the highlighted last row.
    Cells show the value (green 1, red 0) or, where the reward raised, the exception's name on grey.
    """
    rewards = dict(DEFAULT_REWARDS if rewards is None else rewards)
    if not rewards:
        raise ValueError("rewards is empty: pass at least one reward function")
    items = list(completions.items()) if isinstance(completions, Mapping) else \
        [(shorten(c, max_chars), c) for c in completions]
    if completion is not None:
        items.append(("your completion", completion))
    if not items:
        raise ValueError("no completions to score")
    texts = [c for _, c in items]
    values, errors = reward_matrix(texts, answer, rewards)

    n_rows, n_cols = values.shape
    fig = Figure(figsize=(2.0 + 0.085 * max_chars + 1.1 * n_cols, 1.2 + 0.36 * n_rows),
                 layout="constrained")
    ax = fig.subplots()
    ax.imshow(np.clip(np.nan_to_num(values, nan=0.5), 0, 1), cmap=_CMAP, vmin=0, vmax=1,
              aspect="auto")
    for i in range(n_rows):
        for j in range(n_cols):
            if errors[i][j]:
                ax.add_patch(_cell(i, j, "#bdbdbd"))
                ax.text(j, i, f"raised\n{errors[i][j]}", ha="center", va="center", fontsize=7)
            else:
                v = values[i, j]
                ax.text(j, i, f"{v:g}" if math.isfinite(v) else str(v), ha="center", va="center",
                        fontsize=9)
    labels = [f"{label}: {shorten(text, max_chars)}" if label != shorten(text, max_chars) else label
              for label, text in items]
    ax.set_yticks(range(n_rows), labels, fontsize=8, fontfamily="monospace")
    ax.set_xticks(range(n_cols), list(rewards), fontsize=9)
    ax.xaxis.tick_top()
    if completion is not None:
        last = ax.get_yticklabels()[-1]
        last.set_fontweight("bold")
        last.set_color("#1f77b4")
        ax.axhline(n_rows - 1.5, color="#1f77b4", lw=1.5)
    ax.set_title(title or f"Rewards against the reference answer {answer}", fontsize=10)
    return fig


def _cell(i: int, j: int, color: str) -> Rectangle:
    return Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor=color, edgecolor="none")




# ------------------------------------------------------------------------------------- token strips
ROLE_COLORS = {"prompt": "#e8e8e8", "question": "#9ecae1", "tag": "#c5b0d5",
               "reasoning": "#fdd0a2", "answer": "#a1d99b", "outside": "#fc9272",
               "control": "#ffffff"}
_TAG_STATE = {THINK_OPEN: "reasoning", THINK_CLOSE: None, ANSWER_OPEN: "answer", ANSWER_CLOSE: None}


def token_roles(tokenizer, prompt: str, completion: str, question: str | None = None,
                ) -> list[tuple[str, str]]:
    """``(token text, role)`` for every token of ``prompt + completion``.

    Prompt tokens are "prompt" ("question" inside the last occurrence of ``question``); completion
    tokens are "tag" (the four R1 tags), "reasoning" (inside think), "answer" (inside answer),
    "control" (``<eos>`` etc.) or "outside" (text the model wrote outside both blocks, which no rule
    reward reads).
    """
    out: list[tuple[str, str]] = []
    start = prompt.rfind(question) if question else -1
    pos = 0
    for i in tokenizer.encode(prompt):
        text = tokenizer.itos[i]
        inside = start >= 0 and start <= pos < start + len(question or "")
        out.append((text, "question" if inside else "prompt"))
        pos += len(text)
    state: str | None = None
    for i in tokenizer.encode(completion):
        text = tokenizer.itos[i]
        if text in _TAG_STATE:
            out.append((text, "tag"))
            state = _TAG_STATE[text]
        elif text in tokenizer.specials:
            out.append((text, "control"))
        else:
            out.append((text, state or "outside"))
    return out


def render_tokens(tokenizer, prompt: str, completion: str, question: str | None = None,
                  answer: int | str | None = None, width: float = 44.0,
                  title: str | None = None) -> Figure:
    """The tokens of one document as coloured cells: what the prompt holds, what the policy writes.

    Each character is one cell (space as '␣', newline as '⏎'); a special token is one wider cell,
    because it is one token. The completion starts on a new row. With ``answer``, the library's two
    rule rewards of the completion are written under the strip.
    """
    if width < 10:
        raise ValueError(f"width={width}: must be >= 10")
    tokens = token_roles(tokenizer, prompt, completion, question)
    n_prompt = len(tokenizer.encode(prompt))
    cells, x, y = [], 0.0, 0
    for k, (text, role) in enumerate(tokens):
        w = 1.0 if len(text) == 1 else 0.5 * len(text) + 0.6
        if x + w > width or (k == n_prompt and x > 0):
            x, y = 0.0, y + 1
        cells.append((x, y, w, text, role))
        x += w
    n_rows = y + 1
    fig = Figure(figsize=(0.26 * width + 0.6, 0.42 * n_rows + (1.5 if answer is not None else 0.9)),
                 layout="constrained")
    ax = fig.subplots()
    for x, y, w, text, role in cells:
        ax.add_patch(Rectangle((x + 0.04, -y - 0.44), w - 0.08, 0.88, facecolor=ROLE_COLORS[role],
                               edgecolor="#888888", linewidth=0.5))
        shown = {" ": "␣", "\n": "⏎"}.get(text, text)
        ax.text(x + w / 2, -y, shown, ha="center", va="center", fontfamily="monospace",
                fontsize=8 if len(text) == 1 else 6.5)
    ax.set_xlim(-0.2, width + 0.2)
    ax.set_ylim(-n_rows + 0.4, 0.6)
    ax.axis("off")
    used = [r for r in ROLE_COLORS if any(c[4] == r for c in cells)]
    handles = [Rectangle((0, 0), 1, 1, facecolor=ROLE_COLORS[r], edgecolor="#888888") for r in used]
    ax.legend(handles, used, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(used),
              fontsize=8, frameon=False)
    n_completion = len(tokens) - n_prompt
    ax.set_title(title or f"{n_prompt} prompt tokens (context) + {n_completion} completion tokens "
                 "(what the policy writes)", fontsize=10)
    if answer is not None:
        acc, fmt = accuracy_reward(completion, answer), format_reward(completion)
        fig.supxlabel(f"reference answer {answer}:   accuracy_reward = {acc:g}   "
                      f"format_reward = {fmt:g}   R_rule = {acc + fmt:g}", fontsize=9)
    return fig


__all__ = ["DEFAULT_REWARDS", "ROLE_COLORS", "render_reward_table", "render_tokens",
           "reward_matrix", "shorten", "token_roles"]
