"""Training: the shared loop (checkpoints, resume, logging) and evaluation by task accuracy."""

from minir1.train.loop import CheckpointError, TrainConfig, Trainer, load_model, lr_at, save_checkpoint

__all__ = ["CheckpointError", "TrainConfig", "Trainer", "load_model", "lr_at", "save_checkpoint"]
