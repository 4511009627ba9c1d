"""The whole model: parameter names, init, loss, dtypes, hidden states, packed samples."""

import math

import pytest
import torch

from minir1 import Transformer
from tests.conftest import small_cfg


def test_parameter_names_follow_the_official_layout():
    cfg = small_cfg()
    names = set(Transformer(cfg).state_dict())
    for n in ["embed.weight", "norm.weight", "head.weight", "layers.0.attn_norm.weight",
              "layers.0.attn.wq_a.weight", "layers.0.attn.q_norm.weight",
              "layers.0.attn.wq_b.weight", "layers.0.attn.wkv_a.weight",
              "layers.0.attn.kv_norm.weight", "layers.0.attn.wkv_b.weight",
              "layers.0.attn.wo.weight", "layers.0.ffn_norm.weight", "layers.0.ffn.w1.weight",
              "layers.0.ffn.w2.weight", "layers.0.ffn.w3.weight", "layers.1.ffn.gate.weight",
              "layers.1.ffn.gate.bias", "layers.1.ffn.experts.15.w1.weight",
              "layers.1.ffn.shared_experts.w3.weight"]:
        assert n in names, n
    assert not any(n.endswith(".bias") and ".gate." not in n for n in names)  # no biases in linears


def test_init_std_and_untied_head():
    cfg = small_cfg(dim=256)
    model = Transformer(cfg)
    assert model.head.weight.data_ptr() != model.embed.weight.data_ptr()
    assert model.layers[0].attn.wq_a.weight.std().item() == pytest.approx(0.006, rel=0.05)
    assert model.embed.weight.std().item() == pytest.approx(0.006, rel=0.05)
    assert torch.all(model.norm.weight == 1)


def test_loss_ignores_masked_targets_and_trains():
    cfg = small_cfg()
    model = Transformer(cfg)
    x = torch.randint(0, cfg.vocab_size, (4, 16))
    t = x.roll(-1, 1)
    t[:, :5] = -100
    out = model(x, targets=t)
    assert out.lm_loss.item() == pytest.approx(math.log(cfg.vocab_size), rel=0.02)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        loss = model(x, targets=t).loss
        first = first or loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.update_expert_bias()
    assert loss.item() < 0.5 * first


def test_bf16_forward_runs_and_stays_close():
    cfg = small_cfg()
    model = Transformer(cfg)
    x = torch.randint(0, cfg.vocab_size, (2, 16))
    ref = model(x).logits
    out = model.to(torch.bfloat16)(x).logits
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max() < 0.05 * ref.abs().max() + 1e-3
    assert model.rope_tables(torch.device("cpu"))[0].dtype == torch.float32


def test_same_seed_same_main_weights_with_or_without_mtp():
    torch.manual_seed(3)
    plain = Transformer(small_cfg(n_mtp_modules=0)).state_dict()
    torch.manual_seed(3)
    deep = Transformer(small_cfg(n_mtp_modules=2)).state_dict()
    assert all(torch.equal(v, deep[k]) for k, v in plain.items())


def test_hidden_state_is_returned():
    cfg = small_cfg()
    model = Transformer(cfg).eval()
    out = model(torch.zeros(2, 5, dtype=torch.long))
    torch.testing.assert_close(model.head(model.norm(out.hidden)), out.logits)


@pytest.mark.parametrize("attn_impl", ["naive", "absorbed"])
def test_sample_masking_isolates_packed_samples(attn_impl):
    cfg = small_cfg()
    model = Transformer(cfg).eval()
    a = torch.randint(0, cfg.vocab_size, (1, 7))
    b = torch.randint(0, cfg.vocab_size, (1, 9))
    packed = torch.cat([a, b], 1)
    doc_ids = torch.tensor([[0] * 7 + [1] * 9])
    with torch.no_grad():
        out = model(packed, doc_ids=doc_ids, attn_impl=attn_impl).logits
        alone = model(b, attn_impl=attn_impl).logits
        # RoPE is relative, so sample b sees exactly what it would see on its own
        torch.testing.assert_close(out[:, 7:], alone, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out[:, :7], model(a).logits, atol=1e-5, rtol=1e-5)
        leaky = model(packed, attn_impl=attn_impl).logits  # without the mask, b attends to a
    assert (leaky[:, 7:] - alone).abs().max() > 1e-3


@pytest.mark.gpu
@pytest.mark.parametrize("attn_impl", ["naive", "absorbed"])
def test_forward_and_backward_on_cuda_match_the_cpu(attn_impl):
    """The model on CUDA (fp32, then bf16 autocast as the trainer runs it) against the CPU in fp32:
    the loss and the gradients (in fp32 every one; under bf16 all but the routed experts', since
    bf16 may send a near-tie token elsewhere)."""
    cfg = small_cfg()
    torch.manual_seed(0)
    cpu = Transformer(cfg)
    gpu = Transformer(cfg).cuda()
    gpu.load_state_dict(cpu.state_dict())
    x = torch.randint(0, cfg.vocab_size, (4, 48))
    ref = cpu(x, targets=x, attn_impl=attn_impl)
    ref.loss.backward()
    for autocast in (False, True):
        gpu.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            out = gpu(x.cuda(), targets=x.cuda(), attn_impl=attn_impl)
        out.loss.backward()
        tol = 2e-2 if autocast else 1e-4
        assert abs(out.loss.item() - ref.loss.item()) < tol * ref.loss.item()
        for (name, p), q in zip(cpu.named_parameters(), gpu.parameters(), strict=True):
            if autocast and ".experts." in name:  # bf16 may flip a near-tie in the routing
                continue
            if p.grad is None or q.grad is None:
                assert (p.grad is None or not p.grad.any()) and (q.grad is None
                                                                  or not q.grad.any()), name
                continue
            rel = ((q.grad.float().cpu() - p.grad).norm() / p.grad.norm().clamp_min(1e-12))
            assert rel.item() < (0.1 if autocast else 1e-3), (name, autocast, rel.item())
