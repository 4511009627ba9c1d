"""Pipeline schedules simulated: 1F1B, ZB1P, DualPipe and DualPipeV on a timeline (V3 §3.2.1).

A schedule is an order of chunks per rank: F (a forward chunk of one micro-batch through one
stage), B (its backward) and W (the "backward for weights" that zero-bubble schedules split off
B and run later, so B then only computes the gradient for the input, in B - W). ``simulate``
starts each chunk as soon as its rank is free and its inputs exist: a micro-batch's forward on
stage s + 1 after stage s, its backward in reverse, W after its B, one chunk at a time per rank;
an F&B is a forward and a backward chunk of two micro-batches run mutually overlapped, their
computation hiding each other's all-to-all (V3 §3.2.1, Figure 4), in F&B (``FB``) rather than
F + B.
Communication between stages is taken as hidden (free), as DualPipe is designed to make it.

The orders:
- ``1F1B``: warm-up forwards, then one forward, one backward (Narayanan et al. 2021, PipeDream).
- ``ZB1P``: 1F1B with each B split into B and W, W deferred into the drain's bubbles (ZB-H1,
  Qi et al. 2024, "Zero Bubble Pipeline Parallelism"); the same activation memory as 1F1B.
- ``DualPipe``: PP ranks and PP stages, rank r holds stages r and PP-1-r; half the micro-batches
  enter at rank 0, half at rank PP-1 (V3 Figure 5). The per-rank order is the eight steps of the
  DualPipe repository's ``dualpipe/dualpipe.py`` (deepseek-ai/DualPipe @ 3da1bbe): nF0, nF0F1,
  nB1W1F1, nF0B1F1B0, nB1F1B0, nB1B0, nWB0, nW.
- ``DualPipeV``: the "cut-in-half" DualPipe (Sea AI Lab, credited in the DualPipe README): PP
  stages on PP/2 ranks, rank r holding stages r and PP-1-r; every micro-batch enters at rank 0,
  runs down the ranks through stages 0..PP/2-1, turns at the last rank and comes back up through
  PP/2..PP-1 (``dualpipe/dualpipev.py``: the same eight steps with the half-ranks as ranks).

``table2`` is V3 Table 2 (with the DualPipe README's DualPipeV row); B there is a full backward
chunk, W its weight part. The simulated ``bubble``, ``peak_activations`` and ``param_copies`` equal
it exactly when the times meet ``table2_conditions`` (the tests check a grid of PP, micro-batches
and times); the bubble is the idle time of the idlest rank, the activations the most chunks one
rank holds between their F and their B.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

SCHEDULES = ("1F1B", "ZB1P", "DualPipe", "DualPipeV")


@dataclass(frozen=True)
class ChunkTimes:
    """Execution times of one chunk (one micro-batch through one stage), as in V3 Table 2."""

    F: float = 1.0  # a forward chunk
    B: float = 2.0  # a full backward chunk: the gradients for the input and for the weights
    W: float = 1.0  # its "backward for weights" part; a split B alone takes B - W
    FB: float = 2.5  # "F&B": a forward and a backward chunk mutually overlapped

    def __post_init__(self) -> None:
        for name in ("F", "B", "W", "FB"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ChunkTimes.{name}={getattr(self, name)} must be > 0")
        if not self.W < self.B:
            raise ValueError(f"ChunkTimes.W={self.W} must be < B={self.B}: W is a part of the "
                             "full backward B, and what is left (the input's gradient) takes time")


@dataclass(frozen=True)
class Op:
    """One chunk of work: what a rank runs, before it is placed on the timeline."""

    kind: str  # "F", "B" or "W"
    mb: int  # micro-batch, numbered within its direction
    stage: int  # pipeline stage, 0 = the first layers
    direction: int = 0  # 0: enters at rank 0; 1: DualPipe's reverse half, enters at rank PP-1
    split: bool = False  # a B whose W is deferred to a later W op (runs B - W)


@dataclass(frozen=True)
class Event:
    """One chunk on the timeline of one rank."""

    rank: int
    kind: str  # "F", "B" or "W"
    mb: int
    stage: int
    direction: int
    start: float
    end: float
    split: bool = False  # a B whose W runs later (B - W long)
    overlapped: bool = False  # half of an F&B pair: the F and the B share start and end


@dataclass(frozen=True)
class Timeline:
    """A simulated schedule: every rank's events and what they cost."""

    schedule: str
    pp: int  # pipeline stages
    ranks: int  # devices: PP, or PP/2 for DualPipeV
    micro_batches: int  # per step, both directions together
    times: ChunkTimes
    events: tuple[Event, ...]

    def on(self, rank: int) -> list[Event]:
        """The events of ``rank`` in time order."""
        return sorted((e for e in self.events if e.rank == rank), key=lambda e: (e.start, e.kind))

    @property
    def makespan(self) -> float:
        return max(e.end for e in self.events)

    def busy(self, rank: int) -> float:
        """Time ``rank`` computes; an F&B pair counts once."""
        return sum(e.end - e.start for e in self.events
                   if e.rank == rank and not (e.overlapped and e.kind == "B"))

    @property
    def bubble(self) -> float:
        """Idle time of the idlest rank, between the start and the end of the step: what Table 2
        calls the bubble (for 1F1B and ZB1P every rank idles the same)."""
        return max(self.makespan - self.busy(r) for r in range(self.ranks))

    def activations(self, rank: int, weight: Callable[[int], float] | None = None) -> float:
        """Peak number of chunk activations ``rank`` holds at once: a micro-batch's activations on
        a stage live from its F to the end of its B (the input gradient; what a deferred W still
        reads, the layer inputs and output gradients, is not counted, as in Table 2).

        ``weight(stage)`` counts a chunk of that stage as so many bytes instead of one, for
        stages of unequal size (the peak of the weighted sum, which a rank holding two stages
        can reach at another moment than the peak of the count)."""
        marks = []
        for e in self.on(rank):
            w = 1 if weight is None else weight(e.stage)
            if e.kind == "F":
                marks.append((e.start, w))
            elif e.kind == "B":
                marks.append((e.end, -w))
        held = peak = 0
        for _, step in sorted(marks, key=lambda m: (m[0], m[1])):  # frees before allocations
            held += step
            peak = max(peak, held)
        return peak

    @property
    def peak_activations(self) -> int:
        """Table 2's "activation per device", in chunk activations (one micro-batch, one
        stage)."""
        return int(max(self.activations(r) for r in range(self.ranks)))

    @property
    def param_copies(self) -> int:
        """Table 2's "parameter per device": stages one rank holds (1x: one stage's weights)."""
        return max(len({e.stage for e in self.events if e.rank == r}) for r in range(self.ranks))


def table2(schedule: str, pp: int, t: ChunkTimes) -> dict[str, float]:
    """V3 Table 2 (DualPipeV from the DualPipe README's table) for ``pp`` stages: the bubble,
    parameters and activations per device (in one stage's weights and one chunk's activations),
    and the devices. The simulated timeline equals it when ``table2_conditions`` is empty."""
    rows = {
        "1F1B": ((pp - 1) * (t.F + t.B), 1, pp, pp),
        "ZB1P": ((pp - 1) * (t.F + t.B - 2 * t.W), 1, pp, pp),
        "DualPipe": ((pp / 2 - 1) * (t.FB + t.B - 3 * t.W), 2, pp + 1, pp),
        "DualPipeV": ((pp / 2 - 1) * (t.FB + t.B - 3 * t.W), 2, pp + 1, pp // 2),
    }
    bubble, params, acts, devices = rows[_check_schedule(schedule)]
    return {"bubble": bubble, "param_copies": params, "peak_activations": acts,
            "devices": devices}


def table2_conditions(schedule: str, t: ChunkTimes) -> list[str]:
    """The conditions under which ``table2``'s bubble is exact that ``t`` breaks (empty: none).

    Table 2 does not state them; they are what the simulation finds over a grid of times. 1F1B
    needs none. ZB1P needs each deferred W to fit the gap it fills in the drain, where a rank
    waits F or B - W for its neighbour. DualPipe and DualPipeV need the chunks of Figure 5,
    where a backward for the input is as long as a forward (B = F + W) and W is no longer than
    F, and an overlapped pair that is slower than its backward alone and faster than the two in
    a row (B <= F&B <= F + B). Outside them the simulated bubble is still the schedule's, only
    not the formula.
    """
    rules = {
        "1F1B": [],
        "ZB1P": [(t.W <= t.F, "W <= F"), (2 * t.W <= t.B, "2 W <= B")],
        "DualPipe": [(abs(t.B - t.F - t.W) < 1e-9, "B = F + W"), (t.W <= t.F, "W <= F"),
                     (t.B <= t.FB <= t.F + t.B, "B <= F&B <= F + B")],
    }
    rules["DualPipeV"] = rules["DualPipe"]
    return [rule for holds, rule in rules[_check_schedule(schedule)] if not holds]


# --------------------------------------------------------------------------- per-rank orders

def order_1f1b(rank: int, pp: int, m: int, split: bool = False) -> list[list[Op]]:
    """1F1B on ``rank``: PP-1-rank warm-up forwards, then F, B alternately, then the drain's B.

    ``split`` makes it ZB1P (ZB-H1): each B leaves its W for later, and rank r keeps r of them
    owed through the steady state, paid after its last B. The backward wave then climbs the pipe
    in B - W per stage, not B (the first one reaches rank 0 sooner, the last one too), and the
    owed W's fill the drain's waits: 2W per stage off 1F1B's bubble."""
    warm = min(pp - 1 - rank, m)
    deferred = rank if split else 0  # W's this rank still owes after its last B
    slots: list[list[Op]] = [[Op("F", i, rank)] for i in range(warm)]
    w_next = 0

    def backward(i: int) -> None:
        nonlocal w_next
        slots.append([Op("B", i, rank, split=split)])
        if split and i - w_next >= deferred:  # the W's queue stays `deferred` long
            slots.append([Op("W", w_next, rank)])
            w_next += 1

    for i in range(m - warm):
        slots.append([Op("F", warm + i, rank)])
        backward(i)
    for i in range(m - warm, m):
        backward(i)
    slots += [[Op("W", i, rank)] for i in range(w_next, m if split else 0)]
    return slots


def order_dualpipe(rank: int, ranks: int, m: int, v: bool = False) -> list[list[Op]]:
    """The eight steps of DualPipe (``v=False``: ``dualpipe.py``) or DualPipeV (``dualpipev.py``)
    on ``rank``. Phase 0 is the chunk the rank meets first: for DualPipe the direction entering
    at its own end of the pipeline, for DualPipeV the way down the V; phase 1 the other one."""
    # `turn`: the rank(s) where phase 0 ends and phase 1 begins, the repository's middle ranks
    if v:  # DualPipeV: n ranks, 2n stages; the V turns at the last rank
        n, pos, per_dir, turn = ranks, rank, m, rank == ranks - 1
        stage = (rank, 2 * ranks - 1 - rank)
        direction = (0, 0)
    else:  # DualPipe: the second half of the ranks mirrors the first
        n, pos, per_dir = ranks // 2, min(rank, ranks - 1 - rank), m // 2
        turn = pos == n - 1
        second = int(rank >= n)  # in the second half, phase 0 is the reverse direction
        direction = (second, 1 - second)
        stage = (rank, ranks - 1 - rank) if not second else (ranks - 1 - rank, rank)
    counters = {("F", 0): 0, ("F", 1): 0, ("B", 0): 0, ("B", 1): 0}
    owed: list[Op] = []  # the W's of split B's, FIFO (the repository's WeightGradStore)

    def op(kind: str, phase: int, split: bool = False) -> Op:
        i = counters[kind, phase]
        counters[kind, phase] += 1
        o = Op(kind, i, stage[phase], direction[phase], split)
        if split:
            owed.append(Op("W", i, stage[phase], direction[phase]))
        return o

    def w() -> list[Op]:
        return [owed.pop(0)]

    s: list[list[Op]] = []
    rest = n - pos - 1
    s += [[op("F", 0)] for _ in range(2 * rest)]  # 1: nF0
    for _ in range(pos + 1):  # 2: nF0F1
        s += [[op("F", 0)], [op("F", 1)]]
    for _ in range(rest):  # 3: nB1W1F1, the zero-bubble trick
        s += [[op("B", 1, split=True)], w(), [op("F", 1)]]
    for i in range(per_dir - 2 * n + pos + 1):  # 4: nF0B1F1B0, the overlapped main loop
        if i == 0 and turn:  # the repository runs these two apart to shorten the bubble
            s += [[op("F", 0)], [op("B", 1)]]
        else:
            s.append([op("F", 0), op("B", 1)])
        s.append([op("F", 1), op("B", 0)])
    for _ in range(rest):  # 5: nB1F1B0
        s += [[op("B", 1)], [op("F", 1), op("B", 0)]]
    zb = False
    for i in range(pos + 1):  # 6: nB1B0, the second half split for zero bubble
        if i == (pos + 1) // 2 and pos % 2 == 1:
            zb = True
        s.append([op("B", 1, split=zb)])
        if i == (pos + 1) // 2 and pos % 2 == 0:
            zb = True
        s.append([op("B", 0, split=zb)])
    for _ in range(rest):  # 7: nWB0
        s += [w(), [op("B", 0, split=True)]]
    for _ in range(pos + 1):  # 8: nW
        s.append(w())
    assert not owed, "every split B has its W"
    return s


# --------------------------------------------------------------------------- placement

def n_ranks(schedule: str, pp: int) -> int:
    """Devices ``schedule`` needs for ``pp`` stages: PP, or PP/2 for DualPipeV."""
    return pp // 2 if schedule == "DualPipeV" else pp


def rank_of(schedule: str, pp: int, stage: int, direction: int = 0) -> int:
    """The rank that runs ``stage`` for micro-batches of ``direction`` (1: DualPipe's reverse
    half, entering at rank PP-1)."""
    if schedule == "DualPipe":
        return pp - 1 - stage if direction else stage
    if schedule == "DualPipeV":  # down the V on ranks 0..n-1, back up from rank n-1 to 0
        return stage if stage < pp // 2 else pp - 1 - stage
    return stage


def stages_on(schedule: str, pp: int, rank: int) -> tuple[int, ...]:
    """The stages ``rank`` holds, in order: one for 1F1B and ZB1P, stages r and PP-1-r for
    DualPipe and DualPipeV."""
    if schedule in ("DualPipe", "DualPipeV"):
        return tuple(sorted({rank, pp - 1 - rank}))
    return (rank,)


# --------------------------------------------------------------------------- the simulator

def _check_schedule(schedule: str) -> str:
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule={schedule!r} must be one of {', '.join(SCHEDULES)}")
    return schedule


def _check(schedule: str, pp: int, micro_batches: int) -> None:
    _check_schedule(schedule)
    if pp < 2:
        raise ValueError(f"pp={pp} must be >= 2: one stage is no pipeline")
    if schedule in ("DualPipe", "DualPipeV") and pp % 2:
        raise ValueError(f"pp={pp} must be even for {schedule}: rank r pairs stage r with "
                         "stage PP-1-r")
    if schedule in ("1F1B", "ZB1P"):
        least, why = pp, "fewer cannot fill the pipeline"
    else:  # DualPipe's step() asserts num_chunks >= 2 x ranks: PP ranks, or PP/2 for the V
        ranks = pp if schedule == "DualPipe" else pp // 2
        least, why = 2 * ranks, "2 per rank, as the DualPipe repository asserts"
    if micro_batches < least:
        raise ValueError(f"micro_batches={micro_batches} must be >= {least} for {schedule} "
                         f"with pp={pp}: {why}")
    if schedule == "DualPipe" and micro_batches % 2:
        raise ValueError(f"micro_batches={micro_batches} must be even for DualPipe: half enter "
                         "at each end")


def orders(schedule: str, pp: int, micro_batches: int) -> list[list[list[Op]]]:
    """Per rank, the slots it runs in order; a slot of two ops is an overlapped F&B."""
    _check(schedule, pp, micro_batches)
    if schedule in ("1F1B", "ZB1P"):
        return [order_1f1b(r, pp, micro_batches, split=schedule == "ZB1P") for r in range(pp)]
    if schedule == "DualPipe":
        return [order_dualpipe(r, pp, micro_batches) for r in range(pp)]
    # DualPipeV: ``pp`` stages on pp/2 ranks, every micro-batch down the V and back
    return [order_dualpipe(r, pp // 2, micro_batches, v=True) for r in range(pp // 2)]


def _needs(o: Op, last: int) -> Iterator[tuple[str, int, int, int]]:
    """The chunks ``o`` waits for, as (kind, micro-batch, stage, direction)."""
    if o.kind == "F" and o.stage > 0:
        yield "F", o.mb, o.stage - 1, o.direction
    if o.kind == "B":
        yield "F", o.mb, o.stage, o.direction
        if o.stage < last:
            yield "B", o.mb, o.stage + 1, o.direction
    if o.kind == "W":
        yield "B", o.mb, o.stage, o.direction


def _duration(slot: list[Op], t: ChunkTimes) -> float:
    if len(slot) == 2:
        return t.FB
    o = slot[0]
    return {"F": t.F, "W": t.W}.get(o.kind, t.B - t.W if o.split else t.B)


def simulate(schedule: str, pp: int, micro_batches: int,
             times: ChunkTimes | None = None) -> Timeline:
    """Run ``schedule`` for ``pp`` stages and ``micro_batches`` per step: each rank takes its
    slots in order, each as early as its rank and its inputs allow."""
    t = times or ChunkTimes()
    slots = orders(schedule, pp, micro_batches)
    done: dict[tuple[str, int, int, int], float] = {}  # chunk -> end time
    free = [0.0] * len(slots)  # when each rank is next idle
    nxt = [0] * len(slots)
    events: list[Event] = []
    while any(nxt[r] < len(s) for r, s in enumerate(slots)):
        progressed = False
        for r, s in enumerate(slots):
            while nxt[r] < len(s):
                slot = s[nxt[r]]
                needs = [n for o in slot for n in _needs(o, pp - 1)]
                if any(n not in done for n in needs):
                    break
                start = max([free[r]] + [done[n] for n in needs])
                end = start + _duration(slot, t)
                for o in slot:
                    done[o.kind, o.mb, o.stage, o.direction] = end
                    events.append(Event(r, o.kind, o.mb, o.stage, o.direction, start, end,
                                        o.split, len(slot) == 2))
                free[r], nxt[r], progressed = end, nxt[r] + 1, True
        if not progressed:
            raise RuntimeError(f"{schedule} deadlocks: every rank waits for another")
    return Timeline(schedule, pp, len(slots), micro_batches, t, tuple(events))


__all__ = ["SCHEDULES", "ChunkTimes", "Event", "Op", "Timeline", "n_ranks", "orders", "rank_of",
           "simulate", "stages_on", "table2", "table2_conditions"]
