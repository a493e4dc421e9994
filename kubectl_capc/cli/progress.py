"""The one progress renderer of every command that waits, on stderr (stdout is left to the result).

`--progress=auto` (the default) draws a live display when stderr is a terminal: an upload's bytes, rate
and ETA; each zone's copy or download with its percentage; each rollout's machines up to date and ready
out of the total, with the Machine being replaced and its phase; the time each wait has taken against its
limit; a fleet's clusters as a table. When stderr is not a terminal, or with `--progress=plain`, it prints
plain lines that start with a UTC timestamp (`2026-12-07T02:03:04Z`), one each time a state changes and
never a terminal control sequence. `--progress=none` shows no progress at all. Notes (steps, warnings) are
printed in every mode, above the live display when there is one.

rich is imported only once a live display is drawn, so that start-up and plain output never load it.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TextIO

from kubectl_capc.cli.options import ProgressMode
from kubectl_capc.domain.progress import (
    CopyUpdate,
    OwnerProgress,
    RolloutUpdate,
    UploadUpdate,
    ZoneCopy,
    clock,
)

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live

__all__ = ["ProgressDisplay", "owner_text", "size", "zone_text"]

RATE_WINDOW = 10.0
"""An upload's rate is measured over this many seconds of the latest progress."""
UPLOAD_STEP = 10
"""Plain output prints an upload line at each this many percent (and when it ends)."""
STATUS_EVERY = 60.0
"""Plain output prints a free-text status (a build's) at most this often, in seconds."""


def size(count: float) -> str:
    """Bytes for people: `512 B`, `1.5 MiB`, `4.0 GiB`."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _limit(elapsed: float, timeout: float | None) -> str:
    """`1:05 of 30:00`, or `1:05` for a wait without a limit."""
    return clock(elapsed) + (f" of {clock(timeout)}" if timeout is not None else "")


def owner_text(owner: OwnerProgress) -> str:
    """One owner's state, with the Machine it is replacing: what a plain line says and compares."""
    text = str(owner)
    if owner.replacing is not None and not owner.done and owner.observed:
        text += f"; replacing {owner.replacing.name} ({owner.replacing.phase})"
    return text


def zone_text(zone: ZoneCopy) -> str:
    return f"zone {zone.zone}: {zone.template} {zone.state}"


@dataclass
class _Upload:
    """An upload under way: the latest update and the samples its rate is measured from."""

    update: UploadUpdate
    samples: list[tuple[float, int]] = field(default_factory=list)
    printed_step: int = -1

    def add(self, now: float, update: UploadUpdate) -> None:
        self.update = update
        self.samples.append((now, update.sent))
        while len(self.samples) > 2 and now - self.samples[1][0] >= RATE_WINDOW:
            self.samples.pop(0)

    @property
    def rate(self) -> float:
        """Bytes per second over the latest samples; 0 until there are two."""
        (first, sent0), (last, sent1) = self.samples[0], self.samples[-1]
        return (sent1 - sent0) / (last - first) if last > first else 0.0

    @property
    def eta(self) -> float | None:
        rate = self.rate
        left = self.update.total - self.update.sent
        return left / rate if rate > 0 else None

    @property
    def percent(self) -> int:
        total = self.update.total
        return 100 if not total else min(100, 100 * self.update.sent // total)

    def text(self) -> str:
        update = self.update
        line = f"uploaded {size(update.sent)} of {size(update.total)} ({self.percent}%)"
        if update.done:
            return line
        eta = self.eta
        return line + f" at {size(int(self.rate))}/s, ETA {clock(eta) if eta is not None else '?'}"


class ProgressDisplay:
    """Shows typed progress updates on stderr as the mode says; thread-safe (fleet members report from
    their own threads). `console` and `now` are for tests: a rich Console to draw on, and the clock of
    the timestamps."""

    def __init__(
        self,
        mode: ProgressMode | str = ProgressMode.AUTO,
        *,
        stream: TextIO | None = None,
        console: Console | None = None,
        now: Callable[[], datetime] = _utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream if stream is not None or console is None else console.file
        self._console = console
        self._now = now
        self._monotonic = monotonic
        mode = ProgressMode(mode)
        if mode is ProgressMode.AUTO:
            live = console is not None or _is_terminal(stream or sys.stderr)
            mode = ProgressMode.AUTO if live else ProgressMode.PLAIN
        self.mode = mode
        self._lock = threading.RLock()
        self._live: Live | None = None
        # What each section shows: the latest rollout owners (by name), zones (by zone), the upload,
        # a free-text status, a fleet's clusters. Each keeps what plain output printed last.
        self._owners: dict[str, OwnerProgress] = {}
        self._rollout: tuple[float, float | None, float] | None = None  # elapsed, timeout, when
        self._zones: dict[str, ZoneCopy] = {}
        self._copies: tuple[float, float | None, float] | None = None
        self._upload: _Upload | None = None
        self._status = ""
        self._status_printed = -STATUS_EVERY
        self._fleet: dict[str, str] = {}
        self._printed: dict[str, str] = {}
        self._frame: RenderableType = ""  # what the live display drew last

    @property
    def live(self) -> bool:
        return self.mode is ProgressMode.AUTO

    # -- what callers report ----------------------------------------------------------------------

    def note(self, message: str) -> None:
        """A step, warning or result line: printed in every mode, above a live display."""
        with self._lock:
            if self._live is not None:
                self._above(message)
            else:
                self._write(message)

    def rollout(self, update: RolloutUpdate) -> None:
        with self._lock:
            now = self._monotonic()
            self._owners = {}  # every update names all of its wait's owners
            for owner in update.owners:
                self._owners[owner.name] = owner
                self._plain(
                    f"rollout {owner.name}", owner_text(owner), _limit(update.elapsed, update.timeout)
                )
            self._rollout = (update.elapsed, update.timeout, now)
            if update.done:
                self._finish_rollout()
            self._refresh()

    def copies(self, update: CopyUpdate) -> None:
        with self._lock:
            now = self._monotonic()
            self._zones = {}  # every update names all of its wait's zones
            for zone in update.zones:
                self._zones[zone.zone] = zone
                self._plain(f"zone {zone.zone}", zone_text(zone), _limit(update.elapsed, update.timeout))
            self._copies = (update.elapsed, update.timeout, now)
            if update.done:
                self._finish_copies()
            self._refresh()

    def upload(self, update: UploadUpdate) -> None:
        with self._lock:
            now = self._monotonic()
            if self._upload is None:
                self._upload = _Upload(update)
            upload = self._upload
            upload.add(now, update)
            if not self.live and self.mode is not ProgressMode.NONE:
                step = 100 if update.done else upload.percent // UPLOAD_STEP * UPLOAD_STEP
                if step != upload.printed_step:
                    upload.printed_step = step
                    self._stamped(upload.text())
            if update.done:
                self._result(upload.text())
                self._upload = None
            self._refresh(now=update.done)  # otherwise drawn by the display's own 4 refreshes a second

    def status(self, text: str) -> None:
        """A free-text status that changes often (a build's output): live, or a plain line at most once
        a minute."""
        with self._lock:
            self._status = text[:150]
            now = self._monotonic()
            plain = not self.live and self.mode is not ProgressMode.NONE
            if plain and now - self._status_printed >= STATUS_EVERY:
                self._status_printed = now
                self._stamped(self._status)
            self._refresh(now=False)

    def cluster(self, key: str, state: str) -> None:
        """A fleet member's state: a row of the live table, or a plain line when it changes."""
        with self._lock:
            if self._fleet.get(key) == state:
                return
            self._fleet[key] = state
            self._plain(f"cluster {key}", f"{key}: {state}", "")
            self._refresh()

    def close(self) -> None:
        """Stop the live display, leaving what it showed last on the screen; what comes next starts a
        new one."""
        with self._lock:
            if self._live is not None:
                self._live.stop()
                self._live = None
            self._owners, self._zones, self._fleet = {}, {}, {}
            self._rollout = self._copies = self._upload = None
            self._status = ""

    def _above(self, text: str) -> None:
        """A line printed above the live display, as it is (no markup, no wrapping)."""
        if self._live is not None:
            self._live.console.print(text, markup=False, highlight=False, emoji=False, soft_wrap=True)

    # -- plain lines ------------------------------------------------------------------------------

    def _write(self, text: str) -> None:
        stream = self._stream or sys.stderr
        stream.write(text + "\n")
        stream.flush()

    def _stamped(self, text: str) -> None:
        self._write(f"{self._now().strftime('%Y-%m-%dT%H:%M:%SZ')} {text}")

    def _plain(self, key: str, state: str, when: str) -> None:
        """A timestamped line for `key` when its `state` changed (plain mode only)."""
        if self.live or self.mode is ProgressMode.NONE or self._printed.get(key) == state:
            return
        self._printed[key] = state
        self._stamped(f"{state} ({when})" if when else state)

    # -- the live display -------------------------------------------------------------------------

    def _result(self, text: str) -> None:
        """How something shown live ended: a line that stays (plain output has printed it already)."""
        if self.live:
            self.note(text)

    def _finish_rollout(self) -> None:
        """A wait that ended: its owners' final lines stay above the live display."""
        for owner in self._owners.values():
            self._result(f"  {owner_text(owner)}")
        self._owners.clear()
        self._rollout = None

    def _finish_copies(self) -> None:
        for zone in self._zones.values():
            self._result(f"  {zone_text(zone)}")
        self._zones.clear()
        self._copies = None

    def _refresh(self, *, now: bool = True) -> None:
        """Draw the live display (`now`: at once, not at its next refresh); it starts with the first
        thing to show and stops once nothing is left (so that a question or a result is never drawn
        over)."""
        if not self.live:
            return
        if not self._anything():
            self.close()
            return
        if self._live is None:
            from rich.console import Console
            from rich.live import Live

            console = self._console or Console(file=self._stream, stderr=self._stream is None)
            self._live = Live(
                console=console,
                get_renderable=self._render,
                refresh_per_second=4,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()
        if now:
            self._live.refresh()

    def _anything(self) -> bool:
        return bool(self._owners or self._zones or self._upload or self._status or self._fleet)

    def _since(self, section: tuple[float, float | None, float] | None) -> str:
        if section is None:
            return ""
        elapsed, timeout, when = section
        return _limit(elapsed + self._monotonic() - when, timeout)

    def _render(self) -> RenderableType:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        # Called by rich's refresh thread while it holds the display's own lock, which the update
        # methods take after this one: waiting here could deadlock, so while another thread updates,
        # the last frame is drawn again.
        if not self._lock.acquire(blocking=False):
            return self._frame
        try:
            parts: list[Any] = []
            if self._upload is not None:
                upload = self._upload
                grid = Table.grid(padding=(0, 1))
                grid.add_row(
                    Text("upload"),
                    ProgressBar(total=upload.update.total or 1, completed=upload.update.sent, width=30),
                    Text(upload.text()),
                )
                parts.append(grid)
            if self._zones:
                grid = Table.grid(padding=(0, 1))
                for zone in self._zones.values():
                    percent = zone.percent
                    grid.add_row(
                        Text(f"zone {zone.zone}"),
                        ProgressBar(total=100, completed=percent or 0, width=20, pulse=percent is None),
                        Text(f"{zone.template} {zone.state}"),
                    )
                parts.append(grid)
                parts.append(Text(f"  waiting {self._since(self._copies)}", style="dim"))
            if self._owners:
                grid = Table.grid(padding=(0, 1))
                for owner in self._owners.values():
                    grid.add_row(
                        Text(owner.name),
                        ProgressBar(total=owner.desired or 1, completed=owner.up_to_date, width=20),
                        Text(_owner_counts(owner)),
                    )
                parts.append(grid)
                parts.append(Text(f"  waiting {self._since(self._rollout)}", style="dim"))
            if self._status:
                parts.append(Text(self._status, no_wrap=True, overflow="ellipsis"))
            if self._fleet:
                table = Table(box=None, pad_edge=False)
                table.add_column("CLUSTER")
                table.add_column("STATE")
                for key in sorted(self._fleet):
                    table.add_row(key, self._fleet[key])
                parts.append(table)
            return Group(*parts)

        finally:
            self._lock.release()


def _owner_counts(owner: OwnerProgress) -> str:
    if owner.done:
        return f"done, {owner.ready}/{owner.desired} ready at {owner.version}"
    if not owner.observed:
        return "waiting for the controller to pick up the change"
    text = f"{owner.up_to_date}/{owner.desired} updated, {owner.ready}/{owner.desired} ready"
    if owner.replacing is not None:
        text += f"; {owner.replacing}"
    return text


def _is_terminal(stream: TextIO) -> bool:
    """Whether live output can be drawn on `stream`: a terminal that is not `TERM=dumb`."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        return False
    return tty and os.environ.get("TERM", "") != "dumb"
