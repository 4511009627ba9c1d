"""Pictures for the multi-token prediction lesson (notebooks/05_multi_token_prediction.ipynb).

``render_mtp_chain`` draws the causal chain of DeepSeek-V3's MTP modules (V3 §2.2, Fig. 3,
Eqs. 21-23): at position i the main model predicts t_{i+1}; depth k combines h^{k-1}_i with the
embedding of t_{i+k} and predicts t_{i+k+1}. ``expected_tokens_per_pass`` and
``render_speculative_speedup`` turn a draft acceptance rate into the tokens a speculative decoder
emits per main-model pass (V3 §5.4.3: 85-90% acceptance of the second token, 1.8x tokens per
second).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from minir1.viz.diagrams import draw_arrow, draw_box

DEPTH_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def _check_rate(a: float) -> float:
    a = float(a)
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"acceptance={a}: must be in [0, 1]")
    return a


def expected_tokens_per_pass(acceptance: float | Sequence[float],
                             n_drafts: int | None = None) -> float:
    """Tokens emitted per main-model pass by a speculative decoder with chained drafts.

    Each pass verifies the drafts in order and keeps them up to the first rejection, and always
    adds one token of its own (the correction, or the next token after the last accepted draft).
    With acceptance a_j for the j-th draft (given the earlier ones were accepted) the expectation
    is 1 + a_1 + a_1 a_2 + ... + a_1...a_n; a scalar ``acceptance`` means a_j = a for
    ``n_drafts`` drafts (default 1, giving 1 + a). This is an upper bound on the speed-up:
    drafting and verifying cost extra.
    """
    if isinstance(acceptance, (int, float, np.floating)):
        n = 1 if n_drafts is None else int(n_drafts)
        if n < 0:
            raise ValueError(f"n_drafts={n_drafts}: must be >= 0")
        rates = [_check_rate(acceptance)] * n
    else:
        rates = [_check_rate(a) for a in acceptance]
        if n_drafts is not None and n_drafts != len(rates):
            raise ValueError(f"n_drafts={n_drafts} but {len(rates)} acceptance rates were given")
    total, run = 1.0, 1.0
    for a in rates:
        run *= a
        total += run
    return total


def _chain_cell(ax, x: float, y: float, text: str, note: str, color: str, active: bool,
                highlight: bool) -> None:
    """One box of the chain: filled for the chosen position, white with a target, dashed grey
    without one."""
    draw_box(ax, (x, y), (0.84, 0.66), text, note, rounding=0.08, zorder=3,
             facecolor=color if highlight else ("white" if active else "#f2f2f2"),
             edgecolor=color if active else "#bbbbbb", linewidth=2.0 if highlight else 1.0,
             linestyle="-" if active else "--", alpha=0.9 if highlight else 1.0,
             title_dy=0.1 if note else 0.0, note_dy=-0.18, title_size=11, bold=False,
             ink="white" if highlight else ("black" if active else "#999999"))


def render_mtp_chain(seq_len: int = 8, depth: int = 2, position: int = 2) -> Figure:
    """Which token each depth of MTP sees and predicts, for a window of tokens t_1 .. t_{seq_len}.

    Rows from the bottom: the tokens, the main model (depth 0) and MTP depths 1..``depth``. The box
    of depth k at position i shows the token it predicts, t_{i+k+1} (Eq. 23), above the extra token
    it reads: the embedding of t_{i+k} (Eq. 21), which is what depth k-1 predicts at the same
    position. Greyed boxes have no target inside the window. The ``position`` column (1-based) is
    filled in, with arrows for the hidden state h^{k-1}_i passed up the chain, and the tokens it
    predicts are ringed in each depth's colour.
    """
    if depth < 0:
        raise ValueError(f"depth={depth}: must be >= 0")
    if seq_len < depth + 2:
        raise ValueError(f"seq_len={seq_len}: must be >= depth + 2 = {depth + 2} to show one "
                         "target per depth")
    if not 1 <= position <= seq_len - depth - 1:
        raise ValueError(f"position={position}: must be in 1..{seq_len - depth - 1} "
                         "(seq_len - depth - 1) so that the deepest prediction stays inside the "
                         "window")
    colors = [DEPTH_COLORS[k % len(DEPTH_COLORS)] for k in range(depth + 1)]
    fig = Figure(figsize=(1.6 + 1.0 * seq_len, 1.2 + 1.0 * (depth + 2)), layout="constrained")
    ax = fig.add_subplot()

    for i in range(1, seq_len + 1):  # the token row
        _chain_cell(ax, i, 0, f"$t_{{{i}}}$", "", "#444444", True, False)
    for k in range(depth + 1):  # depth k at position i reads Emb(t_{i+k}) and predicts t_{i+k+1}
        y = k + 1
        for i in range(1, seq_len + 1):
            target = i + k + 1
            active = target <= seq_len
            note = ((f"reads $t_{{\\leq {i}}}$" if k == 0 else f"+ Emb($t_{{{i + k}}}$)")
                    if active else "")
            _chain_cell(ax, i, y, f"$t_{{{target}}}$" if active else "-", note, colors[k], active,
                        active and i == position)
        # ring the token this depth predicts at `position`, one ring per depth
        pad = 0.05 * (k + 1)
        draw_box(ax, (position + k + 1, 0), (0.84 + 2 * pad, 0.66 + 2 * pad), facecolor="none",
                 edgecolor=colors[k], linewidth=1.8, rounding=0.1, zorder=5)
    for k in range(depth + 1):  # Emb(t_p) into the main model, then h^{k-1}_p up the chain
        draw_arrow(ax, (position, k + 0.33), (position, k + 0.67), color=colors[k],
                   linewidth=1.6, head=12, shrink=0, zorder=2)

    labels = ["tokens", "main model\n(predicts $t_{i+1}$)"]
    labels += [f"MTP depth {k}\n(predicts $t_{{i+{k + 1}}}$)" for k in range(1, depth + 1)]
    ax.set_yticks(range(depth + 2), labels)
    ax.set_xticks(range(1, seq_len + 1), [f"i={i}" for i in range(1, seq_len + 1)])
    ax.set_xlim(0.4, seq_len + 0.6)
    ax.set_ylim(-0.6, depth + 1.5)
    for side in ("top", "right", "left", "bottom"):
        ax.spines[side].set_visible(False)
    ax.tick_params(length=0)
    ax.set_title(f"The MTP causal chain, D = {depth}: position i = {position} predicts "
                 + ", ".join(f"$t_{{{position + k + 1}}}$" for k in range(depth + 1))
                 + "\n(arrows: the hidden state $h^{k-1}_i$ passed up; depth k also reads the "
                 "token depth k-1 predicts)", fontsize=10)
    return fig


def render_speculative_speedup(acceptance: float = 0.85, n_drafts: int = 1, *,
                               measured: Mapping[str, float] | None = None,
                               paper: tuple[float, float] = (0.85, 0.90), paper_tps: float = 1.8,
                               max_drafts: int = 4) -> Figure:
    """Tokens per main-model pass against the acceptance rate, for 1..``max_drafts`` chained drafts.

    The curve for ``n_drafts`` is drawn bold and the point at ``acceptance`` is marked on it. The
    paper's 85-90% acceptance band (V3 §5.4.3) is shaded with its measured 1.8x tokens-per-second
    as a dotted line; ``measured`` ({label: acceptance}) adds points on the one-draft curve (1 + a).
    """
    acceptance = _check_rate(acceptance)
    if not 1 <= n_drafts <= max_drafts:
        raise ValueError(f"n_drafts={n_drafts}: must be in 1..max_drafts={max_drafts}")
    a = np.linspace(0.0, 1.0, 201)
    fig = Figure(figsize=(7.0, 4.2), layout="constrained")
    ax = fig.add_subplot()
    ax.axvspan(*paper, color="#cccccc", alpha=0.5,
               label=f"V3: {paper[0]:.0%}-{paper[1]:.0%} accepted")
    ax.axhline(paper_tps, color="#555555", linestyle=":",
               label=f"V3: {paper_tps}x tokens/s measured")
    for n in range(1, max_drafts + 1):
        ys = [expected_tokens_per_pass(x, n) for x in a]
        bold = n == n_drafts
        ax.plot(a, ys, color=DEPTH_COLORS[(n - 1) % len(DEPTH_COLORS)],
                linewidth=2.4 if bold else 1.0, alpha=1.0 if bold else 0.45,
                label=f"{n} draft{'s' if n > 1 else ''}")
    here = expected_tokens_per_pass(acceptance, n_drafts)
    ax.plot([acceptance], [here], "o", color="black", zorder=5)
    ax.annotate(f"{here:.2f} tokens/pass", (acceptance, here), textcoords="offset points",
                xytext=(-10, 10), ha="right", fontsize=9)
    for j, (label, value) in enumerate((measured or {}).items()):
        value = _check_rate(value)
        ax.plot([value], [1 + value], marker="*", markersize=13, linestyle="none",
                color=DEPTH_COLORS[(j + 3) % len(DEPTH_COLORS)],
                label=f"{label}: a = {value:.0%}", zorder=6)
    ax.set_xlim(0, 1)
    ax.set_ylim(1, max_drafts + 1.05)
    ax.set_xlabel("acceptance rate a of each draft token")
    ax.set_ylabel("tokens per main-model pass (speed-up bound)")
    ax.set_title(f"Speculative decoding with {n_drafts} MTP draft{'s' if n_drafts > 1 else ''}: "
                 f"a = {acceptance:.0%} gives at most {here:.2f}x")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return fig


__all__ = ["expected_tokens_per_pass", "render_mtp_chain", "render_speculative_speedup"]
