"""The same model behind a standard endpoint: OpenAI's chat-completions API over HTTP, the
thinking returned apart as DeepSeek's own API returns R1's (``reasoning_content`` beside
``content``); in the terminal, ``minir1 serve``.

``POST /v1/chat/completions`` answers the last user message (the models are single-turn; system
and earlier messages are ignored), whole (a ``chat.completion``) or streamed as server-sent events
(``chat.completion.chunk`` lines, then ``data: [DONE]``). ``temperature`` (default 0.6, R1's),
``top_p`` (0.95), ``max_tokens`` (or ``max_completion_tokens``; default: what the context has
room for), ``seed`` and ``stream_options.include_usage`` are honoured; DeepSeek's body field
``"thinking": {"type": "disabled"}`` turns the reasoning off (an empty think block, as
``Chat.reasoning = False``). ``GET /v1/models`` lists the one model, ``GET /`` is a small chat page.
A bad request gets a 4xx with OpenAI's error body ``{"error": {"message", "type", "param",
"code"}}``. Requests run in worker threads and take turns on the model one decoding step at a
time (a lock), so replies interleave and the event loop stays free; a stream whose client has
gone is closed, which ends its sampler. The server is FastAPI on uvicorn (``minir1[serve]``).
"""

import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from minir1.chat import (
    ANSWER,
    Chat,
    Chunk,
    Reply,
    check_question,
    default_checkpoint,
    find_checkpoint,
    load_chat,
)

INSTALL = "the server needs FastAPI and uvicorn: pip install minir1[serve]"
FINISH = {"answer": "stop", "eos": "stop", "length": "length"}  # Reply.finish -> OpenAI's
ROLES = ("system", "developer", "user", "assistant", "tool")


class APIError(Exception):
    """A request the server refuses: ``status`` and OpenAI's error fields."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None,
                 status: int = 400, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.kind, self.param, self.code = status, kind, param, code

    def body(self) -> dict[str, Any]:
        """OpenAI's JSON error body."""
        return {"error": {"message": str(self), "type": self.kind, "param": self.param,
                          "code": self.code}}


# ------------------------------------------------------------------------------ the request
@dataclass(frozen=True)
class Job:
    """One request, checked: the question, the ``Chat`` to answer it with, how to reply."""

    question: str
    chat: Chat
    prompt_tokens: int
    stream: bool
    include_usage: bool


def _number(body: dict[str, Any], name: str, default: float, low: float, high: float,
            open_low: bool = False) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise APIError(f"'{name}' must be a number, not {value!r}", name, "invalid_type")
    if not (low < value <= high if open_low else low <= value <= high):
        span = f"({low:g}, {high:g}]" if open_low else f"[{low:g}, {high:g}]"
        raise APIError(f"'{name}'={value}: must be in {span}", name, "invalid_value")
    return float(value)


def _question(messages: Any) -> str:
    """The text of the last user message."""
    if not isinstance(messages, list) or not messages:
        raise APIError("'messages' must be a non-empty list of messages", "messages",
                       "invalid_value")
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise APIError(f"each message needs a 'role' in {ROLES}: got {m!r}", "messages",
                           "invalid_value")
    users = [m for m in messages if m["role"] == "user"]
    if not users:
        raise APIError("'messages' has no user message to answer", "messages", "invalid_value")
    content = users[-1].get("content")
    if isinstance(content, list):  # content parts: the text ones, joined
        content = "".join(p.get("text", "") for p in content
                          if isinstance(p, dict) and p.get("type") == "text")
    if not isinstance(content, str):
        raise APIError("the user message's 'content' must be text", "messages", "invalid_type")
    return content


def _reasoning(body: dict[str, Any]) -> bool:
    """DeepSeek's switch: ``"thinking": {"type": "enabled" | "disabled"}`` (default enabled)."""
    thinking = body.get("thinking") or {"type": "enabled"}
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled"):
        raise APIError(f"'thinking' must be {{\"type\": \"enabled\" | \"disabled\"}}, not "
                       f"{thinking!r}", "thinking", "invalid_value")
    return thinking["type"] == "enabled"


def parse_request(body: Any, base: Chat, model: str) -> Job:
    """Check a chat-completions body against the model ``base`` serves under the name ``model``;
    ``APIError`` says what is wrong, before any token is generated."""
    if not isinstance(body, dict):
        raise APIError("the request body must be a JSON object")
    if "model" not in body:
        raise APIError("you must provide a model parameter", "model", "missing_required_param")
    if body["model"] != model:
        raise APIError(f"The model '{body['model']}' does not exist (this server has '{model}')",
                       "model", "model_not_found", status=404)
    if body.get("n", 1) != 1:
        raise APIError("only n=1 is supported", "n", "invalid_value")
    question = _question(body.get("messages"))
    try:
        check_question(question, base.tok)
    except ValueError as err:
        raise APIError(str(err), "messages", "invalid_value") from err
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise APIError(f"'seed' must be an integer, not {seed!r}", "seed", "invalid_type")
    chat = replace(base, temperature=_number(body, "temperature", base.temperature, 0, 2),
                   top_p=_number(body, "top_p", base.top_p, 0, 1, open_low=True),
                   reasoning=_reasoning(body), seed=seed, history=[])
    return _sized(body, chat, question)


def _sized(body: dict[str, Any], chat: Chat, question: str) -> Job:
    """The job with its token budget: ``max_tokens`` if given, else the room the context leaves."""
    n_prompt = len(chat.tok.encode(chat.prompt(question), bos=True))
    context = chat.model.cfg.max_seq_len
    name = "max_tokens" if body.get("max_tokens") is not None else "max_completion_tokens"
    limit = body.get(name)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise APIError(f"'{name}' must be an integer >= 1, not {limit!r}", name, "invalid_value")
    if n_prompt + (limit or 1) > context:
        raise APIError(f"This model's maximum context length is {context} tokens. However, you "
                       f"requested {n_prompt + (limit or 1)} tokens ({n_prompt} in the messages, "
                       f"{limit or 1} in the completion).", name if limit else "messages",
                       "context_length_exceeded")
    options = body.get("stream_options") or {}
    return Job(question, replace(chat, max_new_tokens=limit or context - n_prompt, history=[]),
               n_prompt, bool(body.get("stream", False)),
               isinstance(options, dict) and bool(options.get("include_usage")))


# ------------------------------------------------------------------------------ the model
class Engine:
    """The one model every request shares: replies take turns on it one step at a time."""

    def __init__(self, chat: Chat, name: str) -> None:
        self.chat, self.name = chat, name
        self.lock = threading.Lock()  # the sampler's state (the weights' freeze) is global
        self.live = 0  # replies begun and neither finished nor closed
        self.steps = 0  # chunks generated, all replies together

    def open(self, job: Job) -> Generator[Chunk, None, Reply]:
        """The reply's chunks (nothing is generated until the first ``step``)."""
        reply = job.chat.stream(job.question)
        with self.lock:
            self.live += 1
        return reply

    def step(self, reply: Generator[Chunk, None, Reply]) -> Chunk | Reply:
        """The next chunk of ``reply``, or at its end the whole ``Reply``."""
        with self.lock:
            try:
                self.steps += 1
                return next(reply)
            except StopIteration as stop:
                self.live -= 1
                return stop.value
            except BaseException:
                self.live -= 1
                raise

    def close(self, reply: Generator[Chunk, None, Reply]) -> None:
        """Stop ``reply`` early (its client has gone): the sampler's loop ends."""
        with self.lock:
            if reply.gi_frame is not None:  # not finished yet
                reply.close()
                self.live -= 1

    def run(self, job: Job) -> Reply:
        """The whole reply (in a worker thread)."""
        reply = self.open(job)
        while isinstance(out := self.step(reply), Chunk):
            pass
        return out


def _usage(job: Job, reply: Reply) -> dict[str, int]:
    return {"prompt_tokens": job.prompt_tokens, "completion_tokens": reply.tokens,
            "total_tokens": job.prompt_tokens + reply.tokens}


def completion(job: Job, reply: Reply, model: str) -> dict[str, Any]:
    """The ``chat.completion`` object of a whole reply."""
    message = {"role": "assistant", "content": reply.answer,
               "reasoning_content": reply.thinking}
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
            "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": FINISH[reply.finish]}],
            "usage": _usage(job, reply)}


async def sse_events(engine: Engine, job: Job) -> AsyncIterator[str]:
    """The streamed reply as server-sent events: a role chunk, one chunk per piece of text
    (``delta.reasoning_content`` or ``delta.content``), the finish chunk, the usage chunk if asked,
    then ``[DONE]``. Closed early (the client went away), it closes the reply."""
    import anyio

    head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": engine.name}

    def event(delta: dict[str, str] | None, finish: str | None = None, **extra: Any) -> str:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None,
                                             "finish_reason": finish}]
        return f"data: {json.dumps({**head, 'choices': choices, **extra})}\n\n"

    reply = await anyio.to_thread.run_sync(engine.open, job)
    try:
        yield event({"role": "assistant", "content": ""})
        while isinstance(out := await anyio.to_thread.run_sync(engine.step, reply), Chunk):
            yield event({"content" if out.kind == ANSWER else "reasoning_content": out.text})
        yield event({}, FINISH[out.finish])
        if job.include_usage:
            yield event(None, usage=_usage(job, out))
        yield "data: [DONE]\n\n"
    finally:
        with anyio.CancelScope(shield=True):  # a cancelled stream still closes its reply
            await anyio.to_thread.run_sync(engine.close, reply)


# ------------------------------------------------------------------------------ the app
def model_name(ckpt: Path) -> str:
    """The id a checkpoint is served under: its run's directory name (``r1-cpu`` for
    ``runs/r1-cpu/r1/checkpoint``, ``base-cpu`` for ``data/base-cpu``)."""
    ckpt = ckpt.resolve()
    if ckpt.name == "checkpoint":
        ckpt = ckpt.parent
        if ckpt.name in ("r1", "distilled"):  # a pipeline's final stage
            ckpt = ckpt.parent
    return ckpt.name


def create_app(chat: Chat, name: str) -> Any:
    """The FastAPI app serving ``chat``'s model as ``name`` (``chat``'s settings are the
    defaults of every request). FastAPI reads the handlers' annotations at run time (this module
    has no ``from __future__ import annotations``): ``Request`` is what it passes the request as."""
    try:
        from fastapi import FastAPI, Request
        from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
        from starlette.exceptions import HTTPException
    except ImportError as err:
        raise ImportError(INSTALL) from err
    chat.model.eval()  # replies interleave: none may hand another the model in training mode
    engine = Engine(chat, name)
    app = FastAPI(title="minir1", description=__doc__)
    app.state.engine = engine

    @app.exception_handler(APIError)
    async def refused(request: Request, err: APIError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(HTTPException)  # unknown paths and methods, in OpenAI's shape too
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        return await refused(request, APIError(str(err.detail), status=err.status_code))

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(name)]}

    @app.get("/v1/models/{model}")
    async def model(model: str) -> dict[str, Any]:
        if model != name:
            raise APIError(f"The model '{model}' does not exist", "model", "model_not_found", 404)
        return _model_card(name)

    @app.post("/v1/chat/completions")
    async def completions(request: Request) -> Any:
        import anyio

        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as err:
            raise APIError(f"We could not parse the JSON body of your request: {err}") from err
        job = parse_request(body, chat, name)
        if job.stream:
            return StreamingResponse(sse_events(engine, job), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        return completion(job, await anyio.to_thread.run_sync(engine.run, job), name)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE.replace("MODEL_NAME", name)

    return app


def _model_card(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "minir1"}


def serve(run: str | Path | None = None, host: str = "127.0.0.1", port: int = 8000,
          **settings: Any) -> None:
    """Serve the model of ``run`` (see ``minir1.chat.find_checkpoint``; ``None``: the best there
    is) on ``host``:``port`` until interrupted; ``settings``: the ``Chat`` defaults."""
    try:
        import uvicorn
    except ImportError as err:
        raise ImportError(INSTALL) from err
    ckpt = find_checkpoint(run) if run is not None else default_checkpoint()
    chat = load_chat(ckpt, **settings)
    app = create_app(chat, model_name(ckpt))
    print(f"serving {chat.source} as '{model_name(ckpt)}' on http://{host}:{port}/ "
          f"(OpenAI API at http://{host}:{port}/v1)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")


PAGE = """<!doctype html>
<meta charset="utf-8"><title>minir1 chat</title>
<style>
body{font:16px system-ui,sans-serif;max-width:46em;margin:2em auto;padding:0 1em}
details{color:#777;background:#f4f4f4;border-radius:6px;padding:.4em .8em;margin:.6em 0}
pre{white-space:pre-wrap;margin:.3em 0}#answer{font-size:1.2em}input[type=text]{width:60%}
</style>
<h1>minir1: MODEL_NAME</h1>
<form id="f"><input id="q" type="text" placeholder="58+91" autofocus>
<label><input id="think" type="checkbox" checked> DeepThink</label>
<label>temperature <input id="t" type="number" value="0.6" min="0" max="2" step="0.1"
 style="width:4em"></label> <button>Ask</button></form>
<details id="box" open><summary>Thinking</summary><pre id="thinking"></pre></details>
<div id="answer"></div><p id="note" style="color:#a00"></p>
<script>
const $ = id => document.getElementById(id);
$("f").onsubmit = async e => {
  e.preventDefault();
  $("thinking").textContent = $("answer").textContent = $("note").textContent = "";
  $("box").open = true;
  const r = await fetch("/v1/chat/completions", {method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({model: "MODEL_NAME", stream: true,
      temperature: parseFloat($("t").value),
      thinking: {type: $("think").checked ? "enabled" : "disabled"},
      messages: [{role: "user", content: $("q").value}]})});
  if (!r.ok) { $("note").textContent = (await r.json()).error.message; return; }
  const reader = r.body.getReader(), dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const {done, value} = await reader.read();
    if (done) break;
    buf += dec.decode(value, {stream: true});
    const events = buf.split("\\n\\n"); buf = events.pop();
    for (const ev of events) {
      const data = ev.replace(/^data: /, "");
      if (data === "[DONE]") continue;
      const c = JSON.parse(data).choices[0];
      if (!c) continue;
      if (c.delta.reasoning_content) $("thinking").textContent += c.delta.reasoning_content;
      if (c.delta.content) { $("box").open = false; $("answer").textContent += c.delta.content; }
      if (c.finish_reason === "length") $("note").textContent = "(cut at the token limit)";
    }
  }
};
</script>
"""

__all__ = ["INSTALL", "PAGE", "APIError", "Engine", "Job", "completion", "create_app",
           "model_name", "parse_request", "serve", "sse_events"]
