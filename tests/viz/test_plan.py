"""The real-run lesson's figures render headless and draw the planner's own numbers."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_hex

from minir1 import ModelConfig
from minir1.plan import (
    DISTILL,
    NAIVE_LAYOUTS,
    V3_LAYOUT,
    Layout,
    fit_table,
    served,
    table1,
    traffic,
    training_memory,
)
from minir1.plan.comm import ROUTINGS
from minir1.plan.hardware import GIB, GPUS, H800
from minir1.viz.plan import (
    COMPONENTS,
    FIT_COLORS,
    RECIPES,
    memory_bytes,
    render_bill,
    render_budget,
    render_fit,
    render_layout,
    render_memory,
)

V3 = ModelConfig.preset("v3")
LAYOUTS = {"V3": V3_LAYOUT, "1F1B": Layout(dualpipe=False), "no EP": Layout(ep=1)}


def stacks(ax):
    """Bar heights per component (the legend order), one list per component."""
    n = len(ax.get_xticks())
    rects = ax.patches
    return [[r.get_height() for r in rects[k * n:(k + 1) * n]] for k in range(len(COMPONENTS))]


def test_v3_recipe_is_the_library_memory_and_the_others_reprice_it():
    got = training_memory(V3, V3_LAYOUT).bytes
    assert list(memory_bytes(V3, V3_LAYOUT).values()) == list(got.values())
    fp32 = memory_bytes(V3, V3_LAYOUT, "fp32")
    params = training_memory(V3, V3_LAYOUT).params
    assert fp32["weights"] == pytest.approx(4 * params)
    assert fp32["master weights"] == 0  # the FP32 weights are the master copy
    # FP32 moments double V3's BF16 ones; activations are V3's cache in every recipe
    bf16 = memory_bytes(V3, V3_LAYOUT, "bf16")
    assert bf16["AdamW moments"] == 2 * got["AdamW moments (2 x BF16)"]
    assert bf16["activations"] == got["activations"]
    with pytest.raises(ValueError, match=r"recipe='int8': must be one of"):
        memory_bytes(V3, V3_LAYOUT, "int8")


def test_memory_bars_are_training_memory_in_gib():
    fig = render_memory(V3, LAYOUTS)
    ax = fig.axes[0]
    heights = stacks(ax)
    for j, layout in enumerate(LAYOUTS.values()):
        want = [v / GIB for v in training_memory(V3, layout).bytes.values()]
        assert [h[j] for h in heights] == pytest.approx(want)
    # each component sits on the ones below it
    assert ax.patches[len(LAYOUTS)].get_y() == pytest.approx(heights[0][0])
    texts = [t.get_text() for t in ax.texts]
    total = training_memory(V3, V3_LAYOUT).total / GIB
    assert f"{total:,.1f} GiB\nfits" in texts
    # no EP: 560 GiB, cut at twice the H800's 80 GiB and labelled with its total
    assert ax.get_ylim()[1] == 2 * H800.memory_gib
    no_ep = training_memory(V3, Layout(ep=1)).total / GIB
    assert f"{no_ep:,.1f} GiB\ndoes not fit" in texts
    assert [line.get_ydata()[0] for line in ax.lines] == [80, 79]  # memory, usable
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "H800 memory, 80 GiB", "less the reserve, 79 GiB", *COMPONENTS]
    assert RECIPES["v3"].label in ax.get_title()
    plt.close(fig)


def test_memory_refuses_or_shows_a_broken_layout():
    bad = {"V3": V3_LAYOUT, "odd PP": Layout(pp=15)}
    with pytest.raises(ValueError, match=r"Layout.n_gpus=2048: must be divisible by pp"):
        render_memory(V3, bad)
    fig = render_memory(V3, bad, invalid="show")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any(t.startswith("not a valid layout:\nLayout.n_gpus=2048") for t in texts)
    assert stacks(fig.axes[0])[0][1] == 0  # an empty slot
    plt.close(fig)
    with pytest.raises(ValueError, match="at least one"):
        render_memory(V3, {})
    with pytest.raises(ValueError, match=r"invalid='ignore'"):
        render_memory(V3, LAYOUTS, invalid="ignore")
    with pytest.raises(ValueError, match=r"recipe='fp4'"):
        render_memory(V3, LAYOUTS, recipe="fp4")


def test_layout_widget_sets_yours_beside_v3s():
    fig = render_layout(n_gpus=1024, pp=16, ep=32, recipe="bf16", schedule="1F1B")
    ax = fig.axes[0]
    names = [t.get_text().replace("\n", " ") for t in ax.get_xticklabels()]
    assert names == ["V3: 2,048 GPUs, PP16 x EP64, DualPipe",
                     "yours: 1,024 GPUs, PP16 x EP32, 1F1B"]
    mine = memory_bytes(V3, Layout(n_gpus=1024, ep=32, dualpipe=False), "bf16")
    assert [h[1] for h in stacks(ax)] == pytest.approx([v / GIB for v in mine.values()])
    assert RECIPES["bf16"].label in ax.get_title()
    plt.close(fig)
    # a layout that breaks a rule is drawn with the rule, not raised, so the widget keeps working
    fig = render_layout(n_gpus=512, pp=16, ep=64)
    assert any("Layout.ep=64: must divide the 32 GPUs" in t.get_text().replace("\n", " ")
               for t in fig.axes[0].texts)
    plt.close(fig)
    with pytest.raises(ValueError, match=r"schedule='ZB2P'"):
        render_layout(schedule="ZB2P")


MODELS = [served(V3, "v3"), *[served(d) for d in DISTILL[:3]]]


def test_fit_cells_are_fit_table_contexts_coloured_by_the_context_asked():
    fig = render_fit(MODELS, precision="fp8", context=32768)
    ax = fig.axes[0]
    rows = fit_table(MODELS, GPUS, ("fp8",))
    want = [[r["max_context"][k] for k in GPUS] for r in rows]
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["-" if c == 0 else f"{c // 1024}K" for row in want for c in row]
    assert "77K" in texts  # V3 in FP8 on one 8x H800 node
    colors = ax.images[0].get_cmap().colors
    code = ax.images[0].get_array()
    for i, row in enumerate(want):
        for j, c in enumerate(row):
            shade = 0 if c == 0 else 2 if c >= 32768 else 1
            assert code[i, j] == shade
    assert [to_hex(c) for c in colors] == list(FIT_COLORS)
    assert [t.get_text() for t in ax.get_xticklabels()] == [g.name for g in GPUS.values()]
    assert ax.get_yticklabels()[0].get_text() == f"v3 ({rows[0]['weight_bytes'] / GIB:,.1f} GiB)"
    plt.close(fig)


def test_fit_reserve_and_bad_inputs():
    small = {"rtx3080": GPUS["rtx3080"]}
    tight = render_fit(MODELS[1:], "q4", 131072, small, reserve_gib=0.0)
    loose = render_fit(MODELS[1:], "q4", 131072, small, reserve_gib=4.0)
    ctx = [[t.get_text() for t in f.axes[0].texts] for f in (tight, loose)]
    assert ctx[0] != ctx[1]  # a bigger reserve leaves less room for the cache
    plt.close(tight)
    plt.close(loose)
    for kwargs, match in [({"precision": "int4"}, "precision='int4'"),
                          ({"context": 100}, "context=100"),
                          ({"context": True}, "context=True"),
                          ({"reserve_gib": 10.0}, "reserve_gib=10.0")]:
        with pytest.raises(ValueError, match=match):
            render_fit(MODELS, **kwargs)
    with pytest.raises(ValueError, match="at least one"):
        render_fit([])


def test_budget_bars_are_the_traffic_times():
    runs = [traffic(V3, 64, r) for r in ROUTINGS]
    fig = render_budget(runs)
    ax = fig.axes[0]
    n = len(runs)
    heights = np.array([p.get_height() for p in ax.patches]).reshape(3, n)
    assert list(heights[0]) == pytest.approx([t.dispatch_us for t in runs])
    assert list(heights[1]) == pytest.approx([t.combine_us for t in runs])
    assert list(heights[2]) == pytest.approx([t.compute_us for t in runs])
    assert [p.get_y() for p in ax.patches[n:2 * n]] == pytest.approx(list(heights[0]))
    assert [t.get_text() for t in ax.texts] == [f"compute:comm {t.ratio:.2f}" for t in runs]
    assert ax.get_xticklabels()[2].get_text() == "node-limited\n3.50 IB copies"
    plt.close(fig)
    with pytest.raises(ValueError, match="at least one"):
        render_budget([])


def test_bill_bars_are_table1_hours():
    rows = table1(V3)
    fig = render_bill(rows)
    ax = fig.axes[0]
    assert [p.get_width() for p in ax.patches] == [2664, 119, 5]  # thousands of GPU-hours
    assert ax.get_title() == "V3 Table 1: 2,788K H800 GPU-hours = $5.576M"
    texts = [t.get_text() for t in ax.texts]
    assert texts[0] == " 2,664K h = $5.328M, MFU 40.7% of BF16"
    assert texts[2] == " 5K h = $0.010M"  # post-training: no published tokens, no MFU
    plt.close(fig)
    with pytest.raises(ValueError, match="at least one"):
        render_bill([r for r in rows if r["stage"] == "total"])


def test_the_naive_layouts_render():
    fig = render_memory(V3, NAIVE_LAYOUTS)
    assert len(fig.axes[0].get_xticks()) == len(NAIVE_LAYOUTS)
    plt.close(fig)
