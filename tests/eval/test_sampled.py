"""Sampled evaluation: pass@1, pass@k, majority voting and the results table."""

import pytest
import torch

from minir1 import ModelConfig, Transformer
from minir1.data.tasks import make_problem
from minir1.eval.sampled import format_results
from tests.conftest import TOK


def test_majority_answer_ignores_malformed_and_breaks_ties_by_order():
    from minir1.eval.sampled import majority_answer

    a = "<think>x</think><answer>{}</answer>"
    votes = [a.format(5), a.format(7), a.format(7), "no answer", a.format("7 or 8")]
    assert majority_answer(votes) == 7
    assert majority_answer([a.format(5), a.format(7)]) == 5
    assert majority_answer(["nothing", a.format("")]) is None


def test_sampled_eval_scores_pass1_passk_and_majority():
    import random

    from minir1.eval.sampled import sampled_eval

    torch.manual_seed(0)
    model = Transformer(ModelConfig.preset("tiny", vocab_size=TOK.vocab_size, dim=64, n_layers=2,
                                           inter_dim=128, moe_inter_dim=32))
    problems = [make_problem("add", 1, random.Random(i)) for i in range(3)]
    res = sampled_eval(model, TOK, problems, k=4, max_new_tokens=8)
    assert len(res.correct) == 3 and all(len(c) == 4 for c in res.correct)
    assert res.pass1 <= res.passk and res.majk <= res.passk
    again = sampled_eval(model, TOK, problems, k=4, max_new_tokens=8)
    assert again.completions == res.completions  # seeded
    with pytest.raises(ValueError, match="k="):
        sampled_eval(model, TOK, problems, k=0)


def test_format_results_table():
    row = {"pass1": 0.5, "majk": 0.75, "k": 8, "format": 1.0, "length": 42.0, "reasoning": 0.5,
           "pass1_by_task": {"add": 1.0, "expr": 0.25}}
    table = format_results({"base": row, "r1": {**row, "pass1": 0.9}}).splitlines()
    assert table[0].startswith("| model | pass@1 | maj@8 | add pass@1 | expr pass@1 |")
    assert table[2] == "| base | 50.0% | 75.0% | 100.0% | 25.0% | 50% | 100% | 42 |"
    assert table[3].startswith("| r1 | 90.0% |")
