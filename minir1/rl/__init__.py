"""Reinforcement learning, the R1 recipe (imports from every layer below it, never from viz or cli):

- ``grpo``: group-relative advantages and the DeepSeekMath token-level objective (Eqs. 3-4)
- ``trainer``: the GRPO trainer (rollouts, rule rewards, μ inner updates, reference refresh)
- ``r1zero``: R1-Zero, pure RL from the base model (R1 §2.2)
- ``rejection``: rejection sampling and trace files (R1 §2.3.3)
- ``pipeline``: the four-stage R1 pipeline, R1-Zero beside it (R1 §2.3)
- ``distill``: a dense student SFT'd on the teacher's traces vs RL alone (R1 §2.4, Table 6)
- ``rewards``: an alias of ``minir1.data.rewards``, where the rule rewards live
"""

from minir1.utils import lazy_submodules

__getattr__, __dir__ = lazy_submodules(__name__, ('distill', 'grpo', 'pipeline', 'r1zero',
                                                  'rejection', 'rewards', 'trainer'))
