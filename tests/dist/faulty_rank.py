"""``minir1`` under torchrun with a fault injected: rank 1 raises while fetching step 2's batch,
as a rank whose data or device fails would; rank 0 goes on into the step's all-reduce.

Run by ``test_torchrun.py`` as ``torchrun ... faulty_rank.py pretrain ...``.
"""

import os
import sys

from minir1.cli import main
from minir1.data.datasets import PackedStream

batch = PackedStream.batch


def failing_batch(self: PackedStream, step: int):
    if os.environ.get("RANK") == "1" and step == 2:
        raise RuntimeError("injected fault")
    return batch(self, step)


PackedStream.batch = failing_batch
sys.exit(main(sys.argv[1:]))
