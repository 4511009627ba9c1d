"""GRPO: advantages and the DeepSeekMath token-level objective, against hand computation."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from minir1.rl.grpo import group_advantages, grpo_loss, kl_k3


def test_group_advantages_standardise_each_group():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    a = group_advantages(r, 4, eps=0.0)
    torch.testing.assert_close(a[:4], torch.tensor([1.0, -1.0, -1.0, 1.0]))  # mean 0.5, population std 0.5
    assert torch.equal(group_advantages(r, 4)[4:], torch.zeros(4))  # no variance: no signal
    torch.testing.assert_close(group_advantages(r, 4, scale="none")[:4], torch.tensor([0.5, -0.5, -0.5, 0.5]))
    with pytest.raises(ValueError, match="group_size"):
        group_advantages(r, 3)
    with pytest.raises(ValueError, match="scale"):
        group_advantages(r, 4, scale="max")


def test_loss_matches_a_hand_computed_example():
    lp = torch.log(torch.tensor([[0.5, 0.4, 0.9], [0.2, 0.3, 0.1]]))
    old = torch.log(torch.tensor([[0.5, 0.2, 0.9], [0.4, 0.3, 0.1]]))
    ref = torch.log(torch.tensor([[0.5, 0.5, 0.5], [0.2, 0.3, 0.1]]))
    adv = torch.tensor([1.0, -2.0])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])  # the second response has 2 tokens
    eps, beta = 0.2, 0.1
    # response 1: ratios 1, 2 (clipped to 1.2 since A > 0), 1 -> surrogates 1, 1.2, 1
    # k3 per token: r = ref/p -> r - ln r - 1
    k = [(0.5 / 0.5) - math.log(1.0) - 1, (0.5 / 0.4) - math.log(0.5 / 0.4) - 1, (0.5 / 0.9) - math.log(0.5 / 0.9) - 1]
    j1 = (1.0 - beta * k[0] + 1.2 - beta * k[1] + 1.0 - beta * k[2]) / 3
    # response 2: ratios 0.5 (A < 0: min(0.5 * -2, 0.8 * -2) = -1.6), 1 -> -2; KL zero (p == ref)
    j2 = (-1.6 + -2.0) / 2
    loss = grpo_loss(lp, old, ref, adv, mask, clip_eps=eps, kl_beta=beta)
    assert loss.item() == pytest.approx(-(j1 + j2) / 2, rel=1e-6)
    token = grpo_loss(lp, old, ref, adv, mask, clip_eps=eps, kl_beta=beta, aggregation="token")
    assert token.item() == pytest.approx(-(j1 * 3 + j2 * 2) / 5, rel=1e-6)


def test_zero_advantages_and_no_kl_give_zero_gradients():
    lp = torch.randn(3, 5, requires_grad=True)
    loss = grpo_loss(lp, lp.detach() + 0.1, None, torch.zeros(3), torch.ones(3, 5), kl_beta=0.0)
    loss.backward()
    assert torch.equal(lp.grad, torch.zeros(3, 5))


@pytest.mark.parametrize("adv", [1.0, -1.0])
def test_clipping_engages_exactly_outside_the_interval(adv):
    eps = 0.2
    ratios = torch.tensor([0.7, 0.79, 0.81, 1.0, 1.19, 1.21, 1.5])
    old = torch.zeros(1, 7)
    lp = torch.log(ratios)[None].clone().requires_grad_(True)
    stats = grpo_loss(lp, old, None, torch.tensor([adv]), torch.ones(1, 7), clip_eps=eps, kl_beta=0.0,
                      return_stats=True)
    stats.loss.backward()
    has_grad = lp.grad[0] != 0
    # the min() keeps the unclipped term unless clipping makes it worse for the policy:
    # A > 0 stops gradients above 1 + eps, A < 0 stops them below 1 - eps
    expected = ratios <= 1 + eps if adv > 0 else ratios >= 1 - eps
    assert torch.equal(has_grad, expected)
    assert stats.clip_fraction == pytest.approx((~expected).float().mean().item())


@given(st.lists(st.floats(-5, 5), min_size=1, max_size=20), st.lists(st.floats(-5, 5), min_size=1, max_size=20))
def test_k3_is_non_negative_and_zero_when_the_policies_agree(a, b):
    n = min(len(a), len(b))
    lp, ref = torch.tensor(a[:n], dtype=torch.float64), torch.tensor(b[:n], dtype=torch.float64)
    assert (kl_k3(lp, ref) >= 0).all()
    assert torch.equal(kl_k3(lp, lp), torch.zeros(n, dtype=torch.float64))


def test_kl_pulls_towards_the_reference():
    lp = torch.zeros(1, 4, requires_grad=True)
    grpo_loss(lp, lp.detach(), torch.full((1, 4), -1.0), torch.zeros(1), torch.ones(1, 4), kl_beta=1.0).backward()
    assert (lp.grad > 0).all()  # descending the loss lowers log pi_theta towards the reference's -1


def test_bad_shapes_and_options_are_named():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="aggregation"):
        grpo_loss(x, x, x, torch.zeros(2), x, aggregation="batch")
    with pytest.raises(ValueError, match="advantages"):
        grpo_loss(x, x, x, torch.zeros(3), x)
    with pytest.raises(ValueError, match="ref_logprobs"):  # a KL term without a reference is never silent
        grpo_loss(x, x, None, torch.zeros(2), x, kl_beta=0.04)
    with pytest.raises(ValueError, match="ref_logprobs"):
        grpo_loss(x, x, torch.zeros(2, 4), torch.zeros(2), x, kl_beta=0.04)
