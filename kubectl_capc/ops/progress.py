"""How the image pipeline's progress reaches whoever shows it, as typed updates.

`register_image` and the copy waits report through an `image_register.Reporter` (messages, template
rows, bytes sent); `PipelineReporter` turns those into `UploadUpdate`s and `CopyUpdate`s (with the wait's
elapsed time and limit) for an `ImageProgress`, which the CLI implements. `NoteProgress` is the fallback
for a console that only takes notes: a line per change of the zones' states, and one when an upload ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from kubectl_capc.domain.progress import CopyUpdate, UploadUpdate, ZoneCopy

if TYPE_CHECKING:
    from kubectl_capc.cloudstack.rows import Template

__all__ = ["ImageProgress", "NoteProgress", "PipelineReporter"]


class ImageProgress(Protocol):
    """Where the image pipeline's progress goes."""

    def note(self, message: str) -> None:
        """A step (registering, uploading, copying): always shown."""

    def upload(self, update: UploadUpdate) -> None: ...

    def copies(self, update: CopyUpdate) -> None: ...


class NoteProgress:
    """An `ImageProgress` for a console that only takes notes."""

    def __init__(self, note: Callable[[str], None]) -> None:
        self._note = note
        self._last = ""

    def note(self, message: str) -> None:
        self._note(message)

    def upload(self, update: UploadUpdate) -> None:
        if update.total and update.done:
            self._note(f"uploaded {update.total} bytes")

    def copies(self, update: CopyUpdate) -> None:
        text = ", ".join(f"{zone.zone}: {zone.state}" for zone in update.zones)
        if text != self._last:
            self._last = text
            self._note(text)


class PipelineReporter:
    """An `image_register.Reporter` that passes typed updates on; elapsed times count from its creation,
    which is when the wait limited to `timeout` seconds (None: no limit) began."""

    def __init__(
        self,
        progress: ImageProgress,
        *,
        timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.progress = progress
        self.timeout = timeout
        self._clock = clock
        self._started = clock()

    def step(self, message: str) -> None:
        self.progress.note(message)

    def zones(self, rows: Sequence[Template]) -> None:
        copies = tuple(ZoneCopy(row.zone_name, row.name, row.ready, row.status) for row in rows)
        self.progress.copies(CopyUpdate(copies, self._clock() - self._started, self.timeout))

    def upload(self, sent: int, total: int) -> None:
        self.progress.upload(UploadUpdate(sent, total))
