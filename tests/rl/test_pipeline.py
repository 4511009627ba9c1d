"""The R1 pipeline: recipe checks and a micro end-to-end run of every stage."""

import json

import pytest

from minir1.rl import distill, pipeline
from minir1.rl.pipeline import PipelineRecipe
from minir1.rl.trainer import GRPOConfig, rl_seconds


def test_recipe_validation_names_the_field():
    with pytest.raises(ValueError, match="rs_k"):
        PipelineRecipe(GRPOConfig(), final_rl_steps=1, rs_k=0)
    with pytest.raises(ValueError, match="epochs"):
        distill.DistillRecipe(GRPOConfig(), epochs=0)


def test_pipeline_runs_every_stage(runs, micro):
    result = pipeline.run_r1_pipeline("ci", recipe=micro.pipeline, progress=False)
    assert list(result.rows) == list(pipeline.STAGES)
    for stage, row in result.rows.items():
        assert 0 <= row["pass1"] <= row["passk"] <= 1, stage
        assert set(row["pass1_by_task"]) == {"add", "expr"}, stage
    assert set(result.curves) == {"r1-zero", "dev2-reasoning-rl", "r1"}
    # the check at step 0, then one GRPO step
    assert [r["step"] for r in result.curves["r1"]] == [0, 1]
    # checks excluded
    assert result.rows["r1"]["train_seconds"] == rl_seconds(result.curves["r1"]) > 0
    assert result.rows["base"]["train_seconds"] == 0 and result.tokenizer is not None
    record = result.rejection.records[0]
    assert {"question", "task", "level", "answer", "steps", "completion", "correct",
            "why"} <= set(record)
    saved = json.loads((runs / "r1-ci" / "results.json").read_text())
    assert saved["rows"]["r1"]["pass1"] == result.rows["r1"]["pass1"]
    kept = saved["rejection"]["kept"]
    assert len((runs / "r1-ci" / "traces.jsonl").read_text().splitlines()) == kept >= 1
    for stage in pipeline.STAGES[1:]:
        assert (runs / "r1-ci" / stage / "checkpoint" / "model.safetensors").exists(), stage
