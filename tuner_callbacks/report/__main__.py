"""``python -m tuner_callbacks.report``; see :mod:`tuner_callbacks.report.build`."""

import sys

from tuner_callbacks.report.build import main

sys.exit(main())
