"""Scaling out with torch.distributed (imports only from the layers below: config, model, data,
infer, eval):

- ``mesh``: the ranks of a torchrun launch, the layout of data and expert parallelism over them
  (``ParallelLayout``, with the rules a layout must meet) and its process groups
- ``expert_parallel``: the routed experts spread over ranks, an all-to-all each way between the
  MoE's permute and unpermute (V3 §3.2.2)
- ``zero``: ZeRO-1, V3's data parallelism: whole weights on every rank, the optimiser state
  divided, gradients reduce-scattered to their owners and weights all-gathered back
- ``data_parallel``: ZeRO-1 or FSDP2 over every rank for the replicated parameters, and the
  experts' gradient reduction beside it
- ``parallel``: one torchrun launch as the trainers see it (``init``, ``Parallel``)
- ``pipeline``: the pipeline schedules of ``minir1.plan.schedule`` (1F1B, ZB1P, DualPipe,
  DualPipeV) run for real, activations and gradients sent between ranks (V3 §3.2.1)
- ``inspect``: one sharded forward and backward under torchrun, reported as JSON: where every
  parameter lives and the rank x rank rows of every dispatch all-to-all
  (``python -m minir1.dist.inspect``)
"""

from minir1.utils import lazy_submodules

__getattr__, __dir__ = lazy_submodules(
    __name__,
    ("data_parallel", "expert_parallel", "inspect", "mesh", "parallel", "pipeline", "zero"))
