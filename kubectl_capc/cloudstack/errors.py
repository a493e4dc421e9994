"""CloudStack failures: the errors the adapter raises, which failed requests are sent again, and the
one-line messages that name the object and the fix, never a key or a signature.

The retry policy (`retry_delay`): reads (list*) are sent again after any transient failure (connection
refused, reset or timed out, CloudStack errors 530 and 534, HTTP 502-504, the API rate limit 429), with
backoff and jitter; writes only when CloudStack cannot have acted on them (the connection was never
made, 429). A connection refused before CloudStack ever answered the client fails at once: that is a
wrong api-url or a server that is down, not a blip.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kubectl_capc.cloudstack.library import cs
from kubectl_capc.domain.backoff import Backoff
from kubectl_capc.domain.errors import CapcError, ExitCode, connection_failure, one_line

if TYPE_CHECKING:
    from kubectl_capc.cloudstack.credentials import Credentials

__all__ = [
    "RETRIES",
    "AccountWithoutKeys",
    "CloudStackError",
    "CloudStackRejected",
    "CloudStackUnreachable",
    "answered",
    "error_for",
    "network_failure",
    "rejected",
    "retry_delay",
    "scrub",
]

RETRIES = Backoff(attempts=5, base=1.0, cap=8.0)
"""CloudStack requests: up to 5 tries over roughly 8 to 15 seconds."""
_RETRIED_READ_ERRORS = frozenset({530, 534})
"""CloudStack's INTERNAL_ERROR and RESOURCE_UNAVAILABLE_ERROR: often a passing failure of one request."""
_API_LIMIT_EXCEEDED = 429
_OVERLOADED = frozenset({502, 503, 504})
# The query string of a request URL carries apiKey and signature; it must never reach a message.
_QUERY_RE = re.compile(r"\?[^\s'\")]*")


class CloudStackError(CapcError):
    """CloudStack refused a request, failed a job, could not be reached, or a template did not get ready.

    Shares the exit code of the other remote-API failures.
    """

    exit_code = ExitCode.KUBE_API


class CloudStackUnreachable(CloudStackError):
    """No answer from the API: connection refused or timed out, DNS or TLS failure."""


class CloudStackRejected(CloudStackError):
    """CloudStack refused the API key or the request signature (HTTP 401)."""


class AccountWithoutKeys(CloudStackError):
    """A failure domain's account has no user with API keys, so CAPC cannot act as it."""


def network_failure(err: Exception) -> str:
    """The cause of a requests/urllib3 failure (refused, DNS, TLS, timeout) without the wrappers' noise."""
    reason: object = err.args[0] if err.args else err
    reason = getattr(reason, "reason", None) or reason
    return connection_failure(reason)


def scrub(text: str, credentials: Credentials) -> str:
    """`text` on one line, without query strings and without any literal key of `credentials`."""
    text = _QUERY_RE.sub("", one_line(text))
    for value in (credentials.api_key, credentials.secret_key):
        if value:
            text = text.replace(value, "***")
    return text


# -- classifying a failed request -------------------------------------------------------------------


def rejected(err: Exception) -> bool:
    """Whether CloudStack refused the key or the signature (401): new keys may fix that."""
    return isinstance(err, cs().CloudStackApiException) and _error_code(err) == 401


def answered(err: Exception) -> bool:
    """Whether the failure came with an answer from CloudStack (an API error, an HTTP status)."""
    return isinstance(err, cs().CloudStackException)


def retry_delay(err: Exception, attempt: int, *, write: bool, answered_before: bool) -> float | None:
    """Seconds before sending a failed request again, or None: the retry policy of the module docstring.
    A write is sent again only when CloudStack cannot have acted on it."""
    import requests

    library = cs()
    if attempt >= RETRIES.attempts:
        return None
    if isinstance(err, requests.exceptions.SSLError):
        return None
    if isinstance(err, requests.RequestException):
        arrived = _may_have_arrived(err)
        if (not arrived and not answered_before) or (arrived and write):
            return None
        return RETRIES.delay(attempt)
    if isinstance(err, library.CloudStackApiException):
        code = _error_code(err)
        if code == _API_LIMIT_EXCEEDED or (not write and code in _RETRIED_READ_ERRORS):
            return RETRIES.delay(attempt)
        return None
    if isinstance(err, library.CloudStackException) and not write:
        status = getattr(getattr(err, "response", None), "status_code", None)
        return RETRIES.delay(attempt) if status in _OVERLOADED else None
    return None


def _error_code(err: Any) -> object:
    """A CloudStack API error's `errorcode`, else the HTTP status of its response."""
    error = err.error if isinstance(getattr(err, "error", None), Mapping) else {}
    return error.get("errorcode") or getattr(getattr(err, "response", None), "status_code", None)


def _may_have_arrived(err: Exception) -> bool:
    """Whether a request that failed with a requests error may have reached CloudStack."""
    import requests
    from urllib3.exceptions import NewConnectionError

    if isinstance(err, requests.exceptions.ConnectTimeout):
        return False
    reason = err.args[0] if err.args else None
    return not isinstance(getattr(reason, "reason", reason), NewConnectionError)


# -- wording a failure that stays -------------------------------------------------------------------


def error_for(
    what: str, err: Exception, *, write: bool, credentials: Credentials, request_timeout: float
) -> CloudStackError:
    """The CloudStackError for request `what` failing with `err`, said against `credentials`' endpoint
    and source; an exception that is neither CloudStack's nor the HTTP client's is raised as it is."""
    import requests

    library = cs()
    endpoint, source = credentials.endpoint, credentials.source
    if isinstance(err, library.CloudStackApiException):
        return _api_error(what, err, credentials)
    if isinstance(err, library.CloudStackException):
        response = getattr(err, "response", None)
        if response is not None and getattr(response, "status_code", None) == 408:
            return CloudStackError(
                f"{what}: CloudStack's job did not finish in time at {endpoint}",
                hint="check the job in CloudStack, then re-run the command",
            )
        return CloudStackError(
            f"{what}: unexpected answer from {endpoint}: {scrub(str(err), credentials)}",
            hint=f"check that api-url in {source} is the API URL, ending in /client/api",
        )
    cause = scrub(network_failure(err), credentials)
    if isinstance(err, requests.exceptions.SSLError):
        return CloudStackUnreachable(
            f"{what}: TLS failure talking to {endpoint}: {cause}",
            hint=f"fix the server certificate or the CA configured in {source}",
        )
    if isinstance(err, requests.RequestException) and write and _may_have_arrived(err):
        return CloudStackUnreachable(
            f"{what}: no answer from CloudStack at {endpoint} ({cause}); it may or may not have been done",
            hint="re-run the same command: it looks at what exists in CloudStack before acting again",
        )
    if isinstance(err, requests.Timeout):
        return CloudStackUnreachable(
            f"{what}: CloudStack at {endpoint} did not answer within {request_timeout:g}s",
            hint="the management server is slow or overloaded: re-run the same command later, or "
            "raise --request-timeout",
        )
    if isinstance(err, requests.RequestException):
        return CloudStackUnreachable(
            f"{what}: cannot reach CloudStack at {endpoint}: {cause}",
            hint=f"check api-url in {source} and that the management server is up",
        )
    raise err


def _api_error(what: str, err: Any, credentials: Credentials) -> CloudStackError:
    error = err.error if isinstance(err.error, Mapping) else {}
    code = _error_code(err) or "?"
    text = scrub(str(error.get("errortext") or (err.args[0] if err.args else "no details")), credentials)
    endpoint, source = credentials.endpoint, credentials.source
    if code == 401:
        return CloudStackRejected(
            f"{what}: CloudStack at {endpoint} rejected the credentials from {source} ({text})",
            hint=f"check api-key and secret-key in {source}, and that the key is enabled",
        )
    if code == 432:
        return CloudStackError(
            f"{what}: this CloudStack or this account does not offer the command ({text})",
            hint="use an account whose role allows template management",
        )
    if code == 531:
        return CloudStackError(
            f"{what}: permission denied ({text})", hint=f"use an account allowed to do this in {source}"
        )
    return CloudStackError(f"{what}: CloudStack error {code}: {text}", hint=_hint_for(code))


def _hint_for(code: object) -> str:
    if code == 431:
        return "a parameter was refused: check the values given on the command line"
    if code in (530, 534, 535):
        return "CloudStack failed internally: check the management server log, then re-run"
    return "re-run the command; if it fails again, check the management server log"
