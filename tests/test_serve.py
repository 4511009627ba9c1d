"""The OpenAI-compatible endpoint, driven by the official ``openai`` client against a real server
on a free local port: its replies are ``Chat.ask``'s (the reference), streamed or whole."""

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
import uvicorn

from minir1.chat import Chat, load_chat
from minir1.serve import INSTALL, create_app, model_name
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "data" / "base-cpu"
NAME = "base-cpu"


@pytest.fixture(scope="module")
def chat():
    return load_chat(BASE)


@pytest.fixture(scope="module")
def server(chat):
    """(base url, the app) of a uvicorn server in a background thread, stopped at the end."""
    app = create_app(chat, model_name(BASE))
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", app
    srv.should_exit = True
    thread.join(timeout=10)
    assert not thread.is_alive()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server[0]}/v1", api_key="unused", max_retries=0)


def reference(chat, question, **settings):
    """What ``Chat.ask`` answers with the same settings, greedy by default."""
    settings = {"temperature": 0.0, **settings}
    return Chat(chat.model, chat.tok, template=chat.template, **settings).ask(question)


def ask(client, question, **kw):
    kw.setdefault("temperature", 0)
    return client.chat.completions.create(model=NAME, messages=[
        {"role": "system", "content": "ignored"}, {"role": "user", "content": question}], **kw)


def streamed(client, question, **kw):
    """(thinking, answer, finish_reason, usage, chunks) of a streamed reply."""
    chunks = list(ask(client, question, stream=True, stream_options={"include_usage": True}, **kw))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    thinking = "".join(getattr(d, "reasoning_content", None) or "" for d in deltas)
    answer = "".join(d.content or "" for d in deltas)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finish[-1] is not None and all(f is None for f in finish[:-1])
    return thinking, answer, finish[-1], chunks[-1].usage, chunks


def test_models_lists_the_one_model(client, server):
    assert [m.id for m in client.models.list()] == [NAME]
    assert client.models.retrieve(NAME).id == NAME
    assert httpx.get(f"{server[0]}/v1/models/nope").status_code == 404


@pytest.mark.parametrize("question", ["58+91", "123*4"])
def test_whole_and_streamed_replies_are_the_chat_reference(client, chat, question):
    ref = reference(chat, question, max_new_tokens=60)
    out = ask(client, question, max_tokens=60)
    message = out.choices[0].message
    assert (message.reasoning_content, message.content) == (ref.thinking, ref.answer)
    assert ref.thinking and ref.answer and "<" not in message.content + message.reasoning_content
    assert out.choices[0].finish_reason == "stop" and out.object == "chat.completion"
    n_prompt = len(chat.tok.encode(chat.prompt(question), bos=True))
    assert (out.usage.prompt_tokens, out.usage.completion_tokens) == (n_prompt, ref.tokens)
    thinking, answer, finish, usage, chunks = streamed(client, question, max_tokens=60)
    assert (thinking, answer, finish) == (ref.thinking, ref.answer, "stop")
    assert usage.completion_tokens == ref.tokens and usage.prompt_tokens == n_prompt
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].model == NAME
    kinds = ["think" if getattr(c.choices[0].delta, "reasoning_content", None) else "answer"
             for c in chunks[1:-2]]
    assert kinds == sorted(kinds, key=["think", "answer"].index)  # the thinking comes first


def test_max_tokens_cuts_the_reply_with_finish_length(client, chat):
    ref = reference(chat, "58+91", max_new_tokens=5)
    out = ask(client, "58+91", max_tokens=5)
    assert out.choices[0].finish_reason == "length" and out.usage.completion_tokens == 5
    assert out.choices[0].message.reasoning_content == ref.thinking
    assert streamed(client, "58+91", max_completion_tokens=5)[:3] == (ref.thinking, "", "length")


def test_thinking_disabled_answers_at_once(client, chat):
    ref = reference(chat, "58+91", reasoning=False)
    body = {"thinking": {"type": "disabled"}}
    message = ask(client, "58+91", extra_body=body).choices[0].message
    assert (message.reasoning_content, message.content) == ("", ref.answer)
    assert streamed(client, "58+91", extra_body=body)[:2] == ("", ref.answer)


def test_a_seed_makes_sampled_replies_reproducible(client):
    a, b = (ask(client, "345+678", temperature=1.0, top_p=0.9, seed=5).choices[0].message
            for _ in range(2))
    assert (a.reasoning_content, a.content) == (b.reasoning_content, b.content)


def test_concurrent_clients_each_get_their_own_answer(client, chat):
    questions = ["58+91", "123*4", "2+3", "7*8", "99999*99999", "345+678", "12-5", "6*7"]
    refs = {q: reference(chat, q, max_new_tokens=48) for q in questions}

    def one(i_q):
        i, q = i_q
        if i % 2:  # half of them streamed
            return q, streamed(client, q, max_tokens=48)[:2]
        m = ask(client, q, max_tokens=48).choices[0].message
        return q, (m.reasoning_content, m.content)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, enumerate(questions)))
    seconds = time.perf_counter() - t0
    assert [r for q, r in results] == [(refs[q].thinking, refs[q].answer) for q in questions]
    with ThreadPoolExecutor(4) as pool:  # the throughput of short whole replies
        t0 = time.perf_counter()
        list(pool.map(lambda q: ask(client, q, max_tokens=32), questions))
        rate = len(questions) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    stream = ask(client, "99999*99999", stream=True)
    next(c for c in stream if c.choices and getattr(c.choices[0].delta, "reasoning_content",
                                                    None))
    first = time.perf_counter() - t0
    stream.close()
    print(f"\n8 mixed requests from 4 threads in {seconds:.2f} s; "
          f"{rate:.1f} requests/s (8 whole replies of <= 32 tokens, 4 threads); "
          f"time to first token {first * 1000:.0f} ms")


@pytest.fixture
def slow(server, monkeypatch):
    """The server's engine, each decoding step 25 ms slower (a bigger model's pace)."""
    engine = server[1].state.engine
    wait_idle(engine)  # an earlier test's closed stream ends on the server a moment later
    step = engine.step

    def slow_step(reply):
        time.sleep(0.025)
        return step(reply)

    monkeypatch.setattr(engine, "step", slow_step)
    return engine


def test_a_slow_stream_does_not_hold_up_the_models_list(client, slow):
    stream = ask(client, "99999*99999", stream=True)  # 41 tokens: about a second
    next(iter(stream))
    t0 = time.perf_counter()
    assert [m.id for m in client.models.list()] == [NAME] and slow.live == 1
    assert time.perf_counter() - t0 < 0.2
    stream.close()
    wait_idle(slow)


def wait_idle(engine, seconds=5.0):
    """Until no reply is open (a closed stream's server side ends a moment later)."""
    deadline = time.monotonic() + seconds
    while engine.live and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.live == 0  # every reply was finished or closed, none left half-way


def post(url, body):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{url}/v1/chat/completions", content=data, timeout=30,
                      headers={"Content-Type": "application/json"})


GOOD = {"model": NAME, "messages": [{"role": "user", "content": "2+3"}], "max_tokens": 40,
        "temperature": 0}
BAD = [  # (what changes in GOOD, status, param, code, words of the message)
    (b"{not json", 400, None, None, "could not parse the JSON"),
    ({"messages": []}, 400, "messages", "invalid_value", "non-empty"),
    ({"messages": None}, 400, "messages", "invalid_value", "non-empty"),
    ({"messages": [{"role": "system", "content": "hi"}]}, 400, "messages", "invalid_value",
     "no user message"),
    ({"messages": [{"content": "2+3"}]}, 400, "messages", "invalid_value", "'role'"),
    ({"messages": [{"role": "user", "content": "  "}]}, 400, "messages", "invalid_value",
     "empty question"),
    ({"messages": [{"role": "user", "content": "12+é3"}]}, 400, "messages", "invalid_value",
     "'é' (U+00E9) at position 3 of the question"),
    ({"model": "gpt-4o"}, 404, "model", "model_not_found", "'gpt-4o' does not exist"),
    ({"model": None, "drop": "model"}, 400, "model", "missing_required_param", "model"),
    ({"max_tokens": 1000}, 400, "max_tokens", "context_length_exceeded",
     "maximum context length is 256"),
    ({"messages": [{"role": "user", "content": "+".join(["1"] * 130)}], "max_tokens": None},
     400, "messages", "context_length_exceeded", "maximum context length"),
    ({"max_tokens": 0}, 400, "max_tokens", "invalid_value", ">= 1"),
    ({"max_tokens": "ten"}, 400, "max_tokens", "invalid_value", ">= 1"),
    ({"temperature": -0.5}, 400, "temperature", "invalid_value", "[0, 2]"),
    ({"temperature": 3}, 400, "temperature", "invalid_value", "[0, 2]"),
    ({"temperature": "hot"}, 400, "temperature", "invalid_type", "number"),
    ({"top_p": 0}, 400, "top_p", "invalid_value", "(0, 1]"),
    ({"top_p": 1.5}, 400, "top_p", "invalid_value", "(0, 1]"),
    ({"n": 2}, 400, "n", "invalid_value", "n=1"),
    ({"seed": "x"}, 400, "seed", "invalid_type", "integer"),
    ({"thinking": {"type": "maybe"}}, 400, "thinking", "invalid_value", "enabled"),
    (["a", "list"], 400, None, None, "JSON object"),
]


@pytest.mark.parametrize("change, status, param, code, words", BAD,
                         ids=[str(b[0])[:40] for b in BAD])
def test_a_bad_request_gets_an_openai_error_and_the_server_goes_on(server, change, status,
                                                                   param, code, words):
    if isinstance(change, dict):
        body = {**GOOD, **change}
        body.pop(body.pop("drop", None), None)
    else:
        body = change if isinstance(change, bytes) else json.dumps(change).encode()
    r = post(server[0], body)
    assert r.status_code == status
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    assert words in error["message"]
    for stream in (False, True):  # refused before any token, streamed or not
        if isinstance(body, dict):
            assert post(server[0], {**body, "stream": stream}).status_code == status
    good = post(server[0], GOOD)
    assert good.status_code == 200 and good.json()["choices"][0]["message"]["content"]


def test_the_openai_client_raises_its_own_errors(client):
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "1"}])
    assert err.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError, match="U\\+00E9"):
        ask(client, "1+é")
    assert httpx.get(f"{client.base_url}nowhere").json()["error"]["message"] == "Not Found"


def test_a_client_that_leaves_mid_stream_stops_the_generation(server, chat, slow):
    url, engine = server[0], slow
    before = engine.steps
    body = {**GOOD, "messages": [{"role": "user", "content": "99999*99999"}], "stream": True,
            "max_tokens": 100}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as r:
        assert r.status_code == 200
        first = next(r.iter_lines())
        assert first.startswith("data: ") and json.loads(first[6:])["choices"][0]["delta"]
    wait_idle(engine)
    assert engine.steps - before < reference(chat, "99999*99999").tokens // 2
    good = post(url, GOOD)
    assert good.status_code == 200 and good.json()["choices"][0]["finish_reason"] == "stop"


def test_the_chat_page_streams_from_the_endpoint(server):
    r = httpx.get(server[0] + "/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert "/v1/chat/completions" in page and "reasoning_content" in page
    assert "<details" in page and f'model: "{NAME}"' in page and "stream: true" in page


def test_the_command_line_serves_the_model():
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "minir1", "serve", "--run", str(BASE),
                             "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                models = httpx.get(f"http://127.0.0.1:{port}/v1/models").json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "minir1 serve did not start"
                time.sleep(0.1)
        assert [m["id"] for m in models["data"]] == [NAME]
        r = post(f"http://127.0.0.1:{port}", GOOD)
        assert r.json()["choices"][0]["message"]["reasoning_content"]
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert f"as '{NAME}' on http://127.0.0.1:{port}/" in out


def test_without_the_extra_the_error_says_what_to_install(chat, monkeypatch):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # `import fastapi` now fails
    with pytest.raises(ImportError, match=r"pip install minir1\[serve\]"):
        create_app(chat, NAME)
    assert "minir1[serve]" in INSTALL
