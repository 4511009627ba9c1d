import pytest
import torch


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    skip_slow = pytest.mark.skip(reason="slow: pass --runslow")
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def micro():
    """Pipeline and distillation recipes small enough to run every stage in seconds (nothing is learned)."""
    from dataclasses import replace
    from types import SimpleNamespace

    from minir1.rl.distill import DISTILL_RECIPES
    from minir1.rl.pipeline import PipelineRecipe
    from minir1.rl.trainer import GRPOConfig

    rl = GRPOConfig(steps=1, prompts_per_step=2, group_size=2, tasks=("add", "expr"), levels=(3,), max_new_tokens=96)
    pipe = PipelineRecipe(rl, final_rl_steps=1, cold_start_traces=8, cold_start_steps=2, rs_prompts=4, rs_k=2,
                          rs_epochs=0.2, sft_batch=2, eval_n=1, eval_k=2, check_n=1, check_every=1)
    dist = replace(DISTILL_RECIPES["ci"], rl=rl, epochs=0.2, batch=2, eval_n=1, eval_k=2, check_n=1, check_every=1)
    return SimpleNamespace(rl=rl, pipeline=pipe, distill=dist)
