import pytest

from minir1 import ModelConfig, count_params
from minir1.plan import memory
from minir1.plan.hardware import GIB
from minir1.plan.memory import NAIVE_LAYOUTS, Layout, training_memory
from tests.plan.conftest import EXPERT, GATE, MLA, D


def test_layer_params_are_the_architectures(v3):
    lp = memory.layer_params(v3)
    assert lp.attention == MLA
    assert lp.expert == EXPERT
    assert lp.shared == EXPERT + GATE  # one shared expert + the gate
    assert lp.moe_active == MLA + 9 * EXPERT + GATE


def test_activation_bytes_of_a_v3_moe_block(v3):
    def fp8(n: int) -> int:  # FP8 values + one FP32 scale per 1x128 tile
        return n + 4 * (n // 128)

    hand = (2 * D  # block input, BF16 (RMSNorm recomputed)
            + 2 * 1536 + 2 * (512 + 64)  # c^Q, c^KV and k^R (up-projections recomputed)
            + 1.5 * 128 * 128 + 4 * 128  # attention output in E5M6 + its scales
            + 4 * 128  # log-sum-exp per head
            + 2 * D  # FFN input
            + 8 * 8  # K_r gate values and ids
            + 8 * fp8(D) + 8 * fp8(2 * 2048)  # dispatched inputs, routed SwiGLU inputs
            + fp8(2 * 2048))  # the shared expert's SwiGLU inputs
    assert sum(memory.activation_bytes(v3, moe=True).values()) == hand == 155_712


def test_stage_sizes_spread_the_blocks_short_stages_at_the_ends():
    assert memory.stage_sizes(62, 16) == [3] + [4] * 14 + [3]
    assert memory.stage_sizes(61, 16) == [3, 3] + [4] * 13 + [3]
    assert memory.stage_sizes(8, 8) == [1] * 8


@pytest.mark.parametrize("layout", [Layout(), Layout(dualpipe=False), Layout(pp=4, ep=32),
                                    Layout(pp=1, dualpipe=False)])
def test_stages_hold_every_parameter_once(v3, layout):
    c = count_params(v3)
    loads = memory.stage_loads(v3, layout)
    held = sum(s.nonexpert + s.expert for s in loads)
    # without DualPipe's co-location the MTP module needs its own embedding (V3 §3.2.3)
    extra = c.embedding if (layout.pp > 1 and not layout.dualpipe) else 0
    assert held == pytest.approx(c.total + c.mtp_total + extra)


@pytest.mark.parametrize("preset", ["tiny", "student", "small", "v2-lite"])
def test_every_preset_is_held_once_over_two_stages(preset):
    cfg, c = ModelConfig.preset(preset), count_params(ModelConfig.preset(preset))
    layout = Layout(n_gpus=4, pp=2, ep=2 if cfg.n_moe_layers else 1, dualpipe=False)
    extra = c.embedding if cfg.n_mtp_modules else 0
    held = sum(s.nonexpert + s.expert for s in memory.stage_loads(cfg, layout))
    assert held == pytest.approx(c.total + c.mtp_total + extra)


def test_the_papers_layout_fits_in_80_gb(v3):
    m = training_memory(v3, Layout())
    assert m.stages == (1, 14)  # DualPipe: rank 1 holds stages 1 and 14, 4 MoE blocks each
    nonexpert, expert = 8 * (MLA + EXPERT + GATE), 8 * 256 * EXPERT / 64
    assert m.params == pytest.approx(nonexpert + expert)
    b = m.bytes
    assert b["weights (BF16)"] == pytest.approx(2 * m.params)
    assert b["gradients (FP32)"] == pytest.approx(4 * m.params)
    # ZeRO-1: DP = 2048 / 16 = 128 replicas of a dense weight, 128 / 64 = 2 of an expert
    assert b["master weights (FP32)"] == pytest.approx(4 * (nonexpert / 128 + expert / 2))
    assert b["AdamW moments (2 x BF16)"] == b["master weights (FP32)"]
    # PP + 1 = 17 micro-batches of 4,096 tokens through 4 MoE blocks (V3 Table 2)
    assert b["activations"] == pytest.approx(17 * 4096 * 4 * 155_712)
    assert m.total < 79 * GIB and m.fits()


@pytest.mark.parametrize("name", ["data parallel only (ZeRO-1)", "PP16, no EP", "EP64, no PP",
                                  "PP16 x EP8 (EP inside a node)", "PP16 x EP64, no ZeRO-1"])
def test_naive_layouts_do_not_fit(v3, name):
    assert not training_memory(v3, NAIVE_LAYOUTS[name]).fits()


def test_zero1_and_dualpipe_change_what_they_should(v3):
    plain = training_memory(v3, Layout(zero1=False))
    assert plain.bytes["master weights (FP32)"] == pytest.approx(4 * plain.params)
    one_f_one_b = training_memory(v3, Layout(dualpipe=False))
    loads = memory.stage_loads(v3, Layout(dualpipe=False))
    per_gpu = [s.nonexpert + s.expert / 64 for s in loads]
    # one stage per rank; under 1F1B rank r holds PP - r micro-batches (Table 2's PP on rank 0
    # only), so the fullest is rank 1: 4 MoE blocks (rank 0 has 3 blocks, 3 of them dense) x 15
    assert (one_f_one_b.rank, one_f_one_b.stages, one_f_one_b.in_flight) == (1, (1,), 15)
    assert one_f_one_b.params == pytest.approx(per_gpu[1])
    assert one_f_one_b.bytes["activations"] == pytest.approx(15 * 4096 * 4 * 155_712)
    assert per_gpu[1] == pytest.approx(training_memory(v3, Layout()).params / 2)
    # 1F1B: the last stage needs its own embedding for the MTP module (DualPipe shares rank 0's)
    dual = memory.stage_loads(v3, Layout())
    assert loads[-1].nonexpert - dual[-1].nonexpert == count_params(v3).embedding


def test_tp_divides_attention_and_activations(v3):
    base, tp = training_memory(v3, Layout()), training_memory(v3, Layout(n_gpus=4096, tp=2))
    assert tp.bytes["activations"] == pytest.approx(base.bytes["activations"] / 2)
    assert tp.params == pytest.approx(base.params - 8 * (MLA + EXPERT + GATE) / 2)


@pytest.mark.parametrize("layout, match", [
    (Layout(n_gpus=2040), r"Layout.n_gpus=2040: must be divisible by pp \* tp = 16"),
    (Layout(ep=48), r"Layout.ep=48: must divide the 128 GPUs of a pipeline stage"),
    (Layout(n_gpus=1920, pp=15), r"Layout.pp=15: must be even for DualPipe"),
    (Layout(n_gpus=16 * 3 * 128, tp=3), r"Layout.tp=3: must divide n_heads \(128\)"),
    (Layout(pp=128, ep=8), r"Layout.pp=128: must be <= the 62 blocks"),
    (Layout(pp=0), r"Layout.pp=0: must be a positive integer"),
])
def test_bad_layouts_name_the_field_and_rule(v3, layout, match):
    with pytest.raises(ValueError, match=match):
        training_memory(v3, layout)


def test_ep_must_divide_the_experts():
    tiny = ModelConfig.preset("tiny")  # 16 routed experts
    with pytest.raises(ValueError, match=r"Layout.ep=32: must divide n_routed_experts \(16\)"):
        training_memory(tiny, Layout(n_gpus=64, pp=2, ep=32))
    assert training_memory(tiny, Layout(n_gpus=8, pp=2, ep=4)).fits()
