"""A chat in the notebook (lesson 14), shown as DeepSeek's app shows R1: the thinking streamed into
a collapsible grey box that says how long it thought ("thought for 41 tokens, 0.08 s"), the answer
below it; side by side, the same question asked to two checkpoints (base vs R1, teacher vs
student).

``render_reply`` and ``render_side_by_side`` are pure: a ``minir1.chat.Reply`` in, an HTML string
out (model text escaped), tested headless. ``chat_widget`` is the thin ipywidgets shell around
them: a text box and an ``ipywidgets.HTML`` that each streamed chunk re-renders. As with
``minir1.viz.interactive``, outside a live frontend (scripts, nbval, the ``ci`` profile,
``MINIR1_WIDGETS=0``) only the static HTML of what was asked is displayed.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from typing import Any

from minir1.chat import THINK, Chat, Reply
from minir1.utils import widgets_live

STYLE = ("font-family:system-ui,sans-serif;font-size:14px;line-height:1.4;"
         "border:1px solid #ddd;border-radius:8px;padding:.6em .8em;margin:.3em 0")
THINK_STYLE = ("color:#666;background:#f4f4f4;border-radius:6px;padding:.3em .7em;"
               "margin:.3em 0")
PRE = "white-space:pre-wrap;word-break:break-all;margin:.3em 0;font-family:monospace"


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def thought_summary(tokens: int, seconds: float, finish: str = "answer") -> str:
    """The box's title: "thought for 41 tokens, 0.08 s" (", cut at the token limit" when the
    reply ran out of tokens). For a finished reply the numbers are the thinking's own
    (``Reply.think_tokens`` and ``Reply.think_seconds``: up to and including ``</think>``)."""
    cut = ", cut at the token limit" if finish == "length" else ""
    return f"thought for {tokens} token{'s' if tokens != 1 else ''}, {seconds:.2f} s{cut}"


def render_partial(question: str, thinking: str, answer: str, tokens: int, seconds: float,
                   finish: str | None = None, label: str | None = None,
                   open_thinking: bool | None = None) -> str:
    """One reply as HTML, finished (``finish`` set) or still streaming (``finish=None``: the box
    says "thinking..." and stays open). ``tokens`` and ``seconds``: so far while streaming; for a
    finished reply the thinking's (``render_reply`` passes them). ``open_thinking``: unfold the
    box (default: while streaming only, as the app folds it once the answer comes)."""
    live = finish is None
    opened = live if open_thinking is None else open_thinking
    title = (f"thinking... ({tokens} tokens, {seconds:.2f} s)" if live
             else thought_summary(tokens, seconds, finish))
    parts = [f'<div class="minir1-reply" style="{STYLE}">']
    if label:
        parts.append(f'<div style="font-weight:600;color:#345">{_esc(label)}</div>')
    parts.append(f'<div style="color:#333"><b>Q:</b> {_esc(question)}</div>')
    if thinking or live:
        parts.append(f'<details class="minir1-thinking" style="{THINK_STYLE}"'
                     f'{" open" if opened else ""}><summary>{_esc(title)}</summary>'
                     f'<pre style="{PRE}">{_esc(thinking)}</pre></details>')
    else:  # reasoning off (an empty think block): say so instead of an empty box
        parts.append(f'<div style="color:#999;font-size:12px">(no thinking; {tokens} tokens, '
                     f'{seconds:.2f} s)</div>')
    parts.append(f'<div class="minir1-answer" style="font-size:1.25em;margin-top:.2em">'
                 f'{_esc(answer)}</div></div>')
    return "".join(parts)


def render_reply(reply: Reply, label: str | None = None,
                 open_thinking: bool | None = None) -> str:
    """A finished ``Reply`` as HTML: the question, the thinking folded in a ``<details>`` whose
    summary says its length and time, then the answer (all model text HTML-escaped)."""
    tokens, seconds = ((reply.think_tokens, reply.think_seconds) if reply.thinking
                       else (reply.tokens, reply.seconds))  # reasoning off: the whole reply's
    return render_partial(reply.question, reply.thinking, reply.answer, tokens, seconds,
                          reply.finish, label, open_thinking)


def _columns(cells: Sequence[str]) -> str:
    width = f"{100 / max(len(cells), 1):.1f}%"
    cols = "".join(f'<div style="flex:1 1 {width};min-width:0">{c}</div>' for c in cells)
    return f'<div class="minir1-side-by-side" style="display:flex;gap:.6em">{cols}</div>'


def render_side_by_side(replies: Sequence[Reply], labels: Sequence[str],
                        open_thinking: bool | None = None) -> str:
    """Replies of several checkpoints to the same question, one column each, headed by
    ``labels`` (as many as ``replies``)."""
    if len(replies) != len(labels):
        raise ValueError(f"{len(replies)} replies but {len(labels)} labels")
    return _columns([render_reply(r, lb, open_thinking) for r, lb in
                     zip(replies, labels, strict=True)])


class ChatWidget:
    """A text box, an Ask button and the replies of every chat in ``chats`` side by side.
    ``ask(question)`` (what the button calls) streams each chat's reply in turn into ``html``;
    ``replies`` holds the last question's finished replies."""

    def __init__(self, chats: dict[str, Chat], placeholder: str = "58+91",
                 every: int = 1) -> None:
        import ipywidgets as widgets

        if not chats:
            raise ValueError("chat_widget needs at least one chat")
        self.chats, self.every = dict(chats), max(int(every), 1)
        self.replies: list[Reply] = []
        self.text = widgets.Text(placeholder=placeholder, description="ask",
                                 continuous_update=False)
        self.button = widgets.Button(description="Ask", button_style="primary")
        self.html = widgets.HTML(value="")
        self.error = widgets.HTML(value="")
        self.button.on_click(lambda _: self.ask(self.text.value))
        # continuous_update=False: the value changes on Enter (or leaving the box)
        self.text.observe(lambda change: self.ask(change["new"]), names="value")
        self.box = widgets.VBox([widgets.HBox([self.text, self.button]), self.error, self.html])

    def ask(self, question: str) -> list[Reply]:
        """Ask every chat ``question``, re-rendering ``html`` as chunks arrive (every ``every``
        chunks); a bad question shows its error instead. Returns the finished replies."""
        self.error.value = ""
        labels = list(self.chats)
        done: list[str] = []
        replies: list[Reply] = []
        try:
            for i, (label, chat) in enumerate(self.chats.items()):
                texts = {THINK: "", "answer": ""}
                t0, n = time.perf_counter(), 0
                stream = chat.stream(question)
                for chunk in stream:
                    texts[chunk.kind] += chunk.text
                    n += 1
                    if n % self.every == 0:
                        live = render_partial(question, texts[THINK], texts["answer"], n,
                                              time.perf_counter() - t0, None, label)
                        pending = [render_partial(question, "", "", 0, 0.0, None, lb)
                                   for lb in labels[i + 1:]]
                        self.html.value = _columns([*done, live, *pending])
                replies.append(chat.history[-1])
                done.append(render_reply(replies[-1], label))
        except ValueError as err:
            self.error.value = f'<span style="color:#a00">error: {_esc(str(err))}</span>'
            return []
        self.replies = replies
        self.html.value = _columns(done)
        return replies

    def static_html(self) -> str:
        """What a page without a frontend shows: the last replies, side by side."""
        return self.html.value or "<i>(ask a question: widget.ask('58+91'))</i>"

    def _ipython_display_(self) -> None:
        from IPython.display import HTML, display

        if widgets_live():
            display(self.box)
        else:
            display(HTML(self.static_html()))


def chat_widget(chats: dict[str, Chat], question: str | None = None, **kw: Any) -> ChatWidget:
    """The notebook chat: ``chats`` maps a label ("base", "R1") to a ``Chat``; one chat gives the
    app's single column, two or more the side-by-side mode. ``question``: asked at once (so a
    static page shows a reply). Display the returned ``ChatWidget`` (the last line of a cell)."""
    widget = ChatWidget(chats, **kw)
    if question is not None:
        widget.ask(question)
    return widget


__all__ = ["ChatWidget", "chat_widget", "render_partial", "render_reply", "render_side_by_side",
           "thought_summary"]
