"""The policy every Kubernetes request follows, for the plugin's transport and for the writes alike.

`retry_delay` is the one place that decides which failed requests are sent again: reads after any
transient failure, writes only when the server cannot have acted on them (see its docstring).
`transport_failure` words a failure that never got an answer.
"""

from __future__ import annotations

from typing import Any

from kubectl_capc.domain.backoff import Backoff, retry_after
from kubectl_capc.domain.errors import connection_failure

__all__ = ["RETRIES", "certificate_refused", "request_was_sent", "retry_delay", "transport_failure"]

RETRIES = Backoff(attempts=8, base=0.5, cap=8.0)
"""Kubernetes requests: up to 8 tries, spread over roughly 16 to 32 seconds, to ride out an API server
restart or a short overload."""
_READ_METHODS = frozenset({"GET", "HEAD"})
_OVERLOADED = frozenset({502, 503, 504})


def retry_delay(
    method: str,
    attempt: int,
    *,
    status: int | None = None,
    headers: Any = None,
    error: BaseException | None = None,
    answered_before: bool = True,
) -> float | None:
    """Seconds to wait before sending a failed request again, or None to give up: the Kubernetes retry
    policy, for the answer `status` (with its `headers`) or the transport `error` of try `attempt`.

    - A read (GET, and so LIST and WATCH) is retried after a transient failure: a connection refused or
      reset, 429, or 502/503/504. A request that ran into `--request-timeout` is not: the user bounded
      how long it may take.
    - A write is retried only when the server cannot have acted on it: the connection was never made,
      or the server refused it up front, with 429 (API Priority and Fairness rejects before handling) or
      any 5xx carrying `Retry-After`, its explicit request to try again, as client-go honours it. After
      an ambiguous failure (a reset or timeout once the request was sent) the caller must re-check
      before writing again.
    - A connection refused before the server has ever answered this process fails at once: that is a
      wrong address or a cluster that is down, not a blip.
    - A server certificate that fails verification (unknown CA, wrong host name, expired) fails at once,
      whatever the method: asking again gets the same certificate.
    `Retry-After` sets the delay when given; otherwise `RETRIES` backs off with jitter.
    """
    if attempt >= RETRIES.attempts:
        return None
    read = method.upper() in _READ_METHODS
    if error is not None:
        if _timed_out(error) or certificate_refused(error):
            return None
        sent = request_was_sent(error)
        if (not sent and not answered_before) or (sent and not read):
            return None
        return RETRIES.delay(attempt)
    asked = retry_after(headers)
    if status == 429 or (status is not None and status >= 500 and asked is not None):
        return RETRIES.delay(attempt, asked)
    if read and status in _OVERLOADED:
        return RETRIES.delay(attempt)
    return None


def _timed_out(error: BaseException) -> bool:
    from urllib3.exceptions import ReadTimeoutError

    return isinstance(getattr(error, "reason", None) or error, ReadTimeoutError)


def request_was_sent(error: BaseException) -> bool:
    """Whether a request that failed with transport `error` may have reached the server: anything but a
    connection never made (refused, unresolvable, connect timeout, server certificate refused)."""
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

    reason = getattr(error, "reason", None) or error
    if isinstance(reason, (NewConnectionError, ConnectTimeoutError)):
        return False
    return not certificate_refused(error)


def certificate_refused(error: BaseException) -> bool:
    """Whether transport `error` is the server's certificate failing verification (untrusted CA, host
    name mismatch, expired), found in urllib3's wrappers (`MaxRetryError` around `SSLError` around
    `ssl.SSLCertVerificationError`). Other TLS failures, such as a handshake cut short while the server
    restarts, are not: those may pass."""
    import ssl

    pending: list[object] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        seen.add(id(current))
        pending.extend((getattr(current, "reason", None), current.__cause__, current.__context__))
        pending.extend(current.args)
    return False


def transport_failure(err: BaseException) -> str:
    """The cause of a failed request (refused, timed out, TLS) in one line, without urllib3's wrappers."""
    # urllib3 wraps the cause (refused, timed out, TLS) in MaxRetryError and prefixes it with the repr
    # of its connection objects; keep just the cause.
    reason = getattr(err, "reason", None) or err
    return connection_failure(reason)
