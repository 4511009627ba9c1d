"""minir1.utils: show_source prints the defining source of a library object."""

from minir1.model import MoE


def test_show_source_looks_through_decorators(capsys):
    import minir1

    minir1.show_source(MoE.update_bias)
    printed = capsys.readouterr().out
    assert printed.startswith("# minir1.model.moe.MoE.update_bias")
    assert "def update_bias" in printed and "/" not in printed.splitlines()[0]
