"""The shared box-and-arrow helpers put what they are given where they are told."""

import pytest
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from minir1.viz.diagrams import draw_arrow, draw_box


def _axes():
    ax = Figure().add_subplot()
    ax.set(xlim=(0, 4), ylim=(0, 2))
    return ax


def test_box_is_centred_with_its_title_and_note():
    ax = _axes()
    box = draw_box(ax, (2, 1), (0.8, 0.5), "title", "a note", title_dy=0.1, note_dy=-0.15,
                   facecolor="#d6e6f5", zorder=3)
    assert isinstance(box, FancyBboxPatch) and list(ax.patches) == [box]
    assert (box.get_x(), box.get_y(), box.get_width(), box.get_height()) == pytest.approx(
        (1.6, 0.75, 0.8, 0.5))
    title, note = ax.texts
    assert title.get_text() == "title" and title.get_position() == pytest.approx((2, 1.1))
    assert note.get_text() == "a note" and note.get_position() == pytest.approx((2, 0.85))
    assert title.get_weight() == "bold" and note.get_fontsize() == 8
    assert box.get_zorder() == 3 and title.get_zorder() == note.get_zorder() == 4  # on the box


def test_box_without_text_is_an_outline_and_rounding_is_passed_on():
    ax = _axes()
    box = draw_box(ax, (1, 1), (1, 1), facecolor="none", rounding=0.1)
    assert len(ax.texts) == 0 and box.get_facecolor()[3] == 0
    assert box.get_boxstyle().rounding_size == 0.1


def test_arrow_runs_between_its_points_with_its_label():
    ax = _axes()
    arrow = draw_arrow(ax, (0.5, 1), (2.5, 1), linestyle="--", color="#c0392b", rad=0.2,
                       label="restart", label_dy=-0.3)
    assert isinstance(arrow, FancyArrowPatch) and list(ax.patches) == [arrow]
    assert arrow.get_linestyle() == "--" and arrow.get_connectionstyle().rad == 0.2
    (label,) = ax.texts
    assert label.get_text() == "restart" and label.get_position() == pytest.approx((1.5, 0.7))
    assert label.get_color() == "#c0392b"
    assert draw_arrow(ax, (0, 0), (1, 1)).get_connectionstyle().rad == 0.0 and len(ax.texts) == 1


@pytest.mark.parametrize("size", [(0, 1), (1, -0.5)])
def test_box_of_no_size_is_refused(size):
    with pytest.raises(ValueError, match="width and height"):
        draw_box(_axes(), (1, 1), size, "x")
