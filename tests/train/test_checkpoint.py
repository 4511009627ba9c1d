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
