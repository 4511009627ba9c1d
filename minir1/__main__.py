"""``python -m minir1`` (and ``torchrun ... -m minir1``): the command line."""

import sys

from minir1.cli import main

sys.exit(main())
