"""The R1 pipeline and distillation: rejection sampling's filters, traces on disk, the results table, and a
micro end-to-end run of every stage."""

import json
import random

import pytest

from minir1.data.checks import readability
from minir1.data.datasets import CorpusConfig, corpus_documents
from minir1.data.tasks import TASKS, make_problem
from minir1.data.templates import direct_completion, worked_completion
from minir1.data.tokenizer import Tokenizer
from minir1.eval.sampled import format_results
from minir1.rl import distill, pipeline, rejection
from minir1.rl.pipeline import PipelineRecipe
from minir1.rl.rejection import load_traces, rejection_sample, save_traces
from minir1.rl.trainer import GRPOConfig, rl_seconds
from minir1.train.runs import SHIPPED_TRACES
from minir1.train.sft import sft_steps_for


def test_every_corpus_trace_is_readable():
    rng = random.Random(0)
    for task in TASKS:
        for level in (1, 2, 3, 4):
            for _ in range(25):
                p = make_problem(task, level, rng)
                for check in (False, True):
                    assert readability(worked_completion(p, with_check=check), p) is None, (p, check)


@pytest.mark.parametrize("text, why", [
    ("<think>3+4=7</think><answer>7", "malformed"),
    ("<think>3+4=7</think><answer>7</answer><answer>7</answer>", "malformed"),
    ("<think></think><answer>7</answer>", "no reasoning"),
    ("<think>3+4=7, so 7</think><answer>7</answer>", "unreadable step"),
    ("<think>3+4=7,,7+0=7</think><answer>7</answer>", "unreadable step"),
    ("<think>-1-12=-13,check -13+12=-1</think><answer>-13</answer>", None),
])
def test_readability_names_the_reason(text, why):
    assert readability(text) == why


def test_rambling_is_more_steps_than_the_worked_solution_and_its_check():
    p = make_problem("add", 3, random.Random(0))
    steps = p.reasoning(with_check=True)
    assert readability(f"<think>{steps}</think><answer>{p.answer}</answer>", p) is None
    rambling = f"<think>{steps},{p.steps[-1]}</think><answer>{p.answer}</answer>"
    assert readability(rambling, p) == "rambling" and readability(rambling) is None


def test_rejection_sampling_keeps_correct_readable_distinct_traces(monkeypatch):
    rng = random.Random(1)
    a, b = make_problem("add", 3, rng), make_problem("mul", 3, rng)
    good_a, good_b = worked_completion(a), worked_completion(b)
    wrong_b = good_b.replace(f"<answer>{b.answer}<", f"<answer>{b.answer + 1}<")
    scripted = [good_a, good_a, direct_completion(a), worked_completion(a, with_check=True),  # a: 4 samples
                wrong_b, wrong_b, wrong_b, good_b.replace("<think>", "<think>oops,")]  # b: nothing kept
    monkeypatch.setattr(rejection, "complete", lambda *args, **kw: scripted)
    rs = rejection_sample(None, Tokenizer(), [a, b], k=4, keep=2)
    assert rs.sampled == 8 and rs.correct == 5 and rs.prompts_kept == 1 and rs.prompts == 2
    assert rs.dropped == {"duplicate": 1, "no reasoning": 1, "unreadable step": 1}
    assert [d.completion for d in rs.docs] == [good_a, worked_completion(a, with_check=True)]
    assert all(d.prompt == f"User: {a.question}\nAssistant: " for d in rs.docs)

    monkeypatch.setattr(rejection, "complete", lambda *args, **kw: [good_a] * 4 + [good_b] * 4)
    rs = rejection_sample(None, Tokenizer(), [a, b], k=4, keep=1)
    assert len(rs.docs) == 2 and rs.dropped == {"duplicate": 6}  # a duplicate is dropped before the cap counts


def test_traces_round_trip_and_sft_steps(tmp_path):
    docs = corpus_documents(CorpusConfig(template="chat", worked_fraction=1.0), 20, seed=0)
    back = load_traces(save_traces(tmp_path / "t.jsonl", docs))
    assert [(d.prompt, d.completion, d.problem.answer) for d in back] == [
        (d.prompt, d.completion, d.problem.answer) for d in docs]
    tok = Tokenizer()
    one = sft_steps_for(docs, tok, 1.0, batch_size=2)
    assert one >= 1 and sft_steps_for(docs, tok, 2.0, batch_size=2) in (2 * one - 1, 2 * one, 2 * one + 1)
    assert sft_steps_for(docs, tok, 1.0, batch_size=4) < one


def test_recipe_validation_names_the_field():
    with pytest.raises(ValueError, match="rs_k"):
        PipelineRecipe(GRPOConfig(), final_rl_steps=1, rs_k=0)
    with pytest.raises(ValueError, match="epochs"):
        distill.DistillRecipe(GRPOConfig(), epochs=0)


def test_format_results_table():
    row = {"pass1": 0.5, "majk": 0.75, "k": 8, "format": 1.0, "length": 42.0, "reasoning": 0.5,
           "pass1_by_task": {"add": 1.0, "expr": 0.25}}
    table = format_results({"base": row, "r1": {**row, "pass1": 0.9}}).splitlines()
    assert table[0].startswith("| model | pass@1 | maj@8 | add pass@1 | expr pass@1 |")
    assert table[2] == "| base | 50.0% | 75.0% | 100.0% | 25.0% | 50% | 100% | 42 |"
    assert table[3].startswith("| r1 | 90.0% |")


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIR1_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


def test_pipeline_runs_every_stage(runs, micro):
    result = pipeline.run_r1_pipeline("ci", recipe=micro.pipeline, progress=False)
    assert list(result.rows) == list(pipeline.STAGES)
    for stage, row in result.rows.items():
        assert 0 <= row["pass1"] <= row["passk"] <= 1 and set(row["pass1_by_task"]) == {"add", "expr"}, stage
    assert set(result.curves) == {"r1-zero", "dev2-reasoning-rl", "r1"}
    assert [r["step"] for r in result.curves["r1"]] == [0, 1]  # the check at step 0, then one GRPO step
    assert result.rows["r1"]["train_seconds"] == rl_seconds(result.curves["r1"]) > 0  # checks excluded
    assert result.rows["base"]["train_seconds"] == 0 and result.tokenizer is not None
    record = result.rejection.records[0]
    assert {"question", "task", "level", "answer", "steps", "completion", "correct", "why"} <= set(record)
    saved = json.loads((runs / "r1-ci" / "results.json").read_text())
    assert saved["rows"]["r1"]["pass1"] == result.rows["r1"]["pass1"]
    kept = saved["rejection"]["kept"]
    assert len((runs / "r1-ci" / "traces.jsonl").read_text().splitlines()) == kept >= 1
    for stage in pipeline.STAGES[1:]:
        assert (runs / "r1-ci" / stage / "checkpoint" / "model.safetensors").exists(), stage


def test_distillation_uses_the_pipelines_traces_else_the_shipped_ones(runs, micro):
    docs = corpus_documents(CorpusConfig(tasks=("add",), template="chat", worked_fraction=1.0), 8, seed=0)
    result = distill.run_distillation("ci", recipe=micro.distill, traces=docs, progress=False)
    assert list(result.rows) == ["student base", "student distilled", "student RL-only"]
    assert result.summary["traces"] == 8 and result.summary["student"]["preset_dim"] == 96
    traces, path = distill.teacher_traces("ci")
    assert path == SHIPPED_TRACES and len(traces) > 100
    save_traces(runs / "r1-ci" / "traces.jsonl", docs)
    assert distill.teacher_traces("ci")[1] == runs / "r1-ci" / "traces.jsonl"
