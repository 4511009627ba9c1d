"""minir1.viz.interactive: one figure, static where widgets are not live, inside the widget where
they are (no static copy frozen above the controls)."""

import IPython.display
import ipywidgets
from matplotlib.figure import Figure

import minir1.viz as viz


def _render_calls():
    calls = []

    def render(n: int = 0, word: str = "") -> Figure:
        calls.append((n, word))
        fig = Figure()
        fig.suptitle(f"{n} {word}")
        return fig

    return render, calls


def _shown(monkeypatch):
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: shown.extend(objs))
    return shown


def test_without_live_widgets_one_static_figure(monkeypatch):
    shown = _shown(monkeypatch)
    monkeypatch.setattr(viz, "widgets_live", lambda: False)
    render, calls = _render_calls()
    viz.interactive(render, n=(0, 10), word=["a", "b"])
    assert calls == [(5, "a")]
    assert len(shown) == 1 and isinstance(shown[0], Figure)


def test_live_the_figure_is_drawn_once_inside_the_widget_and_redrawn(monkeypatch):
    shown = _shown(monkeypatch)
    monkeypatch.setattr(viz, "widgets_live", lambda: True)
    render, calls = _render_calls()
    label = "kv_lora_rank"
    viz.interactive(render, n=ipywidgets.IntSlider(value=3, max=9, description=label),
                    word=["a", "b"])
    # what the cell shows: the widget only; the default figure went into the widget's output
    (ui,) = [s for s in shown if not isinstance(s, Figure)]
    assert isinstance(ui, ipywidgets.interactive)
    assert sum(isinstance(s, Figure) for s in shown) == 1 and calls == [(3, "a")]
    slider = ui.kwargs_widgets[0]
    assert slider.style.description_width == "initial"  # the whole label, not cut at a fixed width
    slider.value = 7
    assert calls[-1] == (7, "a")
