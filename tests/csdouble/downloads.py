"""Template download progress per zone, modelled on CloudStack's simulator.

The simulator never fetches the URL; each progress report moves the download forward. Here a
"tick" is one listTemplates request (any template, any zone), and optionally wall-clock time also
counts, so tests can be fast and deterministic.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .faults import DownloadFault
from .model import TemplateZone, ZoneState


@dataclass
class DownloadPolicy:
    poll_steps: int = 5  # listTemplates requests from 0% to Download Complete; 0 = ready at once
    seconds: float | None = None  # if set, a download also completes after this much time


def start(row: TemplateZone, policy: DownloadPolicy, fault: DownloadFault | None) -> None:
    """Begin (or restart) the download of one zone copy."""
    row.state = ZoneState.DOWNLOADING
    row.ticks = 0
    row.percent = 0
    row.error = None
    row.started_at = time.monotonic()
    advance(row, policy, fault, tick=False)


def advance(row: TemplateZone, policy: DownloadPolicy, fault: DownloadFault | None, tick: bool) -> None:
    """Move a downloading copy forward by one tick and/or elapsed time, honouring a download fault."""
    if row.state is not ZoneState.DOWNLOADING:
        return
    ticks = row.ticks + 1 if tick else row.ticks
    fraction = 1.0 if policy.poll_steps <= 0 else ticks / policy.poll_steps
    if policy.seconds is not None:
        elapsed = time.monotonic() - row.started_at
        fraction = max(fraction, 1.0 if policy.seconds <= 0 else elapsed / policy.seconds)
    percent = max(row.percent, min(100, int(fraction * 100)))
    if fault is not None and percent >= fault.at_percent:
        if fault.mode == "error":
            row.state = ZoneState.ERROR
            row.error = fault.message
            row.percent = fault.at_percent
            return
        if percent == fault.at_percent:
            row.ticks = ticks  # the tick that reached the stall point counts, later ones do not
        row.percent = min(fault.at_percent, 100)
        return
    row.ticks = ticks
    row.percent = percent
    if percent >= 100:
        row.state = ZoneState.READY


def status_text(row: TemplateZone) -> str:
    """The `status` string TemplateJoinDaoImpl reports for this copy."""
    if row.state is ZoneState.READY:
        return "Download Complete"
    if row.state is ZoneState.DOWNLOADING:
        return "Installing Template" if row.percent >= 100 else f"{row.percent}% Downloaded"
    if row.state is ZoneState.ERROR:
        return row.error or "UploadError"
    return str(row.state.value)
