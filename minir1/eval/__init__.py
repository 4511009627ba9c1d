"""Evaluation: how every number in the results tables is computed, one file away.

- ``complete``: the batched completion loop (prompt template, forced prefix, greedy or sampled)
- ``greedy``: greedy accuracy in three modes (free / direct / reason), per task and level
- ``sampled``: pass@1, pass@k and maj@k over k samples (R1's protocol), a stage's results row, the
  scoreboard of a pipeline run and its table
- ``heldout``: the periodic checks of training: held-out loss and accuracy during pretraining,
  greedy accuracy, reasoning and self-check rates during RL
"""

from minir1.utils import lazy_submodules

__getattr__, __dir__ = lazy_submodules(__name__, ('complete', 'greedy', 'heldout', 'sampled'))
