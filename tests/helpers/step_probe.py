"""StepProbe: a callback that appends each finished training step to a file, for tests that watch a ``train.py``
subprocess (add it with ``+callbacks.step_probe._target_=tests.helpers.step_probe.StepProbe
+callbacks.step_probe.path=...``) and act on the step it has reached instead of guessing with sleeps.

``pause_at`` holds the run at the end of that step until it receives SIGTERM (at most ``max_pause_s``), so that a
test's signal lands at a known step however slow the machine: the step is known, the timing is not guessed.
"""

from __future__ import annotations

import time
from pathlib import Path

from tuner_callbacks.lightning_compat import lightning_bases


class StepProbe(*lightning_bases("Callback")):
    def __init__(self, path: str, pause_at: int | None = None, max_pause_s: float = 600.0):
        self.path, self.pause_at, self.max_pause_s = Path(path), pause_at, max_pause_s

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        with self.path.open("a") as file:  # one short write per line: a reader never sees half a number
            file.write(f"{trainer.global_step}\n")
        if trainer.global_step == self.pause_at:
            deadline = time.monotonic() + self.max_pause_s
            while not trainer.received_sigterm and time.monotonic() < deadline:
                time.sleep(0.05)


def steps(path: Path) -> list[int]:
    """The steps a probe wrote so far ([] before the first)."""
    if not path.is_file():
        return []
    return [int(line) for line in path.read_text().splitlines() if line.strip().isdigit()]
