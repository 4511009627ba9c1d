"""``python -m minir1.dist.inspect`` under torchrun (4 processes, EP 2, 2 expert groups, a token
limited to 1): its report agrees with itself and with the layout, checked against counts any
routing must satisfy (rows sent = tokens x top-k, the diagonal is what stayed local, shards add up
to the parameter), and the pure helpers on hand-made inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from minir1.dist.inspect import (
    EXPERT,
    FSDP_SHARD,
    ZERO_OWNED,
    ZERO_WHOLE,
    node_of,
    node_traffic,
    nodes_reached,
)

pytestmark = pytest.mark.xdist_group("inspect")
ROOT = Path(__file__).resolve().parents[2]
WORLD, EP, GROUPS, LIMIT = 4, 2, 2, 1


def inspect(out: Path, world: int, *args: str) -> dict:
    # CPU processes over gloo even where a GPU is visible (4 ranks, one GPU at most)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
           "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone",
         f"--nproc_per_node={world}", "-m", "minir1.dist.inspect", *args, "--out", str(out)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    return inspect(tmp_path_factory.mktemp("inspect") / "inspect.json", WORLD, "--ep", str(EP),
                   "--groups", str(GROUPS), "--limit", str(LIMIT), "--dp", "fsdp")


def test_the_layout_is_reported(report):
    assert (report["world"], report["ep"], report["edp"]) == (WORLD, EP, WORLD // EP)
    assert report["dp"] == "fsdp"
    assert (report["groups"], report["limit"]) == (GROUPS, LIMIT)
    assert report["ranks_per_node"] == 1  # 2 groups over EP 2: each rank holds one group
    assert np.isfinite(report["loss"])
    # two MoE blocks (layers 1, 2; layer 0 is dense) and the MTP module's
    assert [m["name"] for m in report["moe"]] == ["layers.1.ffn", "layers.2.ffn",
                                                  "mtp.0.block.ffn"]


def test_rows_sent_are_the_tokens_times_top_k_and_the_diagonal_is_local(report):
    k, per = report["top_k"], report["batch"] // WORLD
    for moe in report["moe"]:
        m = np.array(moe["matrix"])
        assert m.shape == (WORLD, WORLD)
        tokens = np.array(moe["tokens_per_rank"])
        # every rank routed its rows of the batch (the MTP block sees one position fewer)
        seq = report["seq_len"] - (1 if moe["name"].startswith("mtp") else 0)
        assert tokens.tolist() == [per * seq] * WORLD
        assert m.sum(1).tolist() == (tokens * k).tolist()
        assert np.diag(m).tolist() == moe["local_per_rank"]
        # tokens never leave their EP group ({0, 1} and {2, 3})
        for src in range(WORLD):
            for dst in range(WORLD):
                if src // EP != dst // EP:
                    assert m[src, dst] == 0
        # what is not local is within a node or across, by the report's own node rule
        for src in range(WORLD):
            off = [m[src, d] for d in range(WORLD) if d != src]
            across = sum(m[src, d] for d in range(WORLD) if node_of(d, report) != node_of(src,
                                                                                      report))
            assert moe["node_per_rank"][src] + moe["cross_per_rank"][src] == sum(off)
            assert moe["cross_per_rank"][src] == across
        assert moe["cross_bytes"] == moe["cross"] * moe["row_bytes"] == moe["cross"] * 128 * 4


def test_node_limited_routing_sends_each_token_to_one_node(report):
    """Limit 1 of 2 groups, one group per rank: a token's 4 copies all go to one rank, so the
    copies that cross are 4 per token that left its node."""
    for moe in report["moe"]:
        for r, hist in enumerate(moe["nodes_per_token"]):
            assert hist == [moe["tokens_per_rank"][r], 0]
        assert moe["cross_per_rank"] == [report["top_k"] * s for s in moe["node_sends_per_rank"]]
        assert moe["forwards"] == 0  # a node is one rank: nothing to forward inside it


def test_shards_add_up_to_the_parameters(report):
    params, placement = report["params"], report["placement"]
    n_exp, ep = report["n_routed_experts"], report["ep"]
    for rank, rows in enumerate(placement):
        assert sorted(r["name"] for r in rows) == sorted(
            n for n in params if ".experts." not in n or _holds(rank, n, n_exp, ep))
    for name, shape in params.items():
        held = [r for rows in placement for r in rows if r["name"] == name]
        numel = int(np.prod(shape))
        if ".experts." in name:  # whole, on one rank of each EP group (edp replicas)
            assert len(held) == report["edp"]
            assert all(r["kind"] == EXPERT and r["local_shape"] == shape for r in held)
        else:  # FSDP2: a dim-0 slice on every rank, the slices add up to the parameter
            assert len(held) == WORLD and all(r["kind"] == FSDP_SHARD for r in held)
            assert sum(r["numel"] for r in held) == numel
            assert sum(r["local_shape"][0] for r in held) == shape[0]
            assert all(r["local_shape"][1:] == shape[1:] for r in held)
    for moe in report["moe"]:
        assert moe["experts"] == [list(range(n_exp // ep * (r % ep), n_exp // ep * (r % ep + 1)))
                                  for r in range(WORLD)]


def _holds(rank: int, name: str, n_exp: int, ep: int) -> bool:
    e = int(name.split(".experts.")[1].split(".")[0])
    return e // (n_exp // ep) == rank % ep


def test_node_traffic_sums_the_matrix_by_node(report):
    nodes = node_traffic(report)
    assert len(nodes) == WORLD  # one rank per node here
    total = sum(np.array(m["matrix"]).sum() * m["row_bytes"] for m in report["moe"])
    assert sum(n["local"] + n["nvlink"] + n["ib_out"] for n in nodes) == total
    assert sum(n["ib_out"] for n in nodes) == sum(n["ib_in"] for n in nodes)
    assert sum(n["ib_out"] for n in nodes) == sum(m["cross_bytes"] for m in report["moe"])
    one = node_traffic(report, layers=["layers.1.ffn"])
    assert sum(n["ib_out"] for n in one) == report["moe"][0]["cross_bytes"]


# ------------------------------------------------------------------------ pure, no launch

def test_node_traffic_on_a_hand_made_report():
    """2 nodes of 2 ranks; rank 0 sends 1 row to itself, 2 to rank 1, 3 to rank 2, 4 to rank 3."""
    report = {"world": 4, "ranks_per_node": 2,
              "moe": [{"name": "a", "row_bytes": 10,
                       "matrix": [[1, 2, 3, 4], [0] * 4, [0] * 4, [0, 0, 5, 0]]}]}
    assert node_traffic(report) == [
        {"node": 0, "local": 10, "nvlink": 20, "ib_out": 70, "ib_in": 0},
        {"node": 1, "local": 0, "nvlink": 50, "ib_out": 0, "ib_in": 70}]


def test_nodes_reached_counts_nodes_sends_and_forwards():
    """8 experts over EP 4 (2 per rank), nodes of 2 ranks: experts 0-3 on node 0 (ranks 0, 1),
    4-7 on node 1 (ranks 2, 3). V3's dispatch from rank 1 (node 0, in-node index 1) lands on
    ranks 1 and 3 and forwards over NVLink to the other ranks its experts are on."""
    indices = torch.tensor([[0, 1, 2, 3],    # ranks 0, 1: node 0 only; forward to rank 0
                            [0, 4, 5, 6],    # ranks 0, 2, 3: both nodes; forward to 0 and 2
                            [4, 5, 6, 7]])   # ranks 2, 3: node 1 only; forward to rank 2
    seen = nodes_reached(indices, n_experts=8, ep=4, rank=1, ranks_per_node=2)
    assert seen == {"tokens": 3, "nodes_per_token": [2, 1], "node_sends": 2, "forwards": 4}
    seen = nodes_reached(indices, n_experts=8, ep=4, rank=3, ranks_per_node=2)
    assert (seen["node_sends"], seen["forwards"]) == (2, 4)  # tokens 0 and 1 reach node 0
    # two experts on one rank are one send: experts 2, 3 on rank 1 (forwarded inside node 0),
    # 4, 5 on rank 2 (where the send to node 1 lands); each rank its own node: no forwards
    seen = nodes_reached(torch.tensor([[2, 3, 4, 5]]), 8, 4, rank=0, ranks_per_node=2)
    assert (seen["node_sends"], seen["forwards"]) == (1, 1)
    seen = nodes_reached(indices, 8, 4, rank=0, ranks_per_node=1)
    assert seen["nodes_per_token"] == [0, 2, 1, 0] and seen["forwards"] == 0
    assert seen["node_sends"] == 1 + 2 + 2


def test_zero1_keeps_whole_weights_and_divides_the_state(tmp_path):
    """ZeRO-1 on 2 ranks: every parameter whole on both, its AdamW state on exactly one, the
    two ranks' shares of the elements within the largest parameter of each other."""
    got = inspect(tmp_path / "zero.json", 2, "--ep", "1", "--groups", "1", "--dp", "zero1")
    assert got["dp"] == "zero1"
    owned = [0, 0]
    for name, shape in got["params"].items():
        held = [(rank, r) for rank, rows in enumerate(got["placement"])
                for r in rows if r["name"] == name]
        assert len(held) == 2 and all(r["local_shape"] == shape for _, r in held)
        owners = [rank for rank, r in held if r["kind"] == ZERO_OWNED]
        assert len(owners) == 1 and all(r["kind"] in (ZERO_OWNED, ZERO_WHOLE) for _, r in held)
        owned[owners[0]] += int(np.prod(shape))
    largest = max(int(np.prod(s)) for s in got["params"].values())
    assert abs(owned[0] - owned[1]) <= largest
