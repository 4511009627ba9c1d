"""The scaling lesson's figures render headless from hand-made rows and say what the rows say."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.patches import Rectangle

from minir1.dist.mesh import ParallelLayout
from minir1.viz.scaling import (
    IB_GBPS,
    NVLINK_GBPS,
    link_seconds,
    render_link_cost,
    render_mesh,
    render_placement,
    render_traffic,
)

MATRIX = [[4, 2, 1, 1], [2, 4, 0, 2], [1, 1, 5, 1], [0, 0, 2, 6]]


def row(name, global_shape, local_shape, kind="fsdp shard"):
    return {"name": name, "global_shape": global_shape, "local_shape": local_shape,
            "numel": int(np.prod(local_shape)) if local_shape else 1, "kind": kind}


def placement(world=2, ep=2, experts=4):
    """``world`` ranks: a (2 * world, 3) weight and a (world,) norm, each sliced evenly along
    dim 0, and one MoE whose ``experts`` 1x3 experts are split over EP groups of ``ep`` ranks."""
    ranks = []
    for r in range(world):
        rows = [row("embed.weight", [2 * world, 3], [2, 3]), row("norm.weight", [world], [1])]
        share = experts // ep
        for e in range((r % ep) * share, (r % ep + 1) * share):
            rows.append(row(f"layers.1.ffn.experts.{e}.w1.weight", [1, 3], [1, 3],
                            "expert (this rank's)"))
        ranks.append(rows)
    return ranks


def test_mesh_one_box_per_rank_with_its_experts_rows_and_nodes():
    fig = render_mesh(ParallelLayout(8, 4), n_experts=16, batch=16, ranks_per_node=2)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    for rank in range(8):
        assert f"rank {rank}" in texts
    # rank 5 is position 1 of EP group 1: experts 4-7 (as rank 1), rows 10-11 of the batch
    assert "experts 4-7\nbatch rows 10-11" in texts
    assert sum(t.startswith("EP group") for t in texts) == 2
    dashed = [p for p in ax.patches if p.get_linestyle() == "--"]
    assert len(dashed) == 4  # 2 nodes in each of the 2 EP groups
    assert "nodes of 2" in fig._suptitle.get_text()
    plt.close(fig)
    fig = render_mesh(ParallelLayout(2, 1, "fsdp"), n_experts=16)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "a shard of every expert" in texts and any(t.startswith("FSDP2:") for t in texts)
    plt.close(fig)
    fig = render_mesh(ParallelLayout(2, 1), n_experts=16)  # ZeRO-1: whole on every rank
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "every expert" in texts and any(t.startswith("ZeRO-1:") for t in texts)
    plt.close(fig)
    with pytest.raises(ValueError, match="must divide n_experts"):
        render_mesh(ParallelLayout(4, 4), n_experts=6)
    with pytest.raises(ValueError, match="divisible by world"):
        render_mesh(ParallelLayout(4, 2), n_experts=16, batch=6)


def test_traffic_heatmap_draws_the_counts_and_the_node_boundaries():
    fig = render_traffic(MATRIX, ranks_per_node=2)
    ax = fig.axes[0]
    assert np.array_equal(ax.images[0].get_array(), np.array(MATRIX, dtype=float))
    assert [t.get_text() for t in ax.texts] == [f"{v:g}" for r in MATRIX for v in r]
    # one horizontal and one vertical line between the two nodes
    assert sorted(line.get_xydata()[0].tolist()[1] for line in ax.lines
                  if line.get_xydata()[0][1] == line.get_xydata()[1][1]) == [1.5]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    # rank 0 sends 8 rows, 2 of them to node 1 (ranks 2, 3): 25% across
    assert labels[0] == "rank 0\n8 sent, 25% across" and labels[3].endswith("0% across")
    plt.close(fig)


def test_traffic_heatmap_without_nodes_and_bad_input():
    fig = render_traffic([[3, 0], [0, 0]])  # every rank its own node; a rank that sends nothing
    assert fig.axes[0].get_yticklabels()[1].get_text().endswith("0 sent, 0% across")
    plt.close(fig)
    with pytest.raises(ValueError, match="square"):
        render_traffic([[1, 2, 3]])
    with pytest.raises(ValueError, match="ranks_per_node"):
        render_traffic(MATRIX, ranks_per_node=0)


def test_placement_shows_experts_shards_and_totals():
    fig = render_placement(placement(world=4, ep=2))
    experts, shards, totals = fig.axes[:3]
    grid = experts.images[0].get_array()
    # EP groups {0, 1} and {2, 3}: rank r holds experts of position r % 2, replicated at r + 2
    assert grid.tolist() == [[1, 1, 0, 0], [0, 0, 1, 1], [1, 1, 0, 0], [0, 0, 1, 1]]
    assert [t.get_text() for t in experts.get_yticklabels()][1] == "rank 1\nexperts 2-3"
    slices = [p for p in shards.patches if isinstance(p, Rectangle)]
    assert [(p.get_y(), p.get_height()) for p in slices] == [(0, 2), (2, 2), (4, 2), (6, 2)]
    assert "embed.weight (8, 3)" in shards.get_title()
    assert [t.get_text() for t in shards.texts][1] == "rank 1\nrows 2-3"
    # each rank: a 2x3 embed slice and a norm element (fsdp), two 1x3 experts; one process:
    # 24 + 4 + 4 * 3 = 40 elements
    bars = [p for p in totals.patches if isinstance(p, Rectangle)]
    assert [p.get_width() for p in bars[:4]] == [7] * 4
    assert [p.get_width() for p in bars[4:8]] == [6] * 4
    assert totals.get_legend().get_texts()[0].get_text() == "one process: 40"
    assert [t.get_text() for t in totals.texts] == [" 32%"] * 4  # 13 of 40
    plt.close(fig)


def test_placement_without_expert_parallelism():
    ranks = [[row("embed.weight", [6, 3], [3, 3])], [row("embed.weight", [6, 3], [3, 3])]]
    fig = render_placement(ranks, example="embed.weight")
    assert "no expert parallelism" in fig.axes[0].texts[0].get_text()
    plt.close(fig)
    with pytest.raises(ValueError, match="empty"):
        render_placement([])


def test_link_seconds_at_the_h800_bandwidths():
    assert (NVLINK_GBPS, IB_GBPS) == (160.0, 50.0)
    nv, ib = link_seconds(160e9, 50e9)
    assert nv == pytest.approx(1.0) and ib == pytest.approx(1.0)
    # the same bytes cost 3.2x as long across nodes
    assert link_seconds(0, 1e6)[1] / link_seconds(1e6, 0)[0] == pytest.approx(3.2)
    with pytest.raises(ValueError, match="positive"):
        link_seconds(1, 1, ib_gbps=0)


def test_link_cost_bars_stack_nvlink_then_ib():
    fig = render_link_cost({"inside": (3.2e6, 0.0), "across": (0.0, 1e6)})
    ax = fig.axes[0]
    nv, ib = ax.containers
    assert [b.get_width() for b in nv] == pytest.approx([20.0, 0.0])  # µs
    assert [b.get_width() for b in ib] == pytest.approx([0.0, 20.0])
    assert [b.get_x() for b in ib] == pytest.approx([20.0, 0.0])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["inside", "across"]
    plt.close(fig)
    with pytest.raises(ValueError, match="empty"):
        render_link_cost({})
