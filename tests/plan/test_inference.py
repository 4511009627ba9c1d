import pytest

from minir1 import ModelConfig, count_params
from minir1.plan import inference
from minir1.plan.hardware import GIB, GPUS
from minir1.plan.inference import DISTILL, fit_table, kv_equivalents, max_context, served


@pytest.mark.parametrize("model", DISTILL, ids=lambda m: m.name)
def test_distill_parameter_counts_match_the_published_sizes(model):
    assert model.params / 1e9 == pytest.approx(model.published_b, rel=0.02)


def test_qwen_15b_by_hand():
    q = DISTILL[0]  # hidden 1536, 28 layers, 12 heads, 2 KV heads of 128, FFN 8960, vocab 151,936
    block = (1536 * 1536 + 1536 + 2 * (1536 * 256 + 256) + 1536 * 1536  # q, k, v (+bias), o
             + 3 * 1536 * 8960 + 2 * 1536)
    assert q.params == 28 * block + 2 * 151936 * 1536 + 1536
    assert q.kv_bytes_per_token == 2 * 28 * 2 * 128 * 2 == 28_672


def test_mla_cache_against_mha_and_gqa(v3):
    kv = kv_equivalents(v3)
    assert kv["MLA (cached latent)"] == (512 + 64) * 61 * 2 == 70_272  # V3 §2.1.1
    assert kv["MHA"] == 2 * 128 * 128 * 61 * 2  # 2 n_h d_h l values (DeepSeek-V2 Table 1)
    assert kv["GQA-8"] == 2 * 8 * 128 * 61 * 2
    assert kv["MHA"] / kv["MLA (cached latent)"] == pytest.approx(2 * 128 / 4.5)  # 9/2 d_h l


def test_weight_bytes_per_precision(v3):
    c = count_params(v3)
    m = served(v3, "v3")
    assert m.weight_bytes("bf16") == 2 * c.total
    assert m.weight_bytes("q4") == pytest.approx(c.total * 4.5 / 8)
    # FP8 with 128x128 FP32 block scales; embedding and head stay BF16 (V3 §3.3.1)
    kept = c.embedding + c.head
    assert m.weight_bytes("fp8") == pytest.approx((c.total - kept) * (1 + 4 / 128**2) + 2 * kept)
    with pytest.raises(ValueError, match="precision='int3': must be one of"):
        m.weight_bytes("int3")


def test_max_context_by_hand():
    qwen7 = served(DISTILL[1])
    gpu = GPUS["rtx3080"]
    free = 9 * GIB - qwen7.weight_bytes("fp8")  # 10 GiB less the 1 GiB reserve
    assert max_context(qwen7, gpu, "fp8") == int(free // (2 * 28 * 4 * 128 * 2)) // 1024 * 1024
    assert max_context(qwen7, gpu, "bf16") == 0  # 15.2 GB of weights
    assert max_context(served(DISTILL[0]), gpu, "bf16", cap=32768) == 32768


def test_which_distilled_model_runs_on_an_rtx_3080():
    rows = fit_table([served(d) for d in DISTILL])
    ctx = {(r["model"], r["precision"]): r["max_context"]["rtx3080"] for r in rows}
    assert ctx[("R1-Distill-Qwen-1.5B", "bf16")] >= 32768  # R1's 32K generation, unquantised
    assert ctx[("R1-Distill-Qwen-7B", "bf16")] == 0
    assert ctx[("R1-Distill-Qwen-7B", "q4")] >= 32768
    assert ctx[("R1-Distill-Llama-8B", "q4")] >= 32768
    assert 0 < ctx[("R1-Distill-Qwen-14B", "q4")] < 32768  # only short contexts
    for name in ("R1-Distill-Qwen-32B", "R1-Distill-Llama-70B"):
        assert all(ctx[(name, p)] == 0 for p in inference.PRECISIONS)


def test_v3_needs_a_node():
    rows = fit_table([served(ModelConfig.preset("v3"), "v3")])
    by = {r["precision"]: r["max_context"] for r in rows}
    assert all(by[p]["h800"] == 0 for p in by)  # 671B does not fit one 80 GB GPU
    assert by["bf16"]["8xh800"] == 0  # 1.34 TB of BF16 weights do not fit 640 GB either
    assert by["q4"]["8xh800"] == 131072
