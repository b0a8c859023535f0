"""``python -m tuner_callbacks.watch``; see :mod:`tuner_callbacks.watch.cli`."""

import sys

from tuner_callbacks.watch.cli import main

sys.exit(main())
