"""Training (imports only from the layers below: config, model, data, infer, eval):

- ``loop``: ``TrainConfig``, the schedule (``lr_at``) and the ``Trainer`` shared by every recipe
- ``checkpoint``: the checkpoint format (safetensors + JSON, atomic, bit-exact resume)
- ``log``: metric rows in memory and in JSON lines
- ``pretrain``: the pretraining recipes per profile and ``pretrain``
- ``sft``: supervised fine-tuning with sample masking
- ``runs``: run directories, the shipped base models and traces, which base a run starts from
- ``fp8_fidelity``: does FP8 training track FP32 (V3 Appendix B.1, in miniature)
"""

from minir1.utils import lazy_submodules

__getattr__, __dir__ = lazy_submodules(__name__, ('checkpoint', 'fp8_fidelity', 'log', 'loop',
                                                  'pretrain', 'runs', 'sft'))
