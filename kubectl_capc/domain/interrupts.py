"""Ctrl-C stops a run between writes, never in the middle of one.

A write interrupted after it was sent leaves the user unsure whether it happened. Inside `writing()`,
a first Ctrl-C is only noted: the write finishes (or fails) and `KeyboardInterrupt` is raised right
after it, so the command stops at a clean point and says how to continue. A second Ctrl-C stops at once,
for a write that takes too long. Reads, waits and uploads stay interruptible at any moment: they change
nothing, or (an upload) are started again by the next run.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from kubectl_capc.domain import testpoints

__all__ = ["StoppedAfterWrite", "writing"]

_active = threading.local()


class StoppedAfterWrite(KeyboardInterrupt):
    """Ctrl-C that waited for a write to finish; `write` names it, `going_on` what the write started
    that goes on without the command (CloudStack's async job), if anything."""

    def __init__(self, write: str, going_on: str = "") -> None:
        super().__init__(write)
        self.write = write
        self.going_on = going_on

    @property
    def done(self) -> str:
        """Where the run stopped, after "interrupted after ..."."""
        if self.going_on:
            return f"{self.write} was sent ({self.going_on})"
        return f"{self.write} had finished"


@contextmanager
def writing(what: str, going_on: str = "") -> Iterator[None]:
    """Run one write (`what` names it in the note shown on Ctrl-C) with Ctrl-C deferred until it ends.

    `going_on` says what the write starts that carries on after the command stops (a copy that
    CloudStack goes on with, and that the next run finds); the note on Ctrl-C says so. Only the main
    thread can handle signals; elsewhere, and inside an enclosing `writing()`, this only runs the body.
    """
    if threading.current_thread() is not threading.main_thread() or getattr(_active, "on", False):
        yield
        return
    pending: list[int] = []

    def defer(signum: int, frame: FrameType | None) -> None:
        if pending:
            raise KeyboardInterrupt
        pending.append(signum)
        sys.stderr.write(f"\nstopping after {what} has finished (press Ctrl-C again to stop at once)\n")
        sys.stderr.flush()

    previous = signal.signal(signal.SIGINT, defer)
    _active.on = True
    try:
        testpoints.reached(f"writing {what}")
        yield
    finally:
        _active.on = False
        signal.signal(signal.SIGINT, previous)
    if pending:
        raise StoppedAfterWrite(what, going_on)
