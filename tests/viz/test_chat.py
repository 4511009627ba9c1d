"""The notebook chat widget: the pure HTML renders, and the ipywidgets shell without a frontend."""

from pathlib import Path

import pytest

from minir1.chat import Chat, Reply, load_chat
from minir1.viz.chat import (
    ChatWidget,
    chat_widget,
    render_partial,
    render_reply,
    render_side_by_side,
    thought_summary,
)

BASE = Path(__file__).resolve().parents[2] / "data" / "base-cpu"
# 12 thinking characters + </think>, then <answer>149</answer>: 18 tokens in all
REPLY = Reply("58+91", "8+1=9,5+9=14", "149", 18, 0.0834, "answer", 13, 0.0611)


def test_reply_has_thinking_in_details_with_length_and_time():
    page = render_reply(REPLY)
    assert "<details" in page and "</details>" in page
    summary = page[page.index("<summary>") + 9:page.index("</summary>")]
    assert summary == "thought for 13 tokens, 0.06 s"  # the thinking's own, not the reply's
    details = page[page.index("<details"):page.index("</details>")]
    assert "8+1=9,5+9=14" in details and "149" not in details
    answer = page[page.index("</details>"):]
    assert "149" in answer and "58+91" in page[:page.index("<details")]
    assert " open" not in page[page.index("<details"):page.index(">", page.index("<details"))]


def test_model_text_is_escaped():
    reply = Reply("1<2 & 3>2", "a<b&c", "<script>x</script>", 5, 0.01, "eos")
    page = render_reply(reply, label="R1 <best>")
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "a&lt;b&amp;c" in page and "1&lt;2 &amp; 3&gt;2" in page
    assert "R1 &lt;best&gt;" in page


def test_cut_reply_and_reasoning_off():
    cut = thought_summary(1, 0.5, "length")
    assert cut == "thought for 1 token, 0.50 s, cut at the token limit"
    off = render_reply(Reply("2+2", "", "4", 4, 0.02, "answer"))
    assert "<details" not in off and "no thinking" in off and "4" in off


def test_streaming_render_is_open_and_says_thinking():
    page = render_partial("2+2", "2+2=", "", 4, 0.01)
    assert "<details" in page and " open>" in page and "thinking..." in page


def test_side_by_side_has_both_labels():
    other = Reply("58+91", "", "150", 4, 0.01, "answer")
    page = render_side_by_side([REPLY, other], ["base", "R1"])
    assert page.count('class="minir1-reply"') == 2
    assert page.index("base") < page.index("R1") and "149" in page and "150" in page
    with pytest.raises(ValueError, match="labels"):
        render_side_by_side([REPLY], ["a", "b"])


@pytest.fixture(scope="module")
def model_and_tok():
    chat = load_chat(BASE)
    return chat.model, chat.tok


def test_widget_builds_without_frontend_and_updates_on_ask(model_and_tok):
    model, tok = model_and_tok
    chats = {"greedy": Chat(model, tok, temperature=0.0, max_new_tokens=40),
             "direct": Chat(model, tok, temperature=0.0, reasoning=False, max_new_tokens=40)}
    widget = chat_widget(chats)
    assert isinstance(widget, ChatWidget) and widget.html.value == ""
    seen = []
    widget.html.observe(lambda change: seen.append(change["new"]), names="value")
    replies = widget.ask("58+91")
    assert len(replies) == 2 and len(seen) > 2  # re-rendered while streaming, then at the end
    assert widget.html.value == render_side_by_side(replies, ["greedy", "direct"])
    reference = Chat(model, tok, temperature=0.0, max_new_tokens=40).ask("58+91")
    assert replies[0].thinking == reference.thinking and replies[0].answer == reference.answer
    assert "greedy" in widget.static_html() and "direct" in widget.static_html()
    assert widget.ask("58+9€") == [] and "error" in widget.error.value
    assert widget.html.value == render_side_by_side(replies, ["greedy", "direct"])


def test_widget_needs_a_chat():
    with pytest.raises(ValueError, match="at least one"):
        chat_widget({})
