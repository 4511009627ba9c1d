"""Hooks, fixtures and helpers shared by every test folder.

The helpers are plain functions and constants: a test module imports them, ``from tests.conftest
import small_cfg``.
"""

import contextlib
import importlib.util
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from minir1 import ModelConfig, Transformer
from minir1.data.datasets import CorpusConfig, PackedStream, corpus_documents, pack_documents
from minir1.data.tokenizer import Tokenizer


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="run tests marked slow")
    parser.addoption("--browser", action="store_true", default=False,
                     help="run tests marked browser (JupyterLab in headless Chromium)")


def pytest_collection_modifyitems(config, items):
    skip_slow = pytest.mark.skip(reason="slow: pass --runslow")
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    skip_browser = pytest.mark.skip(reason="browser: pass --browser")
    no_chromium = pytest.mark.skip(reason="browser: needs chromium and chromedriver "
                                          "(Debian: apt install chromium chromium-driver)")
    have_chromium = bool((shutil.which("chromium") or shutil.which("chromium-browser"))
                         and shutil.which("chromedriver"))
    for item in items:
        if item.get_closest_marker("browser"):
            if not config.getoption("--browser"):
                item.add_marker(skip_browser)
            elif not have_chromium:
                item.add_marker(no_chromium)
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def micro():
    """Pipeline and distillation recipes small enough to run every stage in seconds (nothing is
    learned)."""
    from dataclasses import replace
    from types import SimpleNamespace

    from minir1.rl.distill import DISTILL_RECIPES
    from minir1.rl.pipeline import PipelineRecipe
    from minir1.rl.trainer import GRPOConfig

    rl = GRPOConfig(steps=1, prompts_per_step=2, group_size=2, tasks=("add", "expr"), levels=(3,),
                    max_new_tokens=96)
    pipe = PipelineRecipe(rl, final_rl_steps=1, cold_start_traces=8, cold_start_steps=2,
                          rs_prompts=4, rs_k=2, rs_epochs=0.2, sft_batch=2, eval_n=1, eval_k=2,
                          check_n=1, check_every=1)
    dist = replace(DISTILL_RECIPES["ci"], rl=rl, epochs=0.2, batch=2, eval_n=1, eval_k=2,
                   check_n=1, check_every=1)
    return SimpleNamespace(rl=rl, pipeline=pipe, distill=dist)


# ------------------------------------------------------------------------------------ helpers
TOK = Tokenizer()

# a correct, well-formed completion of 936 = 357 + 579, digit by digit
GOOD = "<think>7+9=16,4+8+1=13,3+5+1=9</think><answer>936</answer>"


def free_port() -> int:
    """A local TCP port nothing listens on now (a server's, in a test)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def small_cfg(**kw):
    base = dict(n_layers=3, n_dense_layers=1, max_seq_len=64, original_seq_len=64)
    return ModelConfig.preset("tiny", **{**base, **kw})


def small_model(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = ModelConfig.preset("tiny", dim=64, n_layers=2, inter_dim=128, moe_inter_dim=32,
                             max_seq_len=128, original_seq_len=128, **kw)
    return Transformer(cfg)


def tiny_model(seed: int = 0, **overrides) -> Transformer:
    # a large init std makes every logit depend on the context, so a stale cache slot changes the
    # output
    kw = {"n_layers": 2, "max_seq_len": 64, "original_seq_len": 64, "init_std": 0.2, **overrides}
    torch.manual_seed(seed)
    return Transformer(ModelConfig.preset("tiny", **kw)).eval()


def prompt(seed: int, n: int) -> list[int]:
    return torch.randint(0, 128, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def model_and_prompts():
    torch.manual_seed(0)
    cfg = ModelConfig.preset("tiny", vocab_size=TOK.vocab_size, dim=64, n_layers=2, inter_dim=128,
                             moe_inter_dim=32, max_seq_len=96, original_seq_len=96)
    prompts = [TOK.encode(f"User: {q}\nAssistant: ", bos=True)
               for q in ("1+2", "12+345", "7*8", "99-1", "3")]
    return Transformer(cfg), prompts


def stream(batch_size=4, seq_len=48):
    docs = corpus_documents(CorpusConfig(), 200, seed=0)
    tokens, learned = pack_documents(TOK, docs)
    return PackedStream(tokens, batch_size, seq_len, seed=0, learned=learned)


ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def benchmark_module(name: str) -> Iterator:
    """``benchmarks/NAME.py`` imported as a module (registered while in use: dataclasses look
    their module up), for tests of a benchmark's own functions."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[name]
