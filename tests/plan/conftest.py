"""Shared hand-computed sizes of DeepSeek-V3 (config_671B.json shapes), written out from the
architecture so the planner's numbers are checked against arithmetic, not against themselves."""

import pytest

from minir1 import ModelConfig

D, N_H, VOCAB = 7168, 128, 129280
MLA = (D * 1536 + 1536 * N_H * 192 + D * 576 + 512 * N_H * 256 + N_H * 128 * D  # projections
       + 1536 + 512 + 2 * D)  # q_norm, kv_norm, attn_norm, ffn_norm
EXPERT = 3 * D * 2048
GATE = 256 * D
DENSE_FFN = 3 * D * 18432


@pytest.fixture(scope="session")
def v3():
    return ModelConfig.preset("v3")
