import math

import pytest

from minir1.plan import comm
from minir1.plan.hardware import H800
from tests.plan.conftest import EXPERT, GATE, MLA, N_H


def test_a2a_rows_is_the_benchmarks_formula():
    assert comm.a2a_rows(4096, 8, 64) == 4096 * 8 * 63 / 64 == 32_256
    assert comm.a2a_rows(100, 8, 1) == 0
    with pytest.raises(ValueError, match="ep=0"):
        comm.a2a_rows(1, 8, 0)


def test_row_bytes_fp8_dispatch_bf16_combine(v3):
    assert comm.row_bytes(v3) == {"dispatch": 7168 + 4 * 7168 // 128, "combine": 2 * 7168}


@pytest.mark.parametrize("ep", [8, 16, 64])
def test_plain_all_to_all_copies_add_up_to_the_row_formula(v3, ep):
    ib, nvlink = comm.copies(v3, ep, "all-to-all")
    assert ib + nvlink == pytest.approx(comm.a2a_rows(1, 8, ep))
    assert ib == pytest.approx(8 * (ep - min(ep, 8)) / ep)


def test_node_limited_against_unrestricted(v3):
    miss = math.prod((224 - i) / (256 - i) for i in range(8))  # no expert on a given node
    assert comm.copies(v3, 64, "per-node")[0] == pytest.approx(7 * (1 - miss))  # ~4.63
    assert comm.copies(v3, 64, "node-limited")[0] == pytest.approx(4 * 7 / 8)  # M = 4 of 8
    ib = [comm.copies(v3, 64, r)[0] for r in ("node-limited", "per-node", "all-to-all")]
    assert ib == sorted(ib)
    assert comm.copies(v3.replace(n_limited_groups=8), 64, "node-limited")[0] == 7
    for routing in comm.ROUTINGS:  # EP inside one node never touches InfiniBand
        assert comm.copies(v3, 8, routing)[0] == 0


def test_time_on_the_papers_links(v3):
    t = comm.traffic(v3, 64, "node-limited")
    assert t.dispatch_us == pytest.approx(3.5 * 7392 / 50e9 * 1e6)  # IB-bound: 50 GB/s
    assert t.combine_us == pytest.approx(3.5 * 14336 / 50e9 * 1e6)
    flops = 2 * (MLA + 9 * EXPERT + GATE) + N_H * 320 * 4097
    assert comm.moe_layer_flops(v3, 4096) == pytest.approx(flops, rel=1e-6)
    assert t.compute_us == pytest.approx(flops / (0.4 * 989.4e12) * 1e6)
    # EP8 in a node: NVLink only, 160 GB/s
    local = comm.traffic(v3, 8, "all-to-all")
    assert local.dispatch_us == pytest.approx(7 / 8 * 8 * 7392 / 160e9 * 1e6)


def test_compute_to_communication_is_about_one_to_one(v3):
    # V3 §3.2.1: "approximately 1:1" for cross-node EP, with GEMMs in FP8
    ratios = [comm.traffic(v3, 64, r, H800, mfu=0.4, precision="fp8").ratio
              for r in comm.ROUTINGS]
    assert all(0.5 <= r <= 2 for r in ratios)


def test_bad_inputs(v3):
    with pytest.raises(ValueError, match="routing='random': must be one of"):
        comm.copies(v3, 64, "random")
    with pytest.raises(ValueError, match=r"ep=12: an EP group spanning nodes must fill them"):
        comm.copies(v3.replace(n_routed_experts=240, n_expert_groups=8), 12, "per-node")
    with pytest.raises(ValueError, match=r"ep=48: must divide n_routed_experts \(256\)"):
        comm.traffic(v3, 48)
