"""Calls run side by side in threads, for tests of writers and askers that race."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any


def run_in_threads(calls: Sequence[Callable[[], Any]], timeout_s: float = 120) -> None:
    """Each call in a thread of its own, released together by a barrier; raises the first error any of them raised
    (with its own traceback) once all have ended."""
    errors: list[BaseException] = []
    start = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> None:
        start.wait()
        try:
            call()
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout_s)
    assert not any(thread.is_alive() for thread in threads), f"a thread did not end within {timeout_s} s"
    if errors:
        raise errors[0]
