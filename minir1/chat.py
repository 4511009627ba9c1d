"""Talk to a model, the thinking and the answer streamed apart, as DeepSeek's app shows R1's
reasoning above its answer; in the terminal, ``minir1 chat``.

The prompt is the template the model was trained with (R1 Table 1's R1-Zero template, or the SFT
stages' chat frame), and the reply is forced to open with ``<think>``, as the R1 README recommends
so that the model never skips its reasoning. Reasoning off (the app's "DeepThink" toggle) forces
``<think></think><answer>`` instead, the empty think block of ``minir1.eval``'s "direct" mode.
Tokens come one at a time from the latent-cache sampler (``minir1.infer.generate.stream_tokens``)
and are split as they arrive: before ``</think>`` thinking, after it the answer; tags are never
shown, and ``</answer>`` (or ``<eos>``) ends the reply. The defaults are R1's evaluation settings,
temperature 0.6 and top-p 0.95 (R1 §3, "Evaluation Setup"). Each question is answered on its own:
the models were trained on single-turn prompts and hold 256 positions.
``load_chat`` opens any run's checkpoint, or with none given the best model there is.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Generator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch

from minir1.data.tags import ANSWER_CLOSE, THINK_CLOSE
from minir1.data.templates import DIRECT_PREFIX, REASON_PREFIX, TEMPLATES, prompt_for
from minir1.data.tokenizer import Tokenizer
from minir1.infer.generate import stream_tokens
from minir1.model.transformer import Transformer
from minir1.train.checkpoint import load_model
from minir1.train.runs import runs_dir, shipped_base_dir

THINK, ANSWER = "think", "answer"  # the two kinds of streamed text


@dataclass(frozen=True)
class Chunk:
    """A piece of the reply as it streams: ``kind`` is "think" or "answer"."""

    kind: str
    text: str


@dataclass(frozen=True)
class Reply:
    """A whole reply. ``finish``: "answer" (``</answer>`` written), "eos" or "length" (ran out of
    tokens, or of the model's context)."""

    question: str
    thinking: str
    answer: str
    tokens: int  # generated, the closing tag included
    seconds: float
    finish: str
    # the thinking alone: tokens up to and including </think>, and the time they took (what the
    # app's "thought for N s" reports); 0 with reasoning off
    think_tokens: int = 0
    think_seconds: float = 0.0


@dataclass(eq=False)
class Chat:
    """A conversation with ``model``. The settings are plain attributes, changed between questions
    (``chat.reasoning = False``); ``seed`` makes the samples reproducible."""

    model: Transformer = field(repr=False)
    tok: Tokenizer = field(repr=False)
    template: str = "r1_zero"
    reasoning: bool = True
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 160
    seed: int | None = None
    source: str = ""  # where the model came from (``load_chat`` says which checkpoint)
    history: list[Reply] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._generator = None if self.seed is None else torch.Generator().manual_seed(self.seed)
        self._check_settings()

    def _check_settings(self) -> None:
        if self.template not in TEMPLATES:
            raise ValueError(f"template={self.template!r}: must be one of {TEMPLATES}")
        if self.temperature < 0:
            raise ValueError(f"temperature={self.temperature}: must be >= 0 (0 is greedy)")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p={self.top_p}: must be in (0, 1]")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={self.max_new_tokens}: must be >= 1")

    def prompt(self, question: str) -> str:
        """The text the model continues: the template, then the forced start of the reply."""
        return prompt_for(question, self.template) + (REASON_PREFIX if self.reasoning
                                                      else DIRECT_PREFIX)

    def stream(self, question: str) -> Generator[Chunk, None, Reply]:
        """The reply to ``question``, chunk by chunk as the model writes it (think chunks, then
        answer chunks); the generator's return value, also appended to ``history``, is the
        ``Reply``. A bad question or setting raises ``ValueError`` here, before any token."""
        self._check_settings()
        check_question(question, self.tok)
        ids = self.tok.encode(self.prompt(question), bos=True)
        room = self.model.cfg.max_seq_len - len(ids)
        if room < 1:
            raise ValueError(f"question too long: its prompt takes {len(ids)} tokens of the "
                             f"model's {self.model.cfg.max_seq_len}")
        stops = [self.tok.token_id(ANSWER_CLOSE), self.tok.eos_id]
        banned = [self.tok.token_id(THINK_CLOSE)] if self.reasoning else []
        tokens = stream_tokens(self.model, ids, min(self.max_new_tokens, room),
                               temperature=self.temperature, top_p=self.top_p, stop_ids=stops,
                               banned_first=banned, generator=self._generator)
        return self._reply(question, tokens)

    def _reply(self, question: str,
               tokens: Generator[int, None, None]) -> Generator[Chunk, None, Reply]:
        t0 = time.perf_counter()
        kind = THINK if self.reasoning else ANSWER
        texts: dict[str, list[str]] = {THINK: [], ANSWER: []}
        ends = {self.tok.token_id(ANSWER_CLOSE): ANSWER, self.tok.eos_id: "eos"}
        n, finish = 0, "length"
        think = (0, 0.0)  # tokens and seconds of the thinking, once it has closed
        with closing(tokens):  # an abandoned reply ends the sampler's loop too
            for tid in tokens:
                n += 1
                if tid in ends:  # the last id: the sampler stops after it
                    finish = ends[tid]
                    continue
                piece = self.tok.itos[tid]
                if piece == THINK_CLOSE and kind == THINK:
                    kind = ANSWER  # what follows the thinking is the answer, <answer> or not
                    think = (n, time.perf_counter() - t0)
                if piece in self.tok.specials:  # a tag or a control token: never shown
                    continue
                texts[kind].append(piece)
                yield Chunk(kind, piece)
        seconds = time.perf_counter() - t0
        if kind == THINK:  # the reply ended inside its thinking: all of it was thinking
            think = (n, seconds)
        reply = Reply(question, "".join(texts[THINK]), "".join(texts[ANSWER]), n, seconds,
                      finish, *think)
        self.history.append(reply)
        return reply

    def ask(self, question: str) -> Reply:
        """The whole reply to ``question`` at once (``stream`` run to its end)."""
        for _ in self.stream(question):
            pass
        return self.history[-1]


def check_question(question: str, tok: Tokenizer) -> None:
    """Raise ``ValueError`` naming the first character of ``question`` (and its position) that
    ``tok`` cannot write, or saying the question is empty."""
    if not question.strip():
        raise ValueError("empty question")
    for pos, ch in enumerate(question):
        if ch not in tok.chars:
            raise ValueError(f"character {ch!r} (U+{ord(ch):04X}) at position {pos} of the "
                             f"question is not in the model's alphabet of {len(tok.chars)} "
                             "characters")


# ------------------------------------------------------------------------------ which model
PROFILE_ORDER = ("gpu", "cpu", "fast", "ci")  # bigger runs first
# R1 first, then R1-Zero, then the distilled student (each a directory under runs/), then the
# base models; the CLI's runs (runs/r1-cpu) before the lessons' (runs/r1-cpu-lesson)
RUN_KINDS = ("r1", "r1zero", "distill")


def default_candidates() -> list[Path]:
    """Where ``load_chat()`` looks, best first: the RL runs of ``runs/`` (R1, R1-Zero, the
    distilled student; bigger profiles first, then the lessons' copies), the trained base models,
    then the base model shipped in ``data/base-cpu``."""
    names = [f"{kind}-{p}{lesson}" for lesson in ("", "-lesson") for kind in RUN_KINDS
             for p in PROFILE_ORDER]
    names += ["base-gpu", "base-cpu"]  # base-ci learned too little to talk to
    return [runs_dir() / n for n in names] + [shipped_base_dir()]


def find_checkpoint(run: str | Path) -> Path:
    """The checkpoint directory of ``run``: the directory itself if it is one, else its
    ``checkpoint/``, else the final model of an R1 pipeline run (``r1/checkpoint``) or of a
    distillation run (``distilled/checkpoint``)."""
    run = Path(run)
    for ckpt in (run, run / "checkpoint", run / "r1" / "checkpoint",
                 run / "distilled" / "checkpoint"):
        if (ckpt / "config.json").exists():
            return ckpt
    raise FileNotFoundError(f"{run}: no checkpoint there (looked for config.json in it, in "
                            "checkpoint/, r1/checkpoint/ and distilled/checkpoint/)")


def default_checkpoint() -> Path:
    """The best checkpoint there is (the first of ``default_candidates`` that has one)."""
    for run in default_candidates():
        try:
            return find_checkpoint(run)
        except FileNotFoundError:
            continue
    raise FileNotFoundError(f"no model to chat with: nothing in {runs_dir()} and no "
                            f"{shipped_base_dir()}; train one with `minir1 pretrain`")


def template_of(ckpt: Path) -> str:
    """The template a checkpoint was trained (and scored) with: its RL run's ``grpo_config.json``,
    else the row of its run's ``results.json``; "r1_zero" (the base models') when neither says."""
    config = ckpt.parent / "grpo_config.json"
    if config.exists():
        return str(json.loads(config.read_text()).get("template", "r1_zero"))
    results = ckpt.parent.parent / "results.json"
    if results.exists():
        rows = json.loads(results.read_text()).get("rows", {})
        stage = ckpt.parent.name.lower()  # "distilled" is the row "student distilled"
        for name, row in rows.items():
            if name.lower() in (stage, f"student {stage}"):
                return str(row.get("template", "r1_zero"))
    return "r1_zero"


def load_chat(run: str | Path | None = None, **settings: Any) -> Chat:
    """A ``Chat`` with the model of ``run`` (see ``find_checkpoint``; ``None``: the best there is,
    ``default_checkpoint``), prompted with its own template unless ``template=`` says otherwise.
    ``settings``: the other ``Chat`` fields. ``chat.source`` says which checkpoint it is."""
    ckpt = find_checkpoint(run) if run is not None else default_checkpoint()
    model, tok, meta = load_model(ckpt)
    settings.setdefault("template", template_of(ckpt))
    stage = meta.get("extra", {}).get("stage")
    source = f"{ckpt} (step {meta['step']}{f', stage {stage}' if stage else ''})"
    return Chat(model, tok, source=source, **settings)


# ------------------------------------------------------------------------------ the terminal
DIM, RESET = "\033[2m", "\033[0m"  # ANSI: the thinking is shown faint, as the app greys it
HELP = "commands: /reason on|off, /temp X (0: greedy), /quit (or end of input)"


def run_command(chat: Chat, line: str) -> str | None:
    """Apply one ``/command`` line to ``chat``: what to say back, or ``None`` for ``/quit``.
    ``ValueError`` for an unknown command or a bad value (``chat`` is then unchanged)."""
    name, _, arg = line.strip().partition(" ")
    arg = arg.strip()
    if name in ("/quit", "/exit"):
        return None
    if name == "/help":
        return HELP
    if name == "/reason":
        if arg not in ("on", "off"):
            raise ValueError(f"/reason takes on or off, not {arg!r}")
        chat.reasoning = arg == "on"
        return f"reasoning {arg}"
    if name == "/temp":
        try:
            value = float(arg)
        except ValueError:
            value = float("nan")
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"/temp takes a number >= 0, not {arg!r}")
        chat.temperature = value
        return f"temperature {value:g}"
    raise ValueError(f"unknown command {name!r} ({HELP})")


def show_reply(chat: Chat, question: str, out: TextIO, colour: bool) -> Reply:
    """Stream the reply to ``question`` onto ``out``: with ``colour``, the thinking faint, then the
    answer on its own line and a faint line of numbers; without, the answer alone on one line."""
    kind = None
    for chunk in chat.stream(question):  # a bad question raises before anything is written
        if colour and chunk.kind != kind:
            out.write(DIM if chunk.kind == THINK else (RESET + "\n" if kind else ""))
        kind = chunk.kind
        if colour or chunk.kind == ANSWER:
            out.write(chunk.text)
            out.flush()
    reply = chat.history[-1]
    if colour:
        cut = ", cut at the token limit" if reply.finish == "length" else ""
        out.write(f"{RESET}\n{DIM}({reply.tokens} tokens in {reply.seconds:.2f} s{cut}){RESET}")
    out.write("\n")
    out.flush()
    return reply


def terminal(chat: Chat, stdin: TextIO | None = None, stdout: TextIO | None = None,
             stderr: TextIO | None = None) -> None:
    """The ``minir1 chat`` loop: one question per line, ``/commands`` between them, until
    ``/quit`` or the end of the input. At a terminal the replies stream in colour after a
    prompt; piped, stdout gets exactly one line per question (its answer, or ``error: ...``)
    and everything else (which model, what a command did) goes to stderr."""
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    tty = stdin.isatty() and stdout.isatty()
    colour = tty and not os.environ.get("NO_COLOR")
    notes = stdout if tty else (stderr or sys.stderr)
    print(f"chatting with {chat.source or 'a model'}, template {chat.template}", file=notes)
    if tty:
        print(HELP, file=notes)
    while (line := _read_line(stdin, tty)) is not None:
        line = line.strip()
        if not line:
            continue
        try:
            if line.startswith("/"):
                said = run_command(chat, line)
                if said is None:
                    return
                print(said, file=notes)
            else:
                show_reply(chat, line, stdout, colour)
        except ValueError as err:  # a bad character, command or setting: say so, go on
            print(f"error: {err}", file=stdout if not line.startswith("/") else notes)
        except KeyboardInterrupt:  # Ctrl-C stops the reply, not the chat
            print(f"{RESET if colour else ''} [stopped]", file=stdout)


def _read_line(stdin: TextIO, tty: bool) -> str | None:
    """The next line, ``None`` at the end of the input (or Ctrl-C at the prompt)."""
    if not tty:
        return stdin.readline() or None
    try:
        return input("> ")
    except (EOFError, KeyboardInterrupt):
        print()
        return None


__all__ = ["ANSWER", "HELP", "PROFILE_ORDER", "RUN_KINDS", "THINK", "Chat", "Chunk", "Reply",
           "check_question", "default_candidates", "default_checkpoint", "find_checkpoint",
           "load_chat", "run_command", "show_reply", "template_of", "terminal"]
