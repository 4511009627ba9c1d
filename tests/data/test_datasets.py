"""Corpus documents and the packed and SFT streams built from them."""

import pytest
import torch

from minir1.data.datasets import CorpusConfig, SFTStream, corpus_documents, sft_samples
from minir1.model.transformer import IGNORE_INDEX
from tests.conftest import TOK, stream


def test_test_split_documents_are_held_out():
    from minir1.data.tasks import split_of

    held_out = corpus_documents(CorpusConfig(), 100, seed=0, split="test")
    assert all(split_of(d.problem) == "test" for d in held_out)
    train_questions = {d.problem.question for d in corpus_documents(CorpusConfig(), 2000, seed=0)}
    assert not train_questions & {d.problem.question for d in held_out}
    with pytest.raises(ValueError, match="split"):
        corpus_documents(CorpusConfig(), 1, seed=0, split="val")


def test_sft_stream_masks_prompts_and_isolates_samples():
    docs = corpus_documents(CorpusConfig(template="chat", worked_fraction=1.0, levels=(1,),
                                         level_weights=(1.0,)), 50, seed=0)
    s = SFTStream(sft_samples(TOK, docs), batch_size=2, seq_len=96, seed=0, pad_id=TOK.pad_id)
    with pytest.raises(ValueError, match="exceed seq_len"):
        SFTStream(sft_samples(TOK, docs), batch_size=2, seq_len=16)
    b = s.batch(0)
    assert b["tokens"].shape == b["targets"].shape == b["doc_ids"].shape == (2, 96)
    row_t, row_y, row_d = b["tokens"][0], b["targets"][0], b["doc_ids"][0]
    first = row_d == 0
    text = TOK.decode(row_t[first].tolist(), skip_control=False)
    learned = TOK.decode([t for t in row_y[first].tolist() if t != IGNORE_INDEX],
                         skip_control=False)
    assert text.startswith("<bos>User: ")
    assert learned.startswith("<think>") and learned.endswith("<eos>")
    assert row_d.max() >= 1  # several samples share a row
    assert torch.equal(s.batch(3)["tokens"], s.batch(3)["tokens"])  # a pure function of the step


def test_packed_stream_learns_completions_only():
    b = stream(batch_size=8, seq_len=120).batch(0)
    learned = b["targets"] != IGNORE_INDEX
    text = TOK.decode(b["targets"][learned].tolist(), skip_control=False)
    assert "User:" not in text and "<answer>" in text and "<eos>" in text
    assert 0.1 < learned.float().mean() < 0.6
