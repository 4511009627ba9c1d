from minir1.train.loop import TrainConfig


def cfg(steps=6, **kw):
    return TrainConfig(steps=steps, batch_size=4, seq_len=48, lr=3e-3, warmup_steps=2, log_every=1,
                       **kw)
