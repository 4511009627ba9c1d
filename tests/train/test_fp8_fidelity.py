"""The FP8 fidelity study: EMA gaps, outlier injection, perturbation, the report."""

import pytest
import torch


def test_ema_and_relative_gap():
    from minir1.train.fp8_fidelity import ema, relative_gap

    assert ema([1.0, 1.0, 1.0]) == [1.0, 1.0, 1.0]
    assert ema([0.0, 10.0]) == pytest.approx([0.0, 1.0])
    assert relative_gap([1.01] * 5, [1.0] * 5) == pytest.approx(0.01)
    assert relative_gap([2.0, 1.0], [2.0, 1.0], last=2) == 0.0


def test_channel_outlier_injection_scales_the_norm_channels():
    from minir1 import ModelConfig, Transformer
    from minir1.train.fp8_fidelity import inject_channel_outliers

    torch.manual_seed(0)
    model = Transformer(ModelConfig.preset("tiny"))
    before = model.layers[0].attn_norm.weight.clone()
    inject_channel_outliers(model, 1000.0, channels=(3,))
    after = model.layers[0].attn_norm.weight
    assert after[3] == 1000.0 * before[3] and torch.equal(after[4:], before[4:])


def test_token_outlier_injection_scales_every_nth_position_and_is_removable():
    from minir1 import ModelConfig, Transformer
    from minir1.train.fp8_fidelity import inject_token_outliers

    torch.manual_seed(0)
    model = Transformer(ModelConfig.preset("tiny"))
    x = torch.randn(2, 70, model.cfg.dim)
    norm = model.layers[0].ffn_norm
    plain = norm(x)
    handles = inject_token_outliers(model, 100.0, every=32)
    assert len(handles) == 2 * len(model.layers)
    hooked = norm(x)
    scaled = torch.zeros(70, dtype=torch.bool)
    scaled[[0, 32, 64]] = True
    torch.testing.assert_close(hooked[:, scaled], 100.0 * plain[:, scaled])
    assert torch.equal(hooked[:, ~scaled], plain[:, ~scaled])
    for h in handles:
        h.remove()
    assert torch.equal(norm(x), plain)
    with pytest.raises(ValueError, match="every"):
        inject_token_outliers(model, 10.0, every=0)


def test_perturb_weights_is_small_seeded_and_leaves_global_rng_alone():
    from minir1 import ModelConfig, Transformer
    from minir1.train.fp8_fidelity import perturb_weights

    torch.manual_seed(0)
    a, b = Transformer(ModelConfig.preset("tiny")), Transformer(ModelConfig.preset("tiny"))
    b.load_state_dict(a.state_dict())
    state = torch.get_rng_state()
    perturb_weights(a, 1e-3, seed=1)
    assert torch.equal(state, torch.get_rng_state())
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        rel = ((pa - pb) / pb.abs().clamp_min(1e-12)).abs()
        assert rel.max() < 6e-3, name  # 1e-3 * |N(0,1)|, below 6 sigma
    assert any(not torch.equal(pa, pb)
               for pa, pb in zip(a.parameters(), b.parameters(), strict=True))
    c, d = Transformer(ModelConfig.preset("tiny")), Transformer(ModelConfig.preset("tiny"))
    c.load_state_dict(b.state_dict())
    d.load_state_dict(b.state_dict())
    perturb_weights(c, 1e-3, seed=1)
    perturb_weights(d, 1e-3, seed=2)
    assert all(torch.equal(pa, pc)  # same seed
               for pa, pc in zip(a.parameters(), c.parameters(), strict=True))
    assert not all(torch.equal(pa, pd)
                   for pa, pd in zip(a.parameters(), d.parameters(), strict=True))


def test_fidelity_report_statistics():
    from minir1.train.fp8_fidelity import NOISE_FLOOR, Curve, FidelityReport

    rep = FidelityReport(steps=20, outliers="none", seeds=[0, 1], labels=[NOISE_FLOOR, "deepseek"])
    for s, (noise, fp8) in enumerate([(1.03, 1.01), (0.96, 1.03)]):
        rep.curves["off", s] = Curve("off", [1.0] * 20, 2.0)
        rep.curves[NOISE_FLOOR, s] = Curve("off", [1.0] * 10 + [noise] * 10, 2.0)
        rep.curves["deepseek", s] = Curve("deepseek", [1.0] * 10 + [fp8] * 10, 7.0)
    assert rep.gaps("deepseek", step=10) == [0.0, 0.0]  # identical until step 10
    # read at step 15: the window is the last 15 // 10 = 1 step, where the EMA has seen 5 steps of
    # the offset
    assert rep.gaps("deepseek", step=15)[0] == pytest.approx(0.01 * (1 - 0.9**5))
    with pytest.raises(ValueError, match="step"):
        rep.gaps("deepseek", step=21)
    d = rep.gaps("deepseek")
    # EMA(0.9) of a step of 0.01 at step 10, averaged over the last 2 of 20 steps
    assert d[0] == pytest.approx(0.01 * (2 - 0.9**9 - 0.9**10) / 2)
    assert d[1] == pytest.approx(3 * d[0])
    assert rep.mean("deepseek") == pytest.approx(sum(d) / 2)
    assert rep.stderr("deepseek") == pytest.approx(abs(d[1] - d[0]) / 2)
    n = rep.gaps(NOISE_FLOOR)
    assert rep.noise_floor() == pytest.approx(((n[0] ** 2 + n[1] ** 2) / 2) ** 0.5)
    assert n[1] < 0 < n[0]
    assert rep.slowdown("deepseek") == pytest.approx(3.5)


def test_loss_curve_is_deterministic_and_rejects_unknown_outliers():
    from minir1.train.fp8_fidelity import loss_curve

    a = loss_curve("off", 3, batch_size=2, seq_len=32)
    b = loss_curve("off", 3, batch_size=2, seq_len=32)
    assert a.losses == b.losses
    c = loss_curve("off", 3, batch_size=2, seq_len=32, perturb=1e-3)
    assert c.losses[0] != a.losses[0] and abs(c.losses[0] - a.losses[0]) < 1e-2
    with pytest.raises(ValueError, match="outliers"):
        loss_curve("off", 3, outliers="rows")
