"""Runs on disk: base models trained once then loaded, and the shipped float16 copies."""

import json

import pytest
import torch


def test_load_base_trains_once_then_loads(tmp_path, monkeypatch):
    from dataclasses import replace

    from minir1.train import pretrain as pt
    from minir1.train import runs

    monkeypatch.setenv("MINIR1_RUNS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="minir1 pretrain --profile ci"):
        runs.load_base("ci", train_if_missing=False)
    monkeypatch.setitem(pt.PRETRAIN_RECIPES, "ci",
                        replace(pt.PRETRAIN_RECIPES["ci"], steps=2, eval_n=1, eval_every=0))
    model, _, meta = runs.load_base("ci", progress=False)
    assert meta["step"] == 2 and (tmp_path / "base-ci" / "checkpoint").exists()
    again, _, _ = runs.load_base("ci", train_if_missing=False)
    assert all((a == b).all() for a, b in zip(model.state_dict().values(),
                                              again.state_dict().values(), strict=True))


def test_load_student_base_trains_the_student_preset(tmp_path, monkeypatch):
    from dataclasses import replace

    from minir1.train import pretrain as pt
    from minir1.train import runs

    monkeypatch.setenv("MINIR1_RUNS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="minir1 pretrain --student --profile ci"):
        runs.load_base("ci", train_if_missing=False, kind="student")
    monkeypatch.setitem(pt.STUDENT_RECIPES, "ci",
                        replace(pt.STUDENT_RECIPES["ci"], steps=2, eval_n=0, eval_every=0))
    model, _, meta = runs.load_base("ci", progress=False, kind="student")
    assert meta["step"] == 2 and (tmp_path / "student-ci" / "checkpoint").exists()
    assert model.cfg.n_dense_layers == model.cfg.n_layers and not model.moe_layers()
    assert model.cfg.n_mtp_modules == 0
    with pytest.raises(ValueError, match="kind='teacher'"):
        runs.base_dir("ci", kind="teacher")


def test_shipped_student_is_in_the_repository_and_smaller_than_the_base():
    from minir1 import count_params
    from minir1.train.runs import load_rl_base, shipped_base_dir

    meta = json.loads((shipped_base_dir("student") / "config.json").read_text())
    assert meta["extra"]["stored_dtype"] == "float16" and meta["extra"]["shipped_from"].startswith(
        "minir1 pretrain --student")
    student = count_params(load_rl_base("ci", progress=False, kind="student")[0].cfg)
    teacher = count_params(load_rl_base("ci", progress=False)[0].cfg)
    assert student.total < teacher.activated < teacher.total


def test_ship_base_stores_float16_and_load_rl_base_prefers_a_trained_run(tmp_path, monkeypatch):
    from minir1 import ModelConfig, Transformer
    from minir1.data.tokenizer import Tokenizer
    from minir1.train import runs
    from minir1.train.checkpoint import save_checkpoint

    tok = Tokenizer()
    torch.manual_seed(0)
    model = Transformer(ModelConfig.preset("tiny", vocab_size=tok.vocab_size, dim=64, n_layers=2))
    save_checkpoint(tmp_path / "trained", model, tok, step=7)
    shipped = runs.ship_base(tmp_path / "trained", tmp_path / "shipped")
    assert safetensors_dtypes(shipped / "model.safetensors") == {"F16"}
    monkeypatch.setattr(runs, "shipped_base_dir", lambda kind="base": shipped)
    # no runs/base-cpu: the shipped copy is used
    monkeypatch.setenv("MINIR1_RUNS", str(tmp_path / "runs"))
    loaded, _, meta = runs.load_rl_base("ci")
    assert meta["step"] == 7 and meta["extra"]["stored_dtype"] == "float16"
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert b.dtype == a.dtype and torch.equal(a.half().to(a.dtype), b), name
    # a trained run wins
    save_checkpoint(tmp_path / "runs" / "base-cpu" / "checkpoint", model, tok, step=9)
    assert runs.load_rl_base("cpu")[2]["step"] == 9


def safetensors_dtypes(path):
    header = json.loads(path.read_bytes()[8:8 + int.from_bytes(path.read_bytes()[:8], "little")])
    return {v["dtype"] for k, v in header.items()
            if k != "__metadata__" and v["dtype"].startswith("F")}


def test_shipped_base_model_is_in_the_repository():
    from minir1.train.runs import shipped_base_dir

    meta = json.loads((shipped_base_dir() / "config.json").read_text())
    assert meta["step"] == 5000 and meta["extra"]["stored_dtype"] == "float16"
    assert safetensors_dtypes(shipped_base_dir() / "model.safetensors") == {"F16"}
