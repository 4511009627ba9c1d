"""Distillation: the student trains on the pipeline's traces, else the shipped ones."""

from minir1.data.datasets import CorpusConfig, corpus_documents
from minir1.rl import distill
from minir1.rl.rejection import save_traces
from minir1.train.runs import SHIPPED_TRACES


def test_distillation_uses_the_pipelines_traces_else_the_shipped_ones(runs, micro):
    docs = corpus_documents(CorpusConfig(tasks=("add",), template="chat", worked_fraction=1.0), 8,
                            seed=0)
    result = distill.run_distillation("ci", recipe=micro.distill, traces=docs, progress=False)
    assert list(result.rows) == ["student base", "student distilled", "student RL-only"]
    assert result.summary["traces"] == 8 and result.summary["student"]["preset_dim"] == 96
    traces, path = distill.teacher_traces("ci")
    assert path == SHIPPED_TRACES and len(traces) > 100
    save_traces(runs / "r1-ci" / "traces.jsonl", docs)
    assert distill.teacher_traces("ci")[1] == runs / "r1-ci" / "traces.jsonl"
