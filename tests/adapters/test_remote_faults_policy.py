"""The retry policies (one per adapter), the backoff they share, Ctrl-C deferred during writes, and the
test-only stop points, checked without a test bed (the CloudStack side against the in-process double)."""

from __future__ import annotations

import os
import signal
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

from kubectl_capc.cloudstack import errors as cloudstack_errors
from kubectl_capc.cloudstack.client import CloudStackClient
from kubectl_capc.cloudstack.credentials import Credentials
from kubectl_capc.cloudstack.errors import CloudStackError, CloudStackRejected
from kubectl_capc.domain import interrupts, testpoints
from kubectl_capc.domain.backoff import MAX_RETRY_AFTER, Backoff, retry_after
from kubectl_capc.kube.retries import RETRIES, retry_delay
from tests.csdouble.faults import parse_faults
from tests.csdouble.server import CloudStackDouble

# -- backoff ---------------------------------------------------------------------------------------------


def test_backoff_grows_with_jitter_up_to_its_cap() -> None:
    backoff = Backoff(attempts=8, base=0.5, cap=4.0)
    for retry, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0), (9, 4.0)]:
        assert backoff.delay(retry, rand=lambda: 0.0) == ceiling / 2
        assert backoff.delay(retry, rand=lambda: 1.0) == ceiling
    spread = {round(backoff.delay(3), 6) for _ in range(50)}
    assert len(spread) > 10 and all(1.0 <= d <= 2.0 for d in spread)  # jittered, within [d/2, d]


def test_a_servers_retry_after_wins_and_is_capped() -> None:
    backoff = Backoff(attempts=3, base=10, cap=10)
    assert backoff.delay(1, server_asked=2.0) == 2.0
    assert backoff.delay(1, server_asked=3600) == MAX_RETRY_AFTER
    assert retry_after({"Retry-After": "7"}) == 7.0
    assert retry_after({"retry-after": "junk"}) is None
    assert retry_after({}) is None and retry_after(None) is None
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=20), usegmt=True)
    assert 15 < (retry_after({"Retry-After": later}) or 0) <= 20


# -- the Kubernetes policy -------------------------------------------------------------------------------


def _refused() -> Exception:
    return MaxRetryError(None, "/apis", NewConnectionError(None, "Connection refused"))  # type: ignore[arg-type]


def _reset() -> Exception:
    return ProtocolError("Connection aborted.", ConnectionResetError(104, "Connection reset by peer"))


def _timed_out() -> Exception:
    return ReadTimeoutError(None, "/apis", "Read timed out.")  # type: ignore[arg-type]


def _connect_timeout() -> Exception:
    return MaxRetryError(None, "/apis", ConnectTimeoutError(None, "timed out"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("method", "answer", "retried"),
    [
        ("GET", {"status": 429}, True),
        ("GET", {"status": 503}, True),
        ("GET", {"status": 502}, True),
        ("GET", {"status": 500}, False),  # an internal error is the answer, not a blip
        ("GET", {"status": 404}, False),
        ("GET", {"status": 409}, False),
        ("GET", {"error": _refused()}, True),
        ("GET", {"error": _reset()}, True),
        ("GET", {"error": _timed_out()}, False),  # --request-timeout bounds it
        ("PATCH", {"status": 429}, True),  # refused before it was handled
        ("PATCH", {"status": 503, "headers": {"Retry-After": "1"}}, True),  # the server asks for it
        ("PATCH", {"status": 503}, False),  # may have been applied: the caller reads again first
        ("POST", {"status": 500, "headers": {"Retry-After": "2"}}, True),
        ("POST", {"error": _refused()}, True),  # never sent
        ("POST", {"error": _connect_timeout()}, True),
        ("PATCH", {"error": _reset()}, False),  # sent: may have been applied
        ("DELETE", {"status": 504}, False),
        ("PATCH", {"status": 409}, False),
        ("GET", {"status": 401}, False),
    ],
)
def test_kubernetes_retry_policy(method: str, answer: dict[str, Any], retried: bool) -> None:
    assert (retry_delay(method, 1, **answer) is not None) is retried


def test_kubernetes_retries_honour_retry_after_and_stop_after_the_budget() -> None:
    assert retry_delay("GET", 1, status=429, headers={"Retry-After": "3"}) == 3.0
    assert retry_delay("GET", RETRIES.attempts - 1, status=503) is not None
    assert retry_delay("GET", RETRIES.attempts, status=503) is None


def test_a_refused_connection_before_any_answer_is_not_retried() -> None:
    assert retry_delay("GET", 1, error=_refused(), answered_before=False) is None
    assert retry_delay("GET", 1, error=_refused(), answered_before=True) is not None


# -- the CloudStack policy, against the double -----------------------------------------------------------


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cloudstack_errors, "RETRIES", Backoff(attempts=4, base=0.01, cap=0.01))


def _client(double: CloudStackDouble, api_key: str | None = None) -> CloudStackClient:
    credentials = Credentials(
        double.endpoint, api_key or double.api_key, double.secret_key, source="Secret ns/keys"
    )
    return CloudStackClient(credentials, poll_interval=0.01, job_timeout=10)


def _faults(double: CloudStackDouble, faults: dict[str, Any]) -> None:
    with double.state.lock:
        double.state.faults = parse_faults(faults, double.state.zone_id)


def _calls(double: CloudStackDouble, command: str) -> int:
    with double.state.lock:
        return sum(1 for call in double.state.calls if call.command == command)


@pytest.mark.usefixtures("fast_retries")
def test_cloudstack_reads_are_retried_and_writes_are_not(cloudstack: CloudStackDouble) -> None:
    client = _client(cloudstack)
    _faults(cloudstack, {"errors": [{"command": "listZones", "times": 3, "errorcode": 530}]})
    assert client.zones()  # three 530s, then an answer
    _faults(cloudstack, {"errors": [{"command": "deleteTemplate", "times": 1, "errorcode": 530}]})
    with pytest.raises(CloudStackError, match="delete template t1: CloudStack error 530"):
        client.delete_template("t1")
    assert _calls(cloudstack, "deleteTemplate") == 1
    _faults(cloudstack, {"errors": [{"command": "deleteTemplate", "times": 1, "errorcode": 429}]})
    with pytest.raises(CloudStackError, match="CloudStack error 431"):  # the API limit is retried, then 431
        client.delete_template("no-such-template")
    assert _calls(cloudstack, "deleteTemplate") == 3


@pytest.mark.usefixtures("fast_retries")
def test_a_401_reloads_the_credentials_once(cloudstack: CloudStackDouble) -> None:
    client = _client(cloudstack, api_key="rotated-away")
    in_secret = Credentials(
        cloudstack.endpoint, cloudstack.api_key, cloudstack.secret_key, source="Secret ns/keys"
    )
    loads: list[str] = []

    def reload() -> Credentials:
        loads.append("secret read")
        return in_secret

    client.reload = reload
    assert client.zones()  # rejected, then the keys from the Secret work
    assert loads == ["secret read"]
    cloudstack.rotate_keys()  # now the Secret holds stale keys too
    with pytest.raises(CloudStackRejected, match="rejected the credentials from Secret ns/keys"):
        client.zones()
    assert loads == ["secret read", "secret read"]


def test_cloudstack_never_answering_fails_at_once(tmp_path: Path) -> None:
    client = CloudStackClient(Credentials("http://127.0.0.1:9/client/api", "k", "s"), request_timeout=2)
    started = time.monotonic()
    with pytest.raises(CloudStackError, match="cannot reach CloudStack"):
        client.zones()
    assert time.monotonic() - started < 1


# -- Ctrl-C ----------------------------------------------------------------------------------------------


def test_ctrl_c_during_a_write_waits_for_it_and_then_stops() -> None:
    finished = []
    with (
        pytest.raises(interrupts.StoppedAfterWrite) as stopped,
        interrupts.writing("patch KubeadmControlPlane/c1"),
    ):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        finished.append("the write")
    assert finished == ["the write"]
    assert stopped.value.write == "patch KubeadmControlPlane/c1"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_during_a_write_that_starts_a_job_says_the_job_goes_on() -> None:
    with (
        pytest.raises(interrupts.StoppedAfterWrite) as stopped,
        interrupts.writing("copy template t1 to zone zone2", "CloudStack goes on copying"),
    ):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
    assert stopped.value.done == "copy template t1 to zone zone2 was sent (CloudStack goes on copying)"
    plain = interrupts.StoppedAfterWrite("patch KubeadmControlPlane/c1")
    assert plain.done == "patch KubeadmControlPlane/c1 had finished"


def test_a_second_ctrl_c_stops_a_write_at_once() -> None:
    with pytest.raises(KeyboardInterrupt) as stopped, interrupts.writing("copy template t1"):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)
        pytest.fail("not stopped")
    assert not isinstance(stopped.value, interrupts.StoppedAfterWrite)


def test_ctrl_c_after_a_write_stops_at_once() -> None:
    with interrupts.writing("patch MachineDeployment/c1-md-0"):
        pass  # the write ends without a Ctrl-C: from here on, nothing defers one
    with pytest.raises(KeyboardInterrupt) as stopped:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)
        pytest.fail("not stopped")
    assert not isinstance(stopped.value, interrupts.StoppedAfterWrite)


# -- the test-only stop points ---------------------------------------------------------------------------


def test_stop_points_are_inert_without_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(testpoints.POINTS_ENV, raising=False)
    monkeypatch.delenv(testpoints.SIGNAL_ENV, raising=False)
    monkeypatch.setattr(os, "kill", lambda *_: pytest.fail("signalled"))
    testpoints.reached("v1.29.3 start Patch KubeadmControlPlane/c1")


def test_a_stop_point_signals_once_and_records_the_points(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sent: list[int] = []
    trace = tmp_path / "points"
    monkeypatch.setattr(os, "kill", lambda pid, signum: sent.append(signum))
    monkeypatch.setattr(testpoints, "_fired", set())
    monkeypatch.setenv(testpoints.POINTS_ENV, str(trace))
    monkeypatch.setenv(testpoints.SIGNAL_ENV, "SIGUSR1@writing tag template *")
    for point in ("writing register template x", "writing tag template 1234", "writing tag template 1234"):
        testpoints.reached(point)
    assert sent == [signal.SIGUSR1]
    assert trace.read_text().splitlines() == [
        "writing register template x",
        "SIGUSR1@writing tag template 1234",
        "writing tag template 1234",
    ]
