"""Checkpoints: safetensors and JSON only, and the errors they raise."""

import pytest
import torch

from minir1.train.checkpoint import load_model, save_checkpoint
from minir1.train.loop import Trainer
from minir1.weights import CheckpointError
from tests.conftest import TOK, small_model, stream
from tests.train.conftest import cfg


def test_checkpoint_holds_no_pickles(tmp_path):
    trainer = Trainer(small_model(), stream(), cfg(steps=2), out_dir=tmp_path, tokenizer=TOK,
                      progress=False)
    trainer.fit()
    files = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "checkpoint").rglob("*")
                   if p.is_file())
    assert all(f.endswith((".safetensors", ".json")) for f in files), files
    assert any(f.startswith("checkpoint/train_state/") for f in files), files
    model, tok, meta = load_model(tmp_path / "checkpoint")
    assert tok == TOK and meta["step"] == 2
    x = torch.randint(0, 100, (1, 10))
    torch.testing.assert_close(model.eval()(x).logits, trainer.model.eval()(x).logits)


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_model(tmp_path / "nowhere")
    model = small_model()
    path = save_checkpoint(tmp_path / "ck", model, TOK, step=0)
    blob = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model(path)
    trainer = Trainer(small_model(), stream(), cfg(steps=1), out_dir=tmp_path / "run",
                      tokenizer=TOK, progress=False)
    trainer.fit()
    other = Trainer(small_model(n_routed_experts=8, n_expert_groups=2, n_limited_groups=1),
                    stream(), cfg(steps=2), out_dir=tmp_path / "run", tokenizer=TOK,
                    progress=False)
    with pytest.raises(CheckpointError, match="n_routed_experts"):
        other.fit(resume=True)


def test_resume_with_parameters_that_have_no_optimizer_state(tmp_path):
    """AdamW makes a parameter's state at its first gradient (an expert idle until the save has
    none): the checkpoint resumes, the others' moments restored, that one still without."""
    trainer = Trainer(small_model(), stream(), cfg(steps=3), out_dir=tmp_path, tokenizer=TOK,
                      progress=False)
    trainer.train_step()
    idle = next(p for n, p in trainer.model.named_parameters() if ".experts.0." in n)
    del trainer.optimizer.state[idle]
    trainer.save()
    again = Trainer(small_model(), stream(), cfg(steps=3), out_dir=tmp_path, tokenizer=TOK,
                    progress=False)
    again.resume()
    before = dict(zip(trainer.model.parameters(), again.model.parameters(), strict=True))
    assert before[idle] not in again.optimizer.state
    for mine, theirs in before.items():
        if mine is not idle:
            torch.testing.assert_close(again.optimizer.state[theirs]["exp_avg"],
                                       trainer.optimizer.state[mine]["exp_avg"])
