"""How long to wait before retrying a remote request: exponential backoff with full jitter, or what the
server asked for in `Retry-After`.

Both adapters (`kube.client` for Kubernetes, `cloudstack.errors` for CloudStack) decide
*whether* a failed request may be retried; this module only says *when*. Jitter spreads the retries of
many clients over time, so a recovering server is not hit by all of them at once.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

__all__ = ["Backoff", "retry_after"]

MAX_RETRY_AFTER = 30.0
"""The longest `Retry-After` honoured; a server asking for more gets this and is asked again."""


@dataclass(frozen=True)
class Backoff:
    """`attempts` tries in all; before retry n (1, 2, ...) wait d/2 plus a random part of d/2, where
    d = min(cap, base * 2**(n-1)): jittered, yet a budget of attempts always spans a known minimum time."""

    attempts: int
    base: float
    cap: float

    def delay(
        self, retry: int, server_asked: float | None = None, rand: Callable[[], float] = random.random
    ) -> float:
        """Seconds to wait before retry number `retry`; a server's `Retry-After` wins over the backoff."""
        if server_asked is not None:
            return min(max(server_asked, 0.0), MAX_RETRY_AFTER)
        half = min(self.cap, self.base * 2.0 ** (retry - 1)) / 2
        return half + rand() * half


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not headers:
        return None
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    text = str(value).strip()
    if text.isdigit():
        return float(text)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())
