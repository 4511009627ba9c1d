"""Chat: the streamed thinking and answer are the greedy sampler's own text, split at the tags."""

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minir1.chat import (
    ANSWER,
    DIM,
    RESET,
    THINK,
    Chat,
    load_chat,
    run_command,
    show_reply,
    terminal,
)
from minir1.data.tags import ANSWER_CLOSE, THINK_CLOSE
from minir1.data.templates import DIRECT_PREFIX, REASON_PREFIX, prompt_for
from minir1.infer.generate import generate, sample, stream_tokens
from minir1.train.checkpoint import load_model

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "data" / "base-cpu"
ANSI = re.compile("\x1b\\[")


@pytest.fixture(scope="module")
def base():
    model, tok, _ = load_model(BASE)
    return model.eval(), tok


def greedy_chat(base, **settings):
    return Chat(*base, template="r1_zero", temperature=0.0, **settings)


def reference(base, question, prefix, n=60):
    """What the plain greedy loop ``generate`` writes after the prompt + prefix, decoded with the
    tags, cut after the first ``</answer>``; and how many tokens that is. After ``<think>`` the
    first token is the best but ``</think>`` (the reasoning mode), read off a full forward pass."""
    model, tok = base
    ids = tok.encode(prompt_for(question, "r1_zero") + prefix, bos=True)
    first = []
    if prefix == REASON_PREFIX:
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1]
        logits[tok.token_id(THINK_CLOSE)] = float("-inf")
        first = [int(logits.argmax())]
    new = first + generate(model, torch.tensor([ids + first]), n,
                           temperature=0.0)[0, len(ids) + len(first):].tolist()
    end = new.index(tok.token_id(ANSWER_CLOSE)) + 1
    return prefix + tok.decode(new[:end]), end


@pytest.mark.parametrize("question", ["58+91", "123*4", "2+3"])
def test_the_stream_is_the_thinking_then_the_answer_of_the_greedy_sampler(base, question):
    chat = greedy_chat(base)
    chunks = list(chat.stream(question))
    kinds = [c.kind for c in chunks]
    assert kinds == sorted(kinds, key=[THINK, ANSWER].index) and set(kinds) == {THINK, ANSWER}
    reply = chat.ask(question)
    assert "".join(c.text for c in chunks if c.kind == THINK) == reply.thinking
    assert "".join(c.text for c in chunks if c.kind == ANSWER) == reply.answer
    text, n = reference(base, question, REASON_PREFIX)
    assert f"<think>{reply.thinking}</think><answer>{reply.answer}</answer>" == text
    assert (reply.finish, reply.tokens) == ("answer", n)  # stopped at </answer>
    assert reply.seconds > 0 and chat.history[-1] == reply and reply.thinking
    # the thinking's own length: its characters (one token each here) and the </think>
    think_ids = base[1].encode(f"{reply.thinking}</think>")
    assert reply.think_tokens == len(think_ids) < reply.tokens
    assert 0 < reply.think_seconds < reply.seconds


def test_reasoning_off_answers_at_once(base):
    chat = greedy_chat(base, reasoning=False)
    chunks = list(chat.stream("58+91"))
    reply = chat.history[-1]
    assert reply.thinking == "" and {c.kind for c in chunks} == {ANSWER}
    assert (reply.think_tokens, reply.think_seconds) == (0, 0.0)
    text, n = reference(base, "58+91", DIRECT_PREFIX)
    assert f"{DIRECT_PREFIX}{reply.answer}{ANSWER_CLOSE}" == text and reply.tokens == n
    assert chat.prompt("58+91").endswith(DIRECT_PREFIX)


def test_max_tokens_and_the_context_bound_the_reply(base):
    chat = greedy_chat(base, max_new_tokens=5)
    reply = chat.ask("58+91")
    full, _ = reference(base, "58+91", REASON_PREFIX)
    assert (reply.tokens, reply.finish, reply.answer) == (5, "length", "")
    assert reply.think_tokens == 5  # cut inside its thinking: all of it was thinking
    assert reply.thinking == full[len(REASON_PREFIX):][:5]
    chat.max_new_tokens = 160
    long = "+".join(["1"] * 100)  # the prompt leaves fewer than 160 positions
    room = base[0].cfg.max_seq_len - len(base[1].encode(chat.prompt(long), bos=True))
    assert 0 < room < 160 and chat.ask(long).tokens <= room
    with pytest.raises(ValueError, match="question too long"):
        chat.stream("+".join(["1"] * 130))


def test_a_character_outside_the_alphabet_is_named_before_any_token(base):
    chat = greedy_chat(base)
    with pytest.raises(ValueError, match=r"'é' \(U\+00E9\) at position 3 of the question"):
        chat.stream("12+é3")  # raised by the call itself, not deep inside the sampler
    with pytest.raises(ValueError, match="empty question"):
        chat.ask("  ")
    assert chat.history == []
    for bad in ({"temperature": -1.0}, {"top_p": 0.0}, {"max_new_tokens": 0},
                {"template": "r1"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Chat(*base, **bad)


def test_stream_tokens_is_sample_one_id_at_a_time(base):
    model, tok = base
    ids = tok.encode(prompt_for("345+678", "r1_zero") + REASON_PREFIX, bos=True)
    stops = [tok.token_id(ANSWER_CLOSE), tok.eos_id]
    for settings in ({"temperature": 0.0}, {"temperature": 1.0, "top_p": 0.9}):
        whole = sample(model, [ids], 40, stop_ids=stops,
                       generator=torch.Generator().manual_seed(3), **settings)
        streamed = stream_tokens(model, ids, 40, stop_ids=stops,
                                 generator=torch.Generator().manual_seed(3), **settings)
        assert list(streamed) == whole.completions()[0]
    model.train()
    partial = stream_tokens(model, ids, 40)
    next(partial)
    assert not model.training
    partial.close()  # an abandoned stream gives the model its mode back
    assert model.training
    model.eval()
    with pytest.raises(ValueError, match="max_seq_len"):
        stream_tokens(model, ids, 1000)  # checked at the call


def test_a_seed_makes_sampled_replies_reproducible(base):
    a, b = (Chat(*base, seed=7, temperature=1.0) for _ in range(2))
    assert [a.ask("58+91").answer, a.ask("7*8").answer] == [b.ask("58+91").answer,
                                                           b.ask("7*8").answer]


def test_load_chat_finds_the_best_model_and_its_template(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIR1_RUNS", str(tmp_path))
    chat = load_chat(temperature=0.0)
    assert str(BASE) in chat.source and chat.template == "r1_zero"
    run = tmp_path / "r1-cpu"  # an R1 pipeline run: its final stage, trained in the chat frame
    shutil.copytree(BASE, run / "r1" / "checkpoint")
    (run / "r1" / "grpo_config.json").write_text(json.dumps({"template": "chat"}))
    chat = load_chat(max_new_tokens=20)
    assert chat.source.startswith(str(run / "r1" / "checkpoint")) and chat.template == "chat"
    assert chat.max_new_tokens == 20 and load_chat(run, template="r1_zero").template == "r1_zero"
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_chat(tmp_path / "empty")


def test_commands_change_the_settings_or_say_what_is_wrong(base):
    chat = greedy_chat(base)
    assert run_command(chat, "/temp 0.3") == "temperature 0.3" and chat.temperature == 0.3
    assert run_command(chat, "/reason off") == "reasoning off" and not chat.reasoning
    for bad, message in (("/temp hot", "/temp takes"), ("/temp -1", "/temp takes"),
                         ("/temp nan", "/temp takes"), ("/temp inf", "/temp takes"),
                         ("/reason maybe", "on or off"),
                         ("/foo", "unknown command '/foo'")):
        with pytest.raises(ValueError, match=message):
            run_command(chat, bad)
    assert (chat.temperature, chat.reasoning) == (0.3, False)
    assert run_command(chat, "/quit") is None


def test_the_loop_survives_errors_and_stops_at_quit(base):
    chat = greedy_chat(base)
    out, err = io.StringIO(), io.StringIO()
    lines = "58+91\n/foo\n/temp x\n12+é\n\n/reason off\n58+91\n/quit\n2+3\n"
    terminal(chat, io.StringIO(lines), out, err)
    answers = out.getvalue().splitlines()
    assert [answers[0], answers[2]] == [r.answer for r in chat.history]
    assert answers[1].startswith("error: character 'é'") and len(answers) == 3
    notes = err.getvalue().splitlines()
    assert notes[1:] == ["error: unknown command '/foo' (commands: /reason on|off, /temp X "
                         "(0: greedy), /quit (or end of input))",
                         "error: /temp takes a number >= 0, not 'x'", "reasoning off"]
    assert chat.history[1].thinking == "" and not ANSI.search(out.getvalue())


def test_colour_shows_the_thinking_faint_and_the_answer_plain(base):
    chat = greedy_chat(base)
    out = io.StringIO()
    reply = show_reply(chat, "58+91", out, colour=True)
    shown = out.getvalue()
    assert shown.startswith(DIM + reply.thinking + RESET + "\n" + reply.answer + RESET + "\n")
    assert f"({reply.tokens} tokens in" in shown


def test_the_command_line_piped_prints_one_answer_per_question(base):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "minir1", "chat", "--run", str(BASE),
                          "--temperature", "0", "--max-tokens", "80"],
                         input="2+3\n/reason off\n/temp 0\n58+91\n/bad\n1+é\n", text=True,
                         capture_output=True, cwd=ROOT, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    chat = greedy_chat(base)
    expected = [chat.ask("2+3").answer]
    chat.reasoning = False
    expected.append(chat.ask("58+91").answer)
    lines = out.stdout.splitlines()
    assert lines[:2] == expected and lines[2].startswith("error: character 'é'")
    assert len(lines) == 3 and not ANSI.search(out.stdout + out.stderr)
    assert "data/base-cpu" in out.stderr and "unknown command '/bad'" in out.stderr
