"""Data: what the models read and how their answers are checked.

- ``tags``: the R1 format's tags, spelled once;  ``tokenizer``: characters plus the tags as tokens
- ``tasks``: verifiable arithmetic problems with worked solutions, hash-disjoint train/test splits
- ``templates``: the R1-Zero and chat prompts, direct and worked completions
- ``rewards``: the rule rewards, accuracy and format (R1 §2.2.2)
- ``checks``: does a completion reason, check itself, read well (rejection sampling's filter)
- ``datasets``: the pretraining corpus, packed and SFT batch streams
- ``testsets``: the fixed held-out test sets shipped in ``data/``
- ``synthetic``: a Markov-chain language for the architecture lessons
"""

from minir1.utils import lazy_submodules

__getattr__, __dir__ = lazy_submodules(__name__, ('checks', 'datasets', 'rewards', 'synthetic',
                                                  'tags', 'tasks', 'templates', 'testsets',
                                                  'tokenizer'))
