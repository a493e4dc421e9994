"""The cluster's upgrade lock: a coordination.k8s.io/v1 Lease held while a command writes and waits.

`image-upgrade`, `rollback` and `cleanup` hold the Lease `kubectl-capc-upgrade-<cluster>` in the
cluster's namespace (`ClusterLease.holding`): it is created, or taken over when it expired or its
holder is a process of this host that no longer runs, and renewed from a background thread three times
per lease duration. Every write carries the resourceVersion last seen, so of two runs that try to take
it at once exactly one wins; the other reads it again and is refused (`LockedError`, exit 7) while the
holder renews it. `--break-lock` takes over a live one, for a holder known to be dead.

At the end the Lease is deleted, with the resourceVersion as a precondition so that a Lease someone
else took meanwhile stays, also after a failure and after Ctrl-C. When the renewal finds the Lease
taken by another holder (or deleted, or not renewable before it expires), the run is stopped at once:
the main thread gets SIGINT as with Ctrl-C (a write under way finishes first), and `holding` turns
that into `LeaseLost`, so that the wait in progress ends with an error that names the new holder.

Lease times are the client's clock, as in client-go's leader election; clocks of the machines that run
upgrades are assumed to be within seconds of each other.

The kubernetes library is imported inside the methods: importing it costs about half a second.
"""

from __future__ import annotations

import _thread
import getpass
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from kubectl_capc.domain.errors import KubeApiError, LockedError, one_line
from kubectl_capc.domain.lease import (
    LEASE_DURATION_SECONDS,
    LeaseDecision,
    LeaseRecord,
    LeaseVerdict,
    decide,
    holder_identity,
    holder_process,
    lease_name,
    renew_interval,
)
from kubectl_capc.kube.errors import forbidden_error, server_message, unreachable_error
from kubectl_capc.kube.retries import request_was_sent

__all__ = [
    "BREAK_LOCK_HINT",
    "ClusterLease",
    "LeaseLost",
    "StoredLease",
    "my_identity",
    "process_alive",
]

_log = logging.getLogger(__name__)

BREAK_LOCK_HINT = (
    "wait until that run has finished; if its process is known to be dead, re-run with --break-lock"
)
_TRIES = 3
"""Reads and writes of one acquisition: each lost race (409, a vanished Lease) reads again."""


class LeaseLost(LockedError):
    """The Lease was taken by someone else (or deleted, or could not be renewed in time) during a run."""


class _Raced(Exception):
    """The Lease changed between the read and the write (409 or 404), or a write may have happened."""


@dataclass(frozen=True)
class StoredLease:
    """The Lease as stored: its spec, and the resourceVersion and uid that guard the next write."""

    record: LeaseRecord
    resource_version: str
    uid: str
    transitions: int = 0


def my_identity() -> str:
    """`user@host/pid` of this process."""
    try:
        user = getpass.getuser()
    except Exception:  # no USER variables and no passwd entry (a container): the uid says who
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return holder_identity(user, socket.gethostname(), os.getpid())


def process_alive(pid: int) -> bool:
    """Whether a process `pid` exists on this host (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _interrupt_main_thread() -> None:
    """Ctrl-C for the main thread: a real SIGINT where there are signals for threads, so that a blocking
    read (a watch stream, a sleep) returns at once; `writing()` defers it until a write is done."""
    if hasattr(signal, "pthread_kill"):
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
    else:
        _thread.interrupt_main()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _micro_time(moment: datetime) -> str:
    """A MicroTime as the API server stores it: RFC 3339 in UTC with microseconds."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=timezone.utc)


class ClusterLease:
    """The upgrade lock of one cluster: read, take, renew and release its Lease."""

    def __init__(
        self,
        api_client: Any,
        namespace: str,
        cluster: str,
        *,
        identity: str | None = None,
        duration_seconds: int = LEASE_DURATION_SECONDS,
        clock: Callable[[], datetime] = _now,
        alive: Callable[[int], bool] = process_alive,
        host: str | None = None,
    ) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self.cluster = cluster
        self.name = lease_name(cluster)
        self.identity = identity or my_identity()
        self.duration_seconds = duration_seconds
        self.clock = clock
        self.alive = alive
        self.host = host if host is not None else socket.gethostname()
        self._stored: StoredLease | None = None
        self._renewed_at: datetime | None = None
        self._lost: LeaseLost | None = None
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._interrupt_main = False

    @property
    def subject(self) -> str:
        return f"Lease {self.namespace}/{self.name}"

    @property
    def lost(self) -> LeaseLost | None:
        """Why the Lease is no longer this run's, once the renewal found out; else None."""
        return self._lost

    @property
    def held(self) -> StoredLease | None:
        """The Lease as this run last wrote it, while it holds it."""
        return self._stored

    # -- deciding ---------------------------------------------------------------------------------

    def decision(self, found: StoredLease | None) -> LeaseDecision:
        """What to do with the Lease found: `domain.lease.decide`, and a holder that is a process of
        this host that no longer runs counts as expired."""
        record = found.record if found is not None else None
        decision = decide(record, self.identity, self.clock())
        if decision.verdict is not LeaseVerdict.HELD or record is None:
            return decision
        process = holder_process(record.holder)
        if process is None:
            return decision
        _, host, pid = process
        if host == self.host and pid != os.getpid() and not self.alive(pid):
            since = record.acquired or record.renewed
            since_text = f" since {since.isoformat()}" if since else ""
            return LeaseDecision(
                LeaseVerdict.EXPIRED,
                f"the upgrade lock held by {record.holder}{since_text}: that process no longer runs on "
                "this host",
            )
        return decision

    def check(self) -> LeaseDecision:
        """Read only (`--dry-run`): what a run would find."""
        return self.decision(self.read())

    def refusal(self, decision: LeaseDecision) -> LockedError:
        return LockedError(
            f"cluster {self.namespace}/{self.cluster}: {decision.message} ({self.subject})",
            hint=BREAK_LOCK_HINT,
        )

    # -- taking and giving back -------------------------------------------------------------------

    def acquire(self, *, break_lock: bool = False) -> str:
        """Take the Lease; returns a note when it was taken over from another holder ("" otherwise).
        Raises `LockedError` when a live holder has it and `break_lock` is not set."""
        for _ in range(_TRIES):
            found = self.read()
            decision = self.decision(found)
            try:
                if found is None:
                    self._stored = self._create()
                    self._renewed_at = self.clock()
                    return ""
                if decision.verdict is LeaseVerdict.HELD and not break_lock:
                    raise self.refusal(decision)
                self._stored = self._take(found)
                self._renewed_at = self.clock()
            except _Raced:
                continue
            if decision.verdict is LeaseVerdict.HELD:
                return f"broke the upgrade lock: {decision.message.split(': ', 1)[-1]} (--break-lock)"
            if decision.verdict is LeaseVerdict.EXPIRED:
                return f"took over {decision.message}"
            return ""
        raise LockedError(
            f"cluster {self.namespace}/{self.cluster}: {self.subject} changed at every attempt to take it",
            hint="another run is taking it at the same time; re-run the command in a moment",
        )

    def release(self) -> None:
        """Delete the Lease if it is still the one this run wrote; a Lease taken meanwhile stays."""
        stored, self._stored = self._stored, None
        if stored is None or self._lost is not None:
            return
        from kubernetes import client

        options = client.V1DeleteOptions(
            preconditions=client.V1Preconditions(resource_version=stored.resource_version, uid=stored.uid)
        )
        try:
            self._request(
                f"delete {self.subject}",
                lambda: self._api().delete_namespaced_lease(self.name, self.namespace, body=options),
                write=True,
            )
        except _Raced:
            _log.info("%s changed or vanished before it was released: left as it is", self.subject)

    def renew(self) -> None:
        """Write a new renewTime; raises `LeaseLost` when the Lease is no longer this run's."""
        stored = self._stored
        if stored is None:
            raise LeaseLost(f"{self.subject} is not held", hint="re-run the same command")
        for _ in range(_TRIES):
            try:
                self._stored = self._write_spec(stored, stored.record.acquired, transitions=None)
                self._renewed_at = self.clock()
                return
            except _Raced:
                found = self.read()
                if found is None or found.record.holder != self.identity:
                    raise self._lost_to(found) from None
                stored = found  # an earlier renewal whose answer was lost did happen
        raise self._lost_to(self.read())

    @contextmanager
    def holding(
        self, *, break_lock: bool = False, note: Callable[[str], None] | None = None
    ) -> Iterator[None]:
        """Hold the Lease for the body: take it, renew it in the background, release it however the
        body ends. A Lease lost meanwhile interrupts the body and is raised as `LeaseLost`."""
        message = self.acquire(break_lock=break_lock)
        if message and note is not None:
            note(message)
        self._start_renewing()
        finished = False
        try:
            yield
            finished = True
        except KeyboardInterrupt:
            if self._lost is not None:
                raise self._lost from None
            raise
        finally:
            self._stop_renewing()
            try:
                self.release()
            except KubeApiError as err:
                if finished:
                    raise
                _log.warning("could not release %s: %s", self.subject, err)
                if note is not None:
                    note(f"could not release {self.subject} ({err.message}); it expires unless renewed")

    # -- renewing in the background ---------------------------------------------------------------

    def _start_renewing(self) -> None:
        self._stop.clear()
        self._interrupt_main = threading.current_thread() is threading.main_thread()
        self._thread = threading.Thread(target=self._renew_loop, name=f"renew {self.name}", daemon=True)
        self._thread.start()

    def _stop_renewing(self) -> None:
        try:
            with self._guard:
                self._interrupt_main = False
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
                self._thread = None
        except KeyboardInterrupt:
            # The interruption the renewal sent when it lost the Lease, arriving late: already known.
            if self._lost is None:
                raise

    def _renew_loop(self) -> None:
        interval = renew_interval(self.duration_seconds)
        while not self._stop.wait(interval):
            try:
                self.renew()
            except LeaseLost as err:
                self._lose(err)
                return
            except Exception as err:  # a passing failure: try again, until the Lease would expire
                renewed = self._renewed_at or self.clock()
                expires = renewed + timedelta(seconds=self.duration_seconds)
                if self.clock() + timedelta(seconds=interval) >= expires:
                    self._lose(
                        LeaseLost(
                            f"cluster {self.namespace}/{self.cluster}: could not renew {self.subject} before "
                            f"it expires at {expires.isoformat()}: {one_line(str(err))}",
                            hint="stopped so that no other run writes at the same time; re-run the same "
                            "command to continue once the API server answers",
                        )
                    )
                    return
                _log.warning("renewing %s failed, trying again: %s", self.subject, one_line(str(err)))

    def _lose(self, err: LeaseLost) -> None:
        with self._guard:
            self._lost = err
            self._stored = None
            if self._interrupt_main:
                _log.info("%s: %s", self.subject, err)
                _interrupt_main_thread()

    def _lost_to(self, found: StoredLease | None) -> LeaseLost:
        if found is None:
            what = "was deleted by someone else"
        else:
            since = found.record.acquired or found.record.renewed
            since_text = f" since {since.isoformat()}" if since else ""
            what = f"was taken by {found.record.holder or 'no one'}{since_text}"
        return LeaseLost(
            f"cluster {self.namespace}/{self.cluster}: the upgrade lock ({self.subject}) {what} "
            "during this run",
            hint="stopped so that two runs do not change the cluster at once; check the other run, then "
            "re-run the same command to continue",
        )

    # -- requests ---------------------------------------------------------------------------------

    def _api(self) -> Any:
        from kubernetes import client

        return client.CoordinationV1Api(self.api_client)

    def read(self) -> StoredLease | None:
        """The Lease as stored, or None when there is none."""
        try:
            lease = self._request(
                f"read {self.subject}", lambda: self._api().read_namespaced_lease(self.name, self.namespace)
            )
        except _Raced:
            return None
        return _stored(lease)

    def _create(self) -> StoredLease:
        now = _micro_time(self.clock())
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": {"app.kubernetes.io/managed-by": "kubectl-capc"},
            },
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.duration_seconds,
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            },
        }
        created = self._request(
            f"create {self.subject}",
            lambda: self._api().create_namespaced_lease(self.namespace, body),
            write=True,
        )
        return _stored(created)

    def _take(self, found: StoredLease) -> StoredLease:
        """Take the Lease `found` (another holder's, expired or broken) over: a new acquireTime."""
        return self._write_spec(found, self.clock(), transitions=1)

    def _write_spec(
        self, base: StoredLease, acquired: datetime | None, *, transitions: int | None
    ) -> StoredLease:
        """Update the Lease read or written as `base` (guarded by its resourceVersion) to be held by this
        run, renewed now; `transitions` adds to leaseTransitions (None: a renewal, kept as is)."""
        now = self.clock()
        spec: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.duration_seconds,
            "acquireTime": _micro_time(acquired or now),
            "renewTime": _micro_time(now),
            "leaseTransitions": base.transitions + (transitions or 0),
        }
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "resourceVersion": base.resource_version,
                "labels": {"app.kubernetes.io/managed-by": "kubectl-capc"},
            },
            "spec": spec,
        }
        written = self._request(
            f"update {self.subject}",
            lambda: self._api().replace_namespaced_lease(self.name, self.namespace, body),
            write=True,
        )
        return _stored(written)

    def _request(self, what: str, request: Callable[[], Any], *, write: bool = False) -> Any:
        """One request; 404 and 409 (and a write that may have happened) are `_Raced`: read again."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return request()
        except ApiException as err:
            if err.status in (404, 409):
                raise _Raced from None
            denied = forbidden_error(what, err)
            if denied is not None:
                raise denied from None
            raise KubeApiError(
                f"{what}: HTTP {err.status}: {server_message(err)}",
                hint="re-run the same command; the lock is read again before anything is written",
            ) from None
        except (HTTPError, OSError) as err:
            if write and request_was_sent(err):
                raise _Raced from None
            raise unreachable_error(what, err) from None


def _stored(lease: Any) -> StoredLease:
    """The typed client's V1Lease as a `StoredLease`."""
    spec = lease.spec
    record = LeaseRecord(
        holder=str(spec.holder_identity or "") if spec else "",
        acquired=_aware(spec.acquire_time) if spec else None,
        renewed=_aware(spec.renew_time) if spec else None,
        duration_seconds=spec.lease_duration_seconds if spec else None,
    )
    return StoredLease(
        record,
        str(lease.metadata.resource_version or ""),
        str(lease.metadata.uid or ""),
        int(spec.lease_transitions or 0) if spec else 0,
    )
