from minir1.viz.live import LivePlot, render_curves


def test_render_curves_draws_each_key():
    history = ([{"step": i, "loss": 5 - i, "acc": i / 10} for i in range(5)]
               + [{"step": 5, "loss": 0.1}])
    fig = render_curves(history, ("loss", "acc"))
    ax_loss, ax_acc = fig.axes
    assert list(ax_loss.lines[0].get_ydata()) == [5, 4, 3, 2, 1, 0.1]
    assert len(ax_acc.lines[0].get_ydata()) == 5  # rows without the key are skipped


def test_live_plot_collects_rows_headless():
    plot = LivePlot(("loss",))
    for i in range(3):
        plot.update({"step": i, "loss": 1.0 / (i + 1)})
    assert len(plot.history) == 3
    plot.close()  # no notebook: draws once, without error
