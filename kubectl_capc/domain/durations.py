"""Go duration strings (`1h30m`, `500ms`, `0`), as metav1.Duration fields and kubectl flags spell them.

One parser for both: the CLI's `--request-timeout` and the Machines' `nodeDrainTimeout`.
"""

from __future__ import annotations

import re

__all__ = ["parse_go_duration"]

_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration (an optional sign, then number-unit pairs; "0" alone is allowed).

    Raises ValueError for anything else.
    """
    body = text.strip()
    sign = -1.0 if body.startswith("-") else 1.0
    body = body[1:] if body[:1] in "+-" and body else body
    if body == "0":
        return 0.0
    parts = _PART.findall(body)
    if not body or "".join(number + unit for number, unit in parts) != body:
        raise ValueError(f"{text!r} is not a duration (expected e.g. 10m, 1h30m or 90s)")
    return sign * sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
