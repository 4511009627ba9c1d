import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from minir1.model import max_violation
from minir1.viz.moe import relative_load, render_expert_load


def fake_loads(steps=5, layers=3, experts=8, collapse=False):
    g = torch.Generator().manual_seed(0)
    loads = torch.randint(90, 110, (steps, layers, experts), generator=g).float()
    if collapse:
        loads[:, :, 0] += 1000.0
    return loads


def test_relative_load_is_one_when_balanced_and_matches_max_violation():
    balanced = np.full((2, 3, 8), 7.0)
    np.testing.assert_allclose(relative_load(balanced, step=1), np.ones((3, 8)))
    loads = fake_loads(collapse=True)
    rel = relative_load(loads.numpy(), step=4)
    np.testing.assert_allclose(rel.max(-1) - 1, max_violation(loads[4]).numpy(), rtol=1e-6)
    # a window sums the counts of the last `window` steps
    np.testing.assert_allclose(relative_load(loads.numpy(), step=4, window=3),
                               relative_load(loads[2:5].sum(0, keepdim=True).numpy(), step=0))


def test_render_one_panel_per_run_with_maxvio_labels():
    loads = {"no balancing": fake_loads(collapse=True), "aux-free": fake_loads()}
    fig = render_expert_load(loads, step=2, window=2)
    assert isinstance(fig, Figure)
    heatmaps = [ax for ax in fig.axes if ax.images]
    assert len(heatmaps) == 2
    assert heatmaps[0].images[0].get_array().shape == (3, 8)
    assert "no balancing" in heatmaps[0].get_title() and "aux-free" in heatmaps[1].get_title()
    # the collapsed run is labelled with a much larger MaxVio than the balanced one
    vio = [float(ax.get_title().rsplit("=", 1)[1]) for ax in heatmaps]
    assert vio[0] > 3 and vio[1] < 0.3
    assert "steps 1-2" in fig._suptitle.get_text()
    fig.canvas.draw()  # renders headless without error


def test_render_accepts_a_single_array_subset_and_negative_step():
    fig = render_expert_load(fake_loads().numpy(), step=-1)
    assert len([ax for ax in fig.axes if ax.images]) == 1
    loads = {"a": fake_loads(), "b": fake_loads(), "c": fake_loads()}
    fig = render_expert_load(loads, step=0, runs=["c", "a"], vmax=3.0)
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert titles[0].startswith("c") and titles[1].startswith("a")
    assert fig.axes[0].images[0].norm.vmax == 3.0


def test_render_rejects_bad_input():
    loads = {"a": fake_loads(steps=4)}
    with pytest.raises(ValueError, match="step"):
        render_expert_load(loads, step=4)
    with pytest.raises(ValueError, match="runs"):
        render_expert_load(loads, step=0, runs=["missing"])
    with pytest.raises(ValueError, match="shape"):
        render_expert_load({"a": np.zeros(5)}, step=0)
    with pytest.raises(ValueError, match="window"):
        render_expert_load(loads, step=0, window=0)
