"""R1-Zero runner: self-check detection, held-out metrics, and a one-step run that writes every artefact."""

import json

import pytest
import torch

from minir1 import ModelConfig, Transformer
from minir1.data.checks import has_check
from minir1.data.tasks import make_problem
from minir1.data.tokenizer import Tokenizer
from minir1.eval.greedy import EvalResult
from minir1.eval.heldout import heldout_metrics
from minir1.rl.r1zero import R1ZERO_RECIPES, format_summary, run_r1_zero

TOK = Tokenizer()


def result(completion: str, correct: bool, reasoned: bool = True) -> EvalResult:
    import random

    return EvalResult(make_problem("add", 1, random.Random(0)), "free", completion, correct, True, reasoned)


def test_has_check_looks_inside_the_reasoning_only():
    assert has_check("<think>3+6=9,check 9-6=3</think><answer>9</answer>")
    assert not has_check("<think>3+6=9</think><answer>9</answer>")
    assert not has_check("<think>3+6=9</think><answer>check 9</answer>")


def test_heldout_metrics_split_checked_from_unchecked():
    results = [result("<think>a,check b</think><answer>1</answer>", True),
               result("<think>a,check b</think><answer>2</answer>", False),
               result("<think>a</think><answer>1</answer>", True),
               result("<think></think><answer>5</answer>", False, reasoned=False)]
    m = heldout_metrics(results, TOK)
    assert m["heldout_accuracy"] == 0.5 and m["heldout_reasoning"] == 0.75 and m["heldout_check_rate"] == 0.5
    assert m["heldout_checked_accuracy"] == 0.5 and m["heldout_unchecked_accuracy"] == 1.0
    none = heldout_metrics(results[2:], TOK)
    assert none["heldout_checked_accuracy"] is None and "—" in format_summary(
        {"before": none, "after": m, "heldout_problems": 2, "eval_tasks": ("add",), "eval_levels": (1,),
         "steps": 1, "rl_seconds": 1.0, "wall_seconds": 2.0})


def test_recipes_train_on_the_levels_they_evaluate():
    for recipe in R1ZERO_RECIPES.values():
        assert set(recipe.eval_levels) <= set(recipe.grpo.levels)
        assert set(recipe.eval_tasks) <= set(recipe.grpo.tasks)


def test_one_step_run_writes_log_samples_summary_and_checkpoint(tmp_path):
    from minir1.train.checkpoint import load_model

    torch.manual_seed(0)
    cfg = ModelConfig.preset("tiny", vocab_size=TOK.vocab_size, dim=64, n_layers=2, inter_dim=128, moe_inter_dim=32)
    model = Transformer(cfg)
    res = run_r1_zero("ci", out=tmp_path, steps=1, model=model, tok=TOK, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "grpo.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1] and "heldout_accuracy" in rows[0] and "heldout_accuracy" in rows[1]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 1 and set(summary["before"]) == set(summary["after"])
    samples = json.loads((tmp_path / "samples.json").read_text())
    assert len(samples["heldout_before"]) == summary["heldout_problems"] == len(res.after)
    reloaded, _, _ = load_model(tmp_path / "checkpoint")
    for (name, a), b in zip(model.state_dict().items(), reloaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_majority_answer_ignores_malformed_and_breaks_ties_by_order():
    from minir1.eval.sampled import majority_answer

    a = "<think>x</think><answer>{}</answer>"
    assert majority_answer([a.format(5), a.format(7), a.format(7), "no answer", a.format("7 or 8")]) == 7
    assert majority_answer([a.format(5), a.format(7)]) == 5
    assert majority_answer(["nothing", a.format("")]) is None


def test_sampled_eval_scores_pass1_passk_and_majority():
    import random

    from minir1.eval.sampled import sampled_eval

    torch.manual_seed(0)
    model = Transformer(ModelConfig.preset("tiny", vocab_size=TOK.vocab_size, dim=64, n_layers=2, inter_dim=128,
                                           moe_inter_dim=32))
    problems = [make_problem("add", 1, random.Random(i)) for i in range(3)]
    res = sampled_eval(model, TOK, problems, k=4, max_new_tokens=8)
    assert len(res.correct) == 3 and all(len(c) == 4 for c in res.correct)
    assert res.pass1 <= res.passk and res.majk <= res.passk
    again = sampled_eval(model, TOK, problems, k=4, max_new_tokens=8)
    assert again.completions == res.completions  # seeded
    with pytest.raises(ValueError, match="k="):
        sampled_eval(model, TOK, problems, k=0)


def test_tasks_and_levels_override_training_and_evaluation(tmp_path):
    torch.manual_seed(0)
    model = Transformer(ModelConfig.preset("tiny", vocab_size=TOK.vocab_size, dim=64, n_layers=2, inter_dim=128,
                                           moe_inter_dim=32))
    res = run_r1_zero("ci", out=tmp_path, steps=1, model=model, tok=TOK, progress=False, tasks=("expr",),
                      levels=(4,))
    assert res.summary["config"]["tasks"] == ("expr",) and res.summary["config"]["levels"] == (4,)
    assert {(r.problem.task, r.problem.level) for r in res.after} == {("expr", 4)}
