"""The wording shared by the adapters' transport failures."""

from __future__ import annotations

import pytest

from kubectl_capc.domain.errors import connection_failure


@pytest.mark.parametrize(
    "raw",
    [
        "HTTPSConnection(host='127.0.0.1', port=6443): Failed to establish a new connection:\n  refused",
        "VerifiedHTTPSConnection(host='cs', port=443): Failed to establish a new connection: refused",
        "HTTPConnectionPool(host='cs', port=8080): Failed to establish a new connection: refused",
    ],
)
def test_the_cause_is_kept_without_urllib3s_connection_repr(raw: str) -> None:
    assert connection_failure(raw) == "Failed to establish a new connection: refused"


def test_a_cause_without_a_connection_repr_is_only_put_on_one_line() -> None:
    assert connection_failure(TimeoutError("read timed out\n(after 5 s)")) == "read timed out (after 5 s)"
