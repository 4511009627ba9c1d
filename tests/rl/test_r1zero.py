"""R1-Zero runner: recipes, and a one-step run that writes every artefact."""

import json

import torch

from minir1 import ModelConfig, Transformer
from minir1.rl.r1zero import R1ZERO_RECIPES, run_r1_zero
from tests.conftest import TOK


def test_recipes_train_on_the_levels_they_evaluate():
    for recipe in R1ZERO_RECIPES.values():
        assert set(recipe.eval_levels) <= set(recipe.grpo.levels)
        assert set(recipe.eval_tasks) <= set(recipe.grpo.tasks)


def test_one_step_run_writes_log_samples_summary_and_checkpoint(tmp_path):
    from minir1.train.checkpoint import load_model

    torch.manual_seed(0)
    cfg = ModelConfig.preset("tiny", vocab_size=TOK.vocab_size, dim=64, n_layers=2, inter_dim=128,
                             moe_inter_dim=32)
    model = Transformer(cfg)
    res = run_r1_zero("ci", out=tmp_path, steps=1, model=model, tok=TOK, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "grpo.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1]
    assert "heldout_accuracy" in rows[0] and "heldout_accuracy" in rows[1]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 1 and set(summary["before"]) == set(summary["after"])
    samples = json.loads((tmp_path / "samples.json").read_text())
    assert len(samples["heldout_before"]) == summary["heldout_problems"] == len(res.after)
    reloaded, _, _ = load_model(tmp_path / "checkpoint")
    for (name, a), b in zip(model.state_dict().items(), reloaded.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name


def test_tasks_and_levels_override_training_and_evaluation(tmp_path):
    torch.manual_seed(0)
    model = Transformer(ModelConfig.preset("tiny", vocab_size=TOK.vocab_size, dim=64, n_layers=2,
                                           inter_dim=128, moe_inter_dim=32))
    res = run_r1_zero("ci", out=tmp_path, steps=1, model=model, tok=TOK, progress=False,
                      tasks=("expr",), levels=(4,))
    assert res.summary["config"]["tasks"] == ("expr",) and res.summary["config"]["levels"] == (4,)
    assert {(r.problem.task, r.problem.level) for r in res.after} == {("expr", 4)}
