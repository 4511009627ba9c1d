"""The real DeepSeek-V3 on paper: compute, memory, communication and cost of any ``ModelConfig``,
from first principles, checked against the papers' own figures.

- ``hardware``: the GPUs (RTX 3080, RTX 4090, H100, H800, an 8x H800 node), their dense peaks and
  the H800 cluster's links (V3 §3.1-3.2)
- ``compute``: training FLOPs -> GPU-hours -> dollars; V3 Table 1 and the MFU it implies
- ``memory``: training memory per GPU under a PP x EP x DP (ZeRO-1) x TP layout, with V3's
  precisions, recomputation and DualPipe (V3 §3.2-3.3, Table 2)
- ``inference``: weights at BF16 / FP8 / 4-bit, KV cache per token (MLA against MHA and GQA), and
  which GPU runs which model, the R1-Distill family included
- ``comm``: the expert-parallel all-to-all per token and MoE layer: rows, bytes, time on IB and
  NVLink, node-limited routing, and the compute:communication ratio (V3 §2.1.2, §3.2)
- ``schedule``: the pipeline schedules 1F1B, ZB1P, DualPipe and DualPipeV simulated as per-rank
  timelines, their bubbles and peak activations checked against V3 Table 2 (§3.2.1, Figures 4-5)
- ``report``: all of it as one dict (``minir1 plan --json``) and as text (``minir1 plan``)
"""

from minir1.plan.comm import a2a_rows, traffic
from minir1.plan.compute import table1, training_cost
from minir1.plan.hardware import GPU, GPUS, get_gpu
from minir1.plan.inference import DISTILL, fit_table, kv_equivalents, served
from minir1.plan.memory import NAIVE_LAYOUTS, V3_LAYOUT, Layout, training_memory
from minir1.plan.report import format_plan, plan
from minir1.plan.schedule import (
    SCHEDULES,
    ChunkTimes,
    Timeline,
    simulate,
    table2,
    table2_conditions,
)

__all__ = ["DISTILL", "GPU", "GPUS", "NAIVE_LAYOUTS", "SCHEDULES", "V3_LAYOUT", "ChunkTimes",
           "Layout", "Timeline", "a2a_rows", "fit_table", "format_plan", "get_gpu",
           "kv_equivalents", "plan", "served", "simulate", "table1", "table2",
           "table2_conditions", "traffic", "training_cost", "training_memory"]
