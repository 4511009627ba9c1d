"""The training loop: schedule, bit-exact resume, NaN stop, checkpoint errors; streams; batched sampling."""

import json

import pytest
import torch

from minir1 import ModelConfig, Transformer
from minir1.data.datasets import CorpusConfig, PackedStream, SFTStream, corpus_documents, pack_documents, sft_samples
from minir1.data.tokenizer import Tokenizer
from minir1.infer.generate import sample
from minir1.model.transformer import IGNORE_INDEX
from minir1.train.checkpoint import CheckpointError, load_model, save_checkpoint
from minir1.train.loop import TrainConfig, Trainer, lr_at

TOK = Tokenizer()


def small_model(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = ModelConfig.preset("tiny", dim=64, n_layers=2, inter_dim=128, moe_inter_dim=32, max_seq_len=128,
                             original_seq_len=128, **kw)
    return Transformer(cfg)


def stream(batch_size=4, seq_len=48):
    docs = corpus_documents(CorpusConfig(), 200, seed=0)
    tokens, learned = pack_documents(TOK, docs)
    return PackedStream(tokens, batch_size, seq_len, seed=0, learned=learned)


def cfg(steps=6, **kw):
    return TrainConfig(steps=steps, batch_size=4, seq_len=48, lr=3e-3, warmup_steps=2, log_every=1, **kw)


def test_test_split_documents_are_held_out():
    from minir1.data.tasks import split_of

    held_out = corpus_documents(CorpusConfig(), 100, seed=0, split="test")
    assert all(split_of(d.problem) == "test" for d in held_out)
    train_questions = {d.problem.question for d in corpus_documents(CorpusConfig(), 2000, seed=0)}
    assert not train_questions & {d.problem.question for d in held_out}
    with pytest.raises(ValueError, match="split"):
        corpus_documents(CorpusConfig(), 1, seed=0, split="val")


def test_periodic_evaluation_rows(tmp_path):
    calls = []

    def check(model):
        calls.append(model.training)
        return {"val_loss": 1.0}

    c = TrainConfig(steps=7, batch_size=4, seq_len=48, lr=3e-3, warmup_steps=2, log_every=5, eval_every=3)
    trainer = Trainer(small_model(), stream(), c, out_dir=tmp_path, tokenizer=TOK, eval_fn=check, progress=False)
    history = trainer.fit()
    # rows at the log steps (5, 7) and the eval steps (3, 6), evaluated at 3, 6 and the last step
    assert [r["step"] for r in history] == [3, 5, 6, 7]
    assert [r["step"] for r in history if "val_loss" in r] == [3, 6, 7] and len(calls) == 3
    assert "val_loss" in (tmp_path / "metrics.csv").read_text().splitlines()[0]


def test_lr_schedule():
    c = TrainConfig(steps=100, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, c) == pytest.approx(0.1) and lr_at(9, c) == pytest.approx(1.0)
    assert lr_at(10, c) == pytest.approx(1.0)
    assert lr_at(55, c) == pytest.approx(0.55)  # halfway through the cosine
    assert lr_at(100, c) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)


def test_training_reduces_loss_and_logs(tmp_path):
    trainer = Trainer(small_model(), stream(), cfg(steps=30), out_dir=tmp_path, tokenizer=TOK, progress=False)
    history = trainer.fit()
    assert history[-1]["loss"] < history[0]["loss"] - 0.5
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 30 and {"lm_loss", "mtp_loss", "balance_loss", "lr", "grad_norm", "maxvio"} <= set(rows[0])
    assert (tmp_path / "metrics.csv").read_text().startswith("step,loss")


def test_resume_is_bit_exact(tmp_path):
    straight = Trainer(small_model(), stream(), cfg(steps=6), out_dir=tmp_path / "a", tokenizer=TOK, progress=False)
    straight.fit()
    first = Trainer(small_model(), stream(), cfg(steps=3), out_dir=tmp_path / "b", tokenizer=TOK, progress=False)
    first.fit()
    resumed = Trainer(small_model(seed=99), stream(), cfg(steps=6), out_dir=tmp_path / "b", tokenizer=TOK, progress=False)
    resumed.fit(resume=True)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_checkpoint_holds_no_pickles(tmp_path):
    trainer = Trainer(small_model(), stream(), cfg(steps=2), out_dir=tmp_path, tokenizer=TOK, progress=False)
    trainer.fit()
    files = sorted(p.name for p in (tmp_path / "checkpoint").iterdir())
    assert all(f.endswith((".safetensors", ".json")) for f in files), files
    model, tok, meta = load_model(tmp_path / "checkpoint")
    assert tok == TOK and meta["step"] == 2
    x = torch.randint(0, 100, (1, 10))
    torch.testing.assert_close(model.eval()(x).logits, trainer.model.eval()(x).logits)


def test_nan_stops_training_and_keeps_the_last_checkpoint(tmp_path):
    trainer = Trainer(small_model(), stream(), cfg(steps=4, ckpt_every=2), out_dir=tmp_path, tokenizer=TOK, progress=False)
    trainer.cfg.steps = 2
    trainer.fit()
    saved = (tmp_path / "checkpoint" / "model.safetensors").read_bytes()
    trainer.cfg.steps = 4
    with torch.no_grad():
        trainer.model.layers[0].attn.wo.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=r"step 2.*last good checkpoint"):
        trainer.fit(resume=False)
    assert (tmp_path / "checkpoint" / "model.safetensors").read_bytes() == saved


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_model(tmp_path / "nowhere")
    model = small_model()
    path = save_checkpoint(tmp_path / "ck", model, TOK, step=0)
    blob = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model(path)
    trainer = Trainer(small_model(), stream(), cfg(steps=1), out_dir=tmp_path / "run", tokenizer=TOK, progress=False)
    trainer.fit()
    other = Trainer(small_model(n_routed_experts=8, n_expert_groups=2, n_limited_groups=1), stream(),
                    cfg(steps=2), out_dir=tmp_path / "run", tokenizer=TOK, progress=False)
    with pytest.raises(CheckpointError, match="n_routed_experts"):
        other.fit(resume=True)


def test_sft_stream_masks_prompts_and_isolates_samples():
    docs = corpus_documents(CorpusConfig(template="chat", worked_fraction=1.0, levels=(1,), level_weights=(1.0,)),
                            50, seed=0)
    s = SFTStream(sft_samples(TOK, docs), batch_size=2, seq_len=96, seed=0, pad_id=TOK.pad_id)
    with pytest.raises(ValueError, match="exceed seq_len"):
        SFTStream(sft_samples(TOK, docs), batch_size=2, seq_len=16)
    b = s.batch(0)
    assert b["tokens"].shape == b["targets"].shape == b["doc_ids"].shape == (2, 96)
    row_t, row_y, row_d = b["tokens"][0], b["targets"][0], b["doc_ids"][0]
    first = row_d == 0
    text = TOK.decode(row_t[first].tolist(), skip_control=False)
    learned = TOK.decode([t for t in row_y[first].tolist() if t != IGNORE_INDEX], skip_control=False)
    assert text.startswith("<bos>User: ") and learned.startswith("<think>") and learned.endswith("<eos>")
    assert row_d.max() >= 1  # several samples share a row
    assert torch.equal(s.batch(3)["tokens"], s.batch(3)["tokens"])  # a pure function of the step


def test_batched_sampling_matches_one_by_one():
    model = small_model().eval()
    prompts = [[1, 5, 9, 12], [1, 7], [1, 3, 3, 3, 3, 8, 2]]
    stops = [TOK.token_id("</answer>")]
    batched = sample(model, prompts, 12, temperature=0.0, stop_ids=stops)
    for i, p in enumerate(prompts):
        alone = sample(model, [p], 12, temperature=0.0, stop_ids=stops)
        n = int(alone.lengths[0])
        assert batched.completions()[i] == alone.completions()[0]
        torch.testing.assert_close(batched.logprobs[i, :n], alone.logprobs[0, :n], atol=1e-5, rtol=1e-5)


def test_sampling_stops_and_bans():
    model = small_model().eval()
    greedy = sample(model, [[1, 4, 4]], 5, temperature=0.0)
    first = greedy.tokens[0, 0].item()
    banned = sample(model, [[1, 4, 4]], 5, temperature=0.0, banned_first=[first])
    assert banned.tokens[0, 0].item() != first
    stopped = sample(model, [[1, 4, 4]], 5, temperature=0.0, stop_ids=[first])
    assert stopped.lengths.tolist() == [1] and stopped.tokens.shape[1] == 1
    g = torch.Generator().manual_seed(0)
    hot = sample(model, [[1, 4, 4]] * 8, 6, temperature=1.0, top_p=0.9, generator=g)
    assert (hot.logprobs <= 0).all() and hot.tokens.shape == (8, 6)


def test_packed_stream_learns_completions_only():
    b = stream(batch_size=8, seq_len=120).batch(0)
    learned = b["targets"] != IGNORE_INDEX
    text = TOK.decode(b["targets"][learned].tolist(), skip_control=False)
    assert "User:" not in text and "<answer>" in text and "<eos>" in text
    assert 0.1 < learned.float().mean() < 0.6
