"""GRPO: advantages and the DeepSeekMath token-level objective, against hand computation."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from minir1.rl.grpo import AGGREGATIONS, GRPOStats, group_advantages, grpo_loss, kl_k3


def random_batch(lengths: list[int], width: int, dtype: torch.dtype = torch.float32, seed: int = 0):
    """(logprobs leaf, old, ref, advantages, mask) for responses of the given lengths."""
    g = torch.Generator().manual_seed(seed)
    shape = (len(lengths), width)
    lp = (-torch.rand(shape, generator=g, dtype=dtype) * 3).requires_grad_(True)
    old = lp.detach() + 0.3 * torch.randn(shape, generator=g, dtype=dtype)  # some ratios clip
    ref = lp.detach() + 0.5 * torch.randn(shape, generator=g, dtype=dtype)
    adv = torch.randn(len(lengths), generator=g, dtype=dtype)
    mask = (torch.arange(width)[None] < torch.tensor(lengths)[:, None]).to(dtype)
    return lp, old, ref, adv, mask


def loss_and_grad(lp, *args, **kwargs):
    leaf = lp.detach().clone().requires_grad_(True)
    loss = grpo_loss(leaf, *args, **kwargs)
    loss.backward()
    return loss.detach(), leaf.grad


def test_group_advantages_standardise_each_group():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    a = group_advantages(r, 4, eps=0.0)
    # mean 0.5, population std 0.5
    torch.testing.assert_close(a[:4], torch.tensor([1.0, -1.0, -1.0, 1.0]))
    assert torch.equal(group_advantages(r, 4)[4:], torch.zeros(4))  # no variance: no signal
    torch.testing.assert_close(group_advantages(r, 4, scale="none")[:4],
                               torch.tensor([0.5, -0.5, -0.5, 0.5]))
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
    k = [(0.5 / 0.5) - math.log(1.0) - 1, (0.5 / 0.4) - math.log(0.5 / 0.4) - 1,
         (0.5 / 0.9) - math.log(0.5 / 0.9) - 1]
    j1 = (1.0 - beta * k[0] + 1.2 - beta * k[1] + 1.0 - beta * k[2]) / 3
    # response 2: ratios 0.5 (A < 0: min(0.5 * -2, 0.8 * -2) = -1.6), 1 -> -2; KL zero (p == ref)
    j2 = (-1.6 + -2.0) / 2
    loss = grpo_loss(lp, old, ref, adv, mask, clip_eps=eps, kl_beta=beta)
    assert loss.item() == pytest.approx(-(j1 + j2) / 2, rel=1e-6)
    token = grpo_loss(lp, old, ref, adv, mask, clip_eps=eps, kl_beta=beta, aggregation="token")
    assert token.item() == pytest.approx(-(j1 * 3 + j2 * 2) / 5, rel=1e-6)
    # Dr. GRPO: the token sums over a constant, budget 4 tokens x 2 responses, whatever the lengths
    const = grpo_loss(lp, old, ref, adv, mask, clip_eps=eps, kl_beta=beta, aggregation="constant",
                      max_tokens=4)
    assert const.item() == pytest.approx(-(j1 * 3 + j2 * 2) / (4 * 2), rel=1e-6)


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
    stats = grpo_loss(lp, old, None, torch.tensor([adv]), torch.ones(1, 7), clip_eps=eps,
                      kl_beta=0.0, return_stats=True)
    stats.loss.backward()
    has_grad = lp.grad[0] != 0
    # the min() keeps the unclipped term unless clipping makes it worse for the policy:
    # A > 0 stops gradients above 1 + eps, A < 0 stops them below 1 - eps
    expected = ratios <= 1 + eps if adv > 0 else ratios >= 1 - eps
    assert torch.equal(has_grad, expected)
    assert stats.clip_fraction == pytest.approx((~expected).float().mean().item())


@given(st.lists(st.floats(-5, 5), min_size=1, max_size=20),
       st.lists(st.floats(-5, 5), min_size=1, max_size=20))
def test_k3_is_non_negative_and_zero_when_the_policies_agree(a, b):
    n = min(len(a), len(b))
    lp, ref = torch.tensor(a[:n], dtype=torch.float64), torch.tensor(b[:n], dtype=torch.float64)
    assert (kl_k3(lp, ref) >= 0).all()
    assert torch.equal(kl_k3(lp, lp), torch.zeros(n, dtype=torch.float64))


def test_kl_pulls_towards_the_reference():
    lp = torch.zeros(1, 4, requires_grad=True)
    grpo_loss(lp, lp.detach(), torch.full((1, 4), -1.0), torch.zeros(1), torch.ones(1, 4),
              kl_beta=1.0).backward()
    assert (lp.grad > 0).all()  # descending the loss lowers log pi_theta towards the reference's -1


def test_bad_shapes_and_options_are_named():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="aggregation"):
        grpo_loss(x, x, x, torch.zeros(2), x, aggregation="batch")
    with pytest.raises(ValueError, match="advantages"):
        grpo_loss(x, x, x, torch.zeros(3), x)
    with pytest.raises(ValueError, match="ref_logprobs"):  # a KL term without a reference is loud
        grpo_loss(x, x, None, torch.zeros(2), x, kl_beta=0.04)
    with pytest.raises(ValueError, match="ref_logprobs"):
        grpo_loss(x, x, torch.zeros(2, 4), torch.zeros(2), x, kl_beta=0.04)


# (a) empty responses in the default sequence aggregation


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sequence_aggregation_is_bit_identical_to_the_plain_mean_without_empty_responses(dtype):
    # the formula as it stood before empty responses were left out: no existing run's numbers move
    lp, old, ref, adv, mask = random_batch([5, 1, 7, 3, 7, 2], 7, dtype)
    eps, beta = 0.2, 0.04
    loss, grad = loss_and_grad(lp, old, ref, adv, mask, clip_eps=eps, kl_beta=beta)
    leaf = lp.detach().clone().requires_grad_(True)
    ratio = torch.exp(leaf - old)
    a = adv[:, None]
    per_token = (torch.minimum(ratio * a, ratio.clamp(1 - eps, 1 + eps) * a)
                 - beta * (torch.exp(ref - leaf) - (ref - leaf) - 1))
    expected = -((per_token * mask).sum(1) / mask.sum(1).clamp_min(1)).mean()
    expected.backward()
    assert loss.dtype == dtype
    assert torch.equal(loss, expected.detach())
    assert torch.equal(grad, leaf.grad)


@pytest.mark.parametrize("where", [0, 2, 4])
def test_an_empty_response_does_not_shrink_the_sequence_loss(where):
    lp, old, ref, adv, mask = random_batch([5, 1, 7, 3], 7, torch.float64)
    kw = {"clip_eps": 0.2, "kl_beta": 0.04}
    loss, grad = loss_and_grad(lp, old, ref, adv, mask, **kw)

    def insert(x, value):  # the same batch with one more response, all padding, at row `where`
        row = torch.full_like(x[:1], value)
        return torch.cat([x[:where], row, x[where:]])

    lp_e = insert(lp.detach(), -1.0)
    loss_e, grad_e = loss_and_grad(lp_e, insert(old, -2.0), insert(ref, -3.0),
                                   insert(adv, 5.0), insert(mask, 0.0), **kw)
    torch.testing.assert_close(loss_e, loss, rtol=1e-12, atol=0)  # counting it would give 4/5 of it
    torch.testing.assert_close(torch.cat([grad_e[:where], grad_e[where + 1:]]), grad,
                               rtol=1e-12, atol=0)
    assert torch.equal(grad_e[where], torch.zeros(7, dtype=torch.float64))


@pytest.mark.parametrize("rows", [3, 0])  # three empty responses, or none at all
@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_all_empty_responses_give_zero_loss_and_zero_gradients(aggregation, rows):
    lp, old, ref, adv, mask = random_batch([0] * rows, 4)
    leaf = lp.detach().clone().requires_grad_(True)
    kw = {"max_tokens": 4} if aggregation == "constant" else {}
    stats = grpo_loss(leaf, old, ref, adv, mask, kl_beta=0.04, aggregation=aggregation,
                      return_stats=True, **kw)
    stats.loss.backward()
    assert stats.loss.item() == 0.0
    assert torch.equal(leaf.grad, torch.zeros(rows, 4))  # zero, hence finite: never NaN
    assert (stats.kl, stats.clip_fraction, stats.ratio_mean) == (0.0, 0.0, 0.0)


# (b) k3: exact by default, an opt-in clamp


def test_k3_default_is_the_exact_unclamped_formula():
    lp = torch.zeros(6)
    ref = torch.tensor([25.0, 5.0, 0.3, 0.0, -2.0, -30.0])
    d = ref - lp
    assert torch.equal(kl_k3(lp, ref), torch.exp(d) - d - 1)
    assert kl_k3(lp, ref)[0].item() > 7e10  # DeepSeekMath Eq. 4 has no bound
    lp_b, old, _, adv, mask = random_batch([4, 2], 4)
    ref_b = lp_b.detach() + 25.0
    assert torch.equal(grpo_loss(lp_b, old, ref_b, adv, mask),
                       grpo_loss(lp_b, old, ref_b, adv, mask, kl_clamp=None))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("clamp", [0.5, 10.0, 1e4])
def test_kl_clamp_bounds_k3_far_from_the_reference_with_a_finite_gradient(dtype, clamp):
    lp = torch.zeros(5, dtype=dtype, requires_grad=True)
    ref = torch.tensor([25.0, 100.0, 1000.0, -1e5, -1e7], dtype=dtype)  # log(pi_ref / pi_theta)
    k = kl_k3(lp, ref, kl_clamp=clamp)
    k.sum().backward()
    assert (k <= clamp).all()
    torch.testing.assert_close(k, torch.full_like(k, clamp), rtol=1e-5, atol=0)
    assert torch.isfinite(lp.grad).all()
    # without the clamp the same tokens overflow or grow without bound
    assert not (kl_k3(lp.detach(), ref) <= clamp).any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kl_clamp_leaves_values_inside_the_bound_unchanged(dtype):
    clamp = 10.0  # k3(2.5) = 8.68 and k3(-9) = 8.0001, both under it
    ref = torch.linspace(-9.0, 2.5, 47, dtype=dtype)
    lp_a = torch.zeros(47, dtype=dtype, requires_grad=True)
    lp_b = torch.zeros(47, dtype=dtype, requires_grad=True)
    exact, clamped = kl_k3(lp_a, ref), kl_k3(lp_b, ref, kl_clamp=clamp)
    exact.sum().backward()
    clamped.sum().backward()
    assert torch.equal(exact, clamped)
    assert torch.equal(lp_a.grad, lp_b.grad)


def test_kl_clamp_in_grpo_loss_keeps_normal_batches_and_guards_far_tokens():
    lp, old, ref, adv, mask = random_batch([4, 2, 3], 4, torch.float32)
    kw = {"clip_eps": 0.2, "kl_beta": 0.04}
    # every log-ratio here is within ±2, k3 < 5.4: a clamp of 10 changes nothing, bit for bit
    assert torch.equal(grpo_loss(lp, old, ref, adv, mask, **kw),
                       grpo_loss(lp, old, ref, adv, mask, kl_clamp=10.0, **kw))
    far = ref.clone()
    far[0, 1] = lp[0, 1].detach() + 100.0  # exp(100) overflows float32
    _, grad = loss_and_grad(lp, old, far, adv, mask, **kw)
    assert not torch.isfinite(grad).all()  # the paper's form: the run would be poisoned
    stats = grpo_loss(lp, old, far, adv, mask, kl_clamp=10.0, return_stats=True, **kw)
    stats.loss.backward()
    assert torch.isfinite(stats.loss) and torch.isfinite(lp.grad).all()
    assert stats.kl_clamp_fraction == pytest.approx(1 / 9)  # one of the 9 response tokens
    assert stats.kl <= 10.0


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan, True, "10"])
def test_bad_kl_clamp_is_named(bad):
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"kl_clamp=.*finite number > 0"):
        kl_k3(x, x, kl_clamp=bad)
    with pytest.raises(ValueError, match=r"kl_clamp=.*finite number > 0"):  # checked even at beta 0
        grpo_loss(x, x, None, torch.zeros(2), torch.ones(2, 3), kl_beta=0.0, kl_clamp=bad)


# (c) Dr. GRPO: a constant normaliser in place of 1/|o_i|


def test_constant_aggregation_matches_the_written_out_formula():
    lp, old, ref, adv, mask = random_batch([5, 1, 0, 3], 6, torch.float64)
    eps, beta, budget = 0.2, 0.04, 8
    loss, grad = loss_and_grad(lp, old, ref, adv, mask, clip_eps=eps, kl_beta=beta,
                               aggregation="constant", max_tokens=budget)
    leaf = lp.detach().clone().requires_grad_(True)
    ratio = torch.exp(leaf - old)
    a = adv[:, None]
    per_token = (torch.minimum(ratio * a, ratio.clamp(1 - eps, 1 + eps) * a)
                 - beta * (torch.exp(ref - leaf) - (ref - leaf) - 1))
    # all 4 rows count, the empty one too: the normaliser must not depend on the lengths
    expected = -(per_token * mask).sum() / (budget * 4)
    expected.backward()
    torch.testing.assert_close(loss, expected.detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(grad, leaf.grad, rtol=1e-12, atol=0)


def test_constant_aggregation_removes_the_length_bias_of_sequence_aggregation():
    # two wrong answers, 8 tokens and 2 tokens, at the start of an update (ratio 1, no KL)
    lengths, budget = [8, 2], 8
    mask = (torch.arange(8)[None] < torch.tensor(lengths)[:, None]).double()
    adv = torch.tensor([-1.0, -1.0], dtype=torch.float64)
    lp = torch.zeros(2, 8, dtype=torch.float64)
    _, seq = loss_and_grad(lp, lp, None, adv, mask, kl_beta=0.0)
    _, const = loss_and_grad(lp, lp, None, adv, mask, kl_beta=0.0, aggregation="constant",
                             max_tokens=budget)
    # d loss / d log pi per token = -A w: Eq. 3 weighs each token 1 / (G |o_i|), so the long wrong
    # answer's tokens are pushed down 4x less than the short one's (the bias Dr. GRPO names) ...
    assert seq[0, 0].item() == pytest.approx(1 / (2 * 8))
    assert seq[1, 0].item() == pytest.approx(1 / (2 * 2))
    assert (seq * mask).sum(1).tolist() == pytest.approx([0.5, 0.5])  # same total per response
    # ... while a constant normaliser weighs every token alike, 1 / (L B)
    assert torch.equal(const[mask.bool()], torch.full((10,), 1 / (budget * 2), dtype=torch.float64))
    assert (const * mask).sum(1).tolist() == pytest.approx([8 / 16, 2 / 16])  # grows with length
    assert torch.equal(const[~mask.bool()], torch.zeros(6, dtype=torch.float64))


def test_constant_aggregation_arguments_are_checked():
    x, m = torch.zeros(2, 3), torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="aggregation='constant' needs max_tokens"):
        grpo_loss(x, x, None, torch.zeros(2), m, kl_beta=0.0, aggregation="constant")
    for bad in (0, -4, 2.5, True, "8"):
        with pytest.raises(ValueError, match=r"max_tokens=.*must be an int >= 1"):
            grpo_loss(x, x, None, torch.zeros(2), m, kl_beta=0.0, aggregation="constant",
                      max_tokens=bad)
    with pytest.raises(ValueError, match=r"max_tokens=2: must be >= the longest response \(3"):
        grpo_loss(x, x, None, torch.zeros(2), m, kl_beta=0.0, aggregation="constant",
                  max_tokens=2)
    for aggregation in ("sequence", "token"):  # silently ignored, it would not be Dr. GRPO
        with pytest.raises(ValueError, match="max_tokens=8: only aggregation='constant' uses it"):
            grpo_loss(x, x, None, torch.zeros(2), m, kl_beta=0.0, aggregation=aggregation,
                      max_tokens=8)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_stats_work_in_every_aggregation(aggregation):
    lp, old, ref, adv, mask = random_batch([4, 0, 2], 4, torch.float64)
    kw = {"max_tokens": 4} if aggregation == "constant" else {}
    loss = grpo_loss(lp, old, ref, adv, mask, aggregation=aggregation, **kw)
    stats = grpo_loss(lp, old, ref, adv, mask, aggregation=aggregation, return_stats=True, **kw)
    assert isinstance(stats, GRPOStats) and torch.equal(stats.loss, loss)
    assert loss.dtype == torch.float64 and torch.isfinite(loss)
    n = mask.sum()
    d = ref - lp.detach()
    assert stats.kl == pytest.approx(float(((torch.exp(d) - d - 1) * mask).sum() / n))
    assert stats.ratio_mean == pytest.approx(float((torch.exp(lp.detach() - old) * mask).sum() / n))
    assert stats.kl_clamp_fraction == 0.0
