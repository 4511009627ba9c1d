"""The pipeline simulator: every timeline obeys the dependencies, and its bubble, activations and
parameter copies equal V3 Table 2 (DualPipeV: the DualPipe README's table) over a grid of PP and
micro-batch counts, when the chunk times meet the formulas' conditions."""

import itertools
from collections import Counter

import pytest

from minir1.plan.schedule import SCHEDULES, ChunkTimes, simulate, table2, table2_conditions

# chunk times that meet every row's conditions: B = F + W, 2W <= B, W <= F, B <= F&B <= F + B
TIMES = [ChunkTimes(F=1, B=2, W=1, FB=2.5), ChunkTimes(F=2, B=3, W=1, FB=4),
         ChunkTimes(F=1.5, B=2, W=0.5, FB=3.5), ChunkTimes(F=3, B=4, W=1, FB=4)]
PPS = (2, 4, 6, 8)


def micro_batch_counts(schedule, pp):
    """The fewest allowed, one more, and a few times as many (the bubble must not grow)."""
    least = 2 * pp if schedule == "DualPipe" else pp
    more = 2 if schedule == "DualPipe" else 1  # DualPipe's come in pairs, one from each end
    return least, least + more, 3 * least


GRID = [(s, pp, m) for s in SCHEDULES for pp in PPS for m in micro_batch_counts(s, pp)]


def rank_of(schedule, pp, stage, direction):
    """Where the paper puts a stage: rank s (1F1B, ZB1P, DualPipe's forward half), rank PP-1-s
    (DualPipe's reverse half), the V's two arms (DualPipeV)."""
    if schedule == "DualPipeV":
        return min(stage, pp - 1 - stage)
    return pp - 1 - stage if direction else stage


def assert_valid(tl):
    """Every dependency of the module docstring, checked on the events alone."""
    t, pp = tl.times, tl.pp
    end = {}
    for e in tl.events:
        key = (e.kind, e.mb, e.stage, e.direction)
        assert key not in end, f"{key} runs twice"
        end[key] = e.end
        assert e.rank == rank_of(tl.schedule, pp, e.stage, e.direction)
        alone = {"F": t.F, "W": t.W, "B": t.B - t.W if e.split else t.B}[e.kind]
        assert e.end - e.start == pytest.approx(t.FB if e.overlapped else alone)
    per_direction = (tl.micro_batches // 2 if tl.schedule == "DualPipe"
                     else tl.micro_batches)
    directions = (0, 1) if tl.schedule == "DualPipe" else (0,)
    chunks = {(mb, s, d) for mb in range(per_direction) for s in range(pp) for d in directions}
    for kind in ("F", "B"):
        assert {k[1:] for k in end if k[0] == kind} == chunks, f"every chunk has one {kind}"
    splits = {(e.mb, e.stage, e.direction) for e in tl.events if e.kind == "B" and e.split}
    assert {k[1:] for k in end if k[0] == "W"} == splits, "a W for each split B, no other"
    for e in tl.events:
        eps = 1e-9
        if e.kind == "F" and e.stage > 0:  # stage s + 1 after stage s
            assert e.start >= end["F", e.mb, e.stage - 1, e.direction] - eps
        if e.kind == "B":  # backward in reverse, after this stage's forward
            assert e.start >= end["F", e.mb, e.stage, e.direction] - eps
            if e.stage < pp - 1:
                assert e.start >= end["B", e.mb, e.stage + 1, e.direction] - eps
        if e.kind == "W":
            assert e.start >= end["B", e.mb, e.stage, e.direction] - eps
    for r in range(tl.ranks):  # one chunk at a time, except the two halves of an F&B
        events = tl.on(r)
        for a, b in itertools.pairwise(events):
            if a.overlapped and b.overlapped and (a.start, a.end) == (b.start, b.end):
                assert {a.kind, b.kind} == {"F", "B"}
                continue
            assert b.start >= a.end - 1e-9, f"rank {r}: {a} and {b} overlap"
        pairs = Counter((e.start, e.end) for e in events if e.overlapped)
        assert set(pairs.values()) <= {2}, "an F&B is exactly one F and one B"


@pytest.mark.parametrize(("schedule", "pp", "m"), GRID)
def test_timelines_obey_every_dependency(schedule, pp, m):
    for t in (TIMES[0], ChunkTimes(F=1.3, B=2.9, W=0.7, FB=3.1)):  # the second breaks formulas
        assert_valid(simulate(schedule, pp, m, t))


@pytest.mark.parametrize(("schedule", "pp", "m"), GRID)
def test_bubble_activations_and_parameters_equal_table2(schedule, pp, m):
    for t in TIMES:
        assert table2_conditions(schedule, t) == []
        tl, ref = simulate(schedule, pp, m, t), table2(schedule, pp, t)
        assert tl.bubble == pytest.approx(ref["bubble"])
        assert tl.peak_activations == ref["peak_activations"]
        assert tl.param_copies == ref["param_copies"]
        assert tl.ranks == ref["devices"]


def test_table2_rows_by_hand():
    t = ChunkTimes(F=1, B=2, W=1, FB=2.5)
    # PP = 8: 7 x 3, 7 x 1, 3 x (2.5 + 2 - 3) = 4.5; DualPipeV runs the 8 stages on 4 ranks
    assert [table2(s, 8, t)["bubble"] for s in SCHEDULES] == [21, 7, 4.5, 4.5]
    assert [table2(s, 8, t)["peak_activations"] for s in SCHEDULES] == [8, 8, 9, 9]
    assert [table2(s, 8, t)["devices"] for s in SCHEDULES] == [8, 8, 8, 4]
    # 1F1B idles the same everywhere: the step is m (F + B) plus the bubble
    tl = simulate("1F1B", 4, 8, t)
    assert tl.makespan == 8 * 3 + 3 * 3
    assert {tl.makespan - tl.busy(r) for r in range(4)} == {9}


def test_bubble_and_memory_do_not_grow_with_micro_batches():
    t = TIMES[0]
    for schedule in SCHEDULES:
        runs = [simulate(schedule, 8, m, t) for m in (16, 32, 48)]
        assert len({(r.bubble, r.peak_activations) for r in runs}) == 1


def test_outside_the_conditions_the_formula_is_not_the_schedule():
    # a backward for the input slower than a forward (B > F + W): DualPipe's bubble is not
    # (PP/2 - 1)(F&B + B - 3W); a W longer than F: ZB1P's deferred W's stall the drain
    t = ChunkTimes(F=1, B=1, W=0.25, FB=1.5)
    assert table2_conditions("DualPipe", t) == ["B = F + W"]
    formula = table2("DualPipe", 8, t)["bubble"]
    assert simulate("DualPipe", 8, 16, t).bubble != pytest.approx(formula)
    t = ChunkTimes(F=1, B=4, W=1.5, FB=4)
    assert table2_conditions("ZB1P", t) == ["W <= F"]
    assert simulate("ZB1P", 4, 8, t).bubble > table2("ZB1P", 4, t)["bubble"]
    assert table2_conditions("1F1B", t) == []
    assert simulate("1F1B", 4, 8, t).bubble == table2("1F1B", 4, t)["bubble"]


def test_dualpipe_places_two_stages_per_rank_and_feeds_both_ends():
    tl = simulate("DualPipe", 4, 8, TIMES[0])
    assert {(e.stage, e.direction) for e in tl.events if e.rank == 1} == {(1, 0), (2, 1)}
    first = [e for e in tl.events if e.kind == "F" and e.stage == 0]
    assert {(e.rank, e.direction) for e in first} == {(0, 0), (3, 1)}  # one half at each end
    v = simulate("DualPipeV", 8, 10, TIMES[0])
    assert v.ranks == 4 and {e.stage for e in v.events if e.rank == 3} == {3, 4}  # the turn
    assert {e.rank for e in v.events if e.kind == "F" and e.stage == 0} == {0}


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"schedule": "DualPipe", "pp": 5, "micro_batches": 10}, "pp=5 must be even"),
    ({"schedule": "DualPipeV", "pp": 3, "micro_batches": 10}, "pp=3 must be even"),
    ({"schedule": "1F1B", "pp": 1, "micro_batches": 4}, "pp=1 must be >= 2"),
    ({"schedule": "1F1B", "pp": 4, "micro_batches": 3}, "micro_batches=3 must be >= 4"),
    ({"schedule": "ZB1P", "pp": 4, "micro_batches": 2}, "micro_batches=2 must be >= 4"),
    ({"schedule": "DualPipe", "pp": 4, "micro_batches": 6}, "micro_batches=6 must be >= 8"),
    ({"schedule": "DualPipeV", "pp": 8, "micro_batches": 6}, "micro_batches=6 must be >= 8"),
    ({"schedule": "DualPipe", "pp": 4, "micro_batches": 9}, "micro_batches=9 must be even"),
    ({"schedule": "GPipe", "pp": 4, "micro_batches": 8}, "schedule='GPipe' must be one of"),
])
def test_bad_layouts_name_the_field_and_the_rule(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate(**kwargs)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"F": 0}, r"ChunkTimes.F=0 must be > 0"),
    ({"B": -1}, r"ChunkTimes.B=-1 must be > 0"),
    ({"W": 0}, r"ChunkTimes.W=0 must be > 0"),
    ({"FB": 0}, r"ChunkTimes.FB=0 must be > 0"),
    ({"B": 2, "W": 2}, r"ChunkTimes.W=2 must be < B=2"),
])
def test_bad_times_name_the_field_and_the_rule(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ChunkTimes(**kwargs)


@pytest.mark.parametrize("schedule", ["1F1B", "DualPipe", "DualPipeV"])
def test_weighted_activations_bound_by_the_count(schedule):
    t = simulate(schedule, 4, 8)
    for rank in range(t.ranks):
        n = t.activations(rank)
        assert t.activations(rank, weight=lambda s: 3.0) == 3.0 * n
        sizes = {0: 1.0, 1: 2.0, 2: 4.0, 3: 8.0}
        held = {e.stage for e in t.on(rank)}
        weighted = t.activations(rank, weight=sizes.__getitem__)
        assert min(sizes[s] for s in held) * n <= weighted <= max(sizes[s] for s in held) * n
