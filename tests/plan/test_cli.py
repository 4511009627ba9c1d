"""``minir1 plan``: the text and ``--json`` carry the same numbers; bad inputs fail naming the
rule."""

import contextlib
import io
import json

import pytest

from minir1.cli import main
from minir1.plan.hardware import GIB


@pytest.fixture(scope="module")
def outputs():
    def run(*argv):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            main(["plan", *argv])
        return out.getvalue()

    return run("--preset", "v3"), json.loads(run("--preset", "v3", "--json"))


def test_text_and_json_agree(outputs):
    text, report = outputs
    total = report["compute"]["table1"][-1]
    assert f"{total['gpu_hours'] / 1e3:,.0f}K" == "2,788K" and "2,788K" in text
    assert f"${total['usd'] / 1e6:.3f}M" == "$5.576M" and "$5.576M" in text
    assert f"{report['compute']['table1'][0]['mfu_bf16']:.1%}" in text
    assert "prior research and ablation experiments" in text
    for row in report["training_memory"]["layouts"]:
        line = next(x for x in text.splitlines() if x.startswith(row["name"]))
        assert line.split()[-2:] == [f"{row['total'] / GIB:.1f}", "yes" if row["fits"] else "NO"]
    fits = [r["name"] for r in report["training_memory"]["layouts"] if r["fits"]]
    assert "V3: PP16 x EP64, ZeRO-1, DualPipe" in fits
    for row in report["inference"]["models"]:
        line = next(x for x in text.splitlines()
                    if x.split()[:2] == [row["model"], row["precision"]])
        cells = [f"{c // 1024}K" if c else "-" for c in row["max_context"].values()]
        assert line.split()[-len(cells):] == cells
    for t in report["communication"]["routings"]:
        line = next(x for x in text.splitlines() if x.startswith(t["routing"] + " "))
        assert line.split()[-1] == f"{t['ratio']:.2f}"
    assert f"{report['inference']['kv_bytes_per_token']['MLA (cached latent)']:,} B" in text


def test_options_reach_the_report(capsys):
    main(["plan", "--pp", "8", "--ep", "32", "--gpus", "1024", "--no-zero1", "--mfu", "0.3",
          "--precision", "fp8", "--usd-per-gpu-hour", "3", "--json"])
    r = json.loads(capsys.readouterr().out)
    yours = r["training_memory"]["layouts"][0]
    assert yours["name"] == "yours"
    assert yours["layout"] | {"n_gpus": 1024, "pp": 8, "ep": 32, "zero1": False} == yours["layout"]
    assert r["communication"]["ep"] == 32
    run = r["compute"]["run"]
    assert run["usd"] == pytest.approx(3 * run["gpu_hours"])
    assert r["assumptions"]["peak_tflops"] == pytest.approx(1978.9)


@pytest.mark.parametrize("argv, message", [
    (["--ep", "48"], "Layout.ep=48: must divide the 128 GPUs of a pipeline stage"),
    (["--gpus", "2040"], "Layout.n_gpus=2040: must be divisible by pp * tp = 16"),
    (["--gpu", "a100"], "gpu='a100': unknown GPU"),
    (["--pp", "15", "--gpus", "1920", "--schedule", "dualpipe"], "must be even for DualPipe"),
    (["--mfu", "0"], "mfu=0.0: must be in (0, 1]"),
])
def test_bad_inputs_exit_naming_the_rule(argv, message):
    with pytest.raises(SystemExit, match="minir1 plan: ") as err:
        main(["plan", *argv])
    assert message in str(err.value)


def test_help(capsys):
    with pytest.raises(SystemExit) as err:
        main(["plan", "--help"])
    assert err.value.code == 0 and "--no-zero1" in capsys.readouterr().out
