"""Cached derived weights (folded MLA, stacked experts) follow every weight update."""

import copy

import pytest
import torch

from minir1 import Transformer
from minir1.infer.generate import sample
from minir1.model.derived import derived_weight, frozen_weights
from minir1.train.loop import TrainConfig, make_optimizer
from tests.conftest import small_cfg


def test_derived_weight_is_cached_and_follows_every_change():
    lin = torch.nn.Linear(4, 4)
    builds = []

    def get():
        return derived_weight(lin, "double", lambda: builds.append(1) or lin.weight * 2,
                              lambda: [lin.weight])

    with torch.no_grad():
        a = get()
        assert get() is a and len(builds) == 1  # cached
        lin.weight.add_(1.0)  # an optimizer step is an in-place update: the version counter moves
        torch.testing.assert_close(get(), lin.weight * 2)
        assert len(builds) == 2
        lin.to(torch.float64)  # new storage
        assert get().dtype == torch.float64 and len(builds) == 3
    g = get()  # gradients on: built every call, and differentiable
    assert g.requires_grad and len(builds) == 4
    g.sum().backward()
    torch.testing.assert_close(lin.weight.grad, torch.full((4, 4), 2.0, dtype=torch.float64))
    assert "double" not in lin.state_dict() and set(lin.state_dict()) == {"weight", "bias"}


def test_frozen_weights_checks_sources_once_per_block():
    lin = torch.nn.Linear(4, 4)
    looked = []

    def get():
        return derived_weight(lin, "w", lambda: lin.weight.clone(),
                              lambda: looked.append(1) or [lin.weight])

    with torch.no_grad():
        get()
        with frozen_weights():
            for _ in range(5):
                get()
            with frozen_weights():  # nested blocks share the outer one's promise
                get()
        assert len(looked) == 2  # once before the block, once on entering it
        lin.weight.add_(1.0)
        with frozen_weights():
            torch.testing.assert_close(get(), lin.weight)  # a new block sees the change


@pytest.mark.parametrize("optimizer", ["sgd", "library"])
def test_sampling_after_a_training_step_uses_the_new_weights(optimizer):
    """The library's optimizer is fused AdamW, whose kernel updates the weights in place without
    moving their version counters: lesson 07's in-process evaluation once scored a trained model
    0% on every task (its stale step-250 weights) while the saved checkpoint scored 100%."""
    cfg = small_cfg(vocab_size=40)
    torch.manual_seed(0)
    model = Transformer(cfg)
    prompts = [[1, 5, 7], [1, 9]]
    kw = dict(temperature=1.0, generator=None)
    before = sample(model, prompts, 12, **{**kw, "generator": torch.Generator().manual_seed(3)})
    opt = (torch.optim.SGD(model.parameters(), lr=5.0) if optimizer == "sgd"
           else make_optimizer(model, TrainConfig(lr=0.05, warmup_steps=0)))
    x = torch.randint(0, cfg.vocab_size, (4, 16))
    model(x, x).loss.backward()
    opt.step()  # in-place updates: the cached folded and stacked weights are now stale
    after = sample(model, prompts, 12, **{**kw, "generator": torch.Generator().manual_seed(3)})
    fresh = sample(copy.deepcopy(model), prompts, 12,
                   **{**kw, "generator": torch.Generator().manual_seed(3)})
    torch.testing.assert_close(after.logprobs, fresh.logprobs)
    assert torch.equal(after.tokens, fresh.tokens)
    assert not torch.allclose(after.logprobs, before.logprobs)
