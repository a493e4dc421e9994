"""The upgrade lock's adapter against an in-memory Lease store that behaves like the API server for one
Lease: resourceVersion guards on update and delete (409), 404 for a missing one, 409 on a second create.
No servers."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubectl_capc.domain.errors import ExitCode, KubeApiError, LockedError
from kubectl_capc.domain.lease import LeaseVerdict
from kubectl_capc.kube.lease import ClusterLease, LeaseLost

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)
ME = "ann@laptop/42"


def _time(text: str | None) -> datetime | None:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc) if text else None


class Store:
    """One namespace's Leases, as the API server keeps them."""

    def __init__(self) -> None:
        self.leases: dict[str, dict[str, Any]] = {}
        self.version = 100
        self.requests: list[str] = []
        self.forbid: set[str] = set()
        self.lock = threading.Lock()

    def put(self, name: str, holder: str, renewed: datetime, *, acquired: datetime | None = None) -> None:
        self.version += 1
        self.leases[name] = {
            "metadata": {"name": name, "resourceVersion": str(self.version), "uid": f"uid-{self.version}"},
            "spec": {
                "holderIdentity": holder,
                "leaseDurationSeconds": 60,
                "acquireTime": (acquired or renewed).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "leaseTransitions": 0,
            },
        }

    def typed(self, name: str) -> client.V1Lease:
        stored = self.leases[name]
        spec, metadata = stored["spec"], stored["metadata"]
        return client.V1Lease(
            metadata=client.V1ObjectMeta(
                name=name, resource_version=metadata["resourceVersion"], uid=metadata["uid"]
            ),
            spec=client.V1LeaseSpec(
                holder_identity=spec.get("holderIdentity"),
                lease_duration_seconds=spec.get("leaseDurationSeconds"),
                acquire_time=_time(spec.get("acquireTime")),
                renew_time=_time(spec.get("renewTime")),
                lease_transitions=spec.get("leaseTransitions"),
            ),
        )

    def _check(self, verb: str) -> None:
        self.requests.append(verb)
        if verb in self.forbid:
            raise ApiException(status=403, reason="Forbidden")

    # the CoordinationV1Api methods the adapter calls

    def read_namespaced_lease(self, name: str, namespace: str) -> client.V1Lease:
        with self.lock:
            self._check("get")
            if name not in self.leases:
                raise ApiException(status=404, reason="Not Found")
            return self.typed(name)

    def create_namespaced_lease(self, namespace: str, body: dict[str, Any]) -> client.V1Lease:
        with self.lock:
            self._check("create")
            name = body["metadata"]["name"]
            if name in self.leases:
                raise ApiException(status=409, reason="AlreadyExists")
            self.version += 1
            self.leases[name] = {
                "metadata": {**body["metadata"], "resourceVersion": str(self.version), "uid": "uid-new"},
                "spec": dict(body["spec"]),
            }
            return self.typed(name)

    def replace_namespaced_lease(self, name: str, namespace: str, body: dict[str, Any]) -> client.V1Lease:
        with self.lock:
            self._check("update")
            stored = self.leases.get(name)
            if stored is None:
                raise ApiException(status=404, reason="Not Found")
            if body["metadata"]["resourceVersion"] != stored["metadata"]["resourceVersion"]:
                raise ApiException(status=409, reason="Conflict")
            self.version += 1
            stored["metadata"]["resourceVersion"] = str(self.version)
            stored["spec"] = dict(body["spec"])
            return self.typed(name)

    def delete_namespaced_lease(self, name: str, namespace: str, body: Any) -> None:
        with self.lock:
            self._check("delete")
            stored = self.leases.get(name)
            if stored is None:
                raise ApiException(status=404, reason="Not Found")
            if body.preconditions.resource_version != stored["metadata"]["resourceVersion"]:
                raise ApiException(status=409, reason="Conflict")
            del self.leases[name]


NAME = "kubectl-capc-upgrade-c1"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def lease_on(
    store: Store, *, identity: str = ME, alive: bool = True, clock: Clock | None = None, duration: int = 60
) -> ClusterLease:
    lease = ClusterLease(
        object(), "ns", "c1", identity=identity, clock=clock or Clock(), alive=lambda pid: alive,
        host="laptop", duration_seconds=duration,
    )  # fmt: skip
    lease._api = lambda: store  # type: ignore[method-assign]
    return lease


def holder(store: Store) -> str | None:
    stored = store.leases.get(NAME)
    return None if stored is None else str(stored["spec"]["holderIdentity"])


def test_a_free_lock_is_created_held_and_deleted_at_the_end() -> None:
    store = Store()
    lease = lease_on(store)
    with lease.holding():
        assert holder(store) == ME
        assert store.leases[NAME]["spec"]["leaseDurationSeconds"] == 60
    assert NAME not in store.leases
    assert store.requests == ["get", "create", "delete"]


def test_a_live_holder_refuses_with_exit_7_naming_holder_and_since_and_writes_nothing() -> None:
    store = Store()
    store.put(NAME, "bob@host/7", NOW - timedelta(seconds=10), acquired=NOW - timedelta(hours=1))
    with pytest.raises(LockedError) as refused:
        lease_on(store).acquire()
    text = str(refused.value)
    assert refused.value.exit_code is ExitCode.LOCKED == 7
    assert "locked by bob@host/7 since 2026-12-06T11:00:00+00:00" in text
    assert "cluster ns/c1" in text and "--break-lock" in text and "\n" not in text
    assert store.requests == ["get"]
    assert holder(store) == "bob@host/7"


def test_an_expired_lock_is_taken_over_with_a_note() -> None:
    store = Store()
    store.put(NAME, "bob@host/7", NOW - timedelta(seconds=61))
    notes: list[str] = []
    with lease_on(store).holding(note=notes.append):
        assert holder(store) == ME
        assert store.leases[NAME]["spec"]["leaseTransitions"] == 1
    assert notes and notes[0].startswith("took over the upgrade lock held by bob@host/7")
    assert NAME not in store.leases


def test_a_lock_of_a_process_of_this_host_that_is_gone_is_taken_over() -> None:
    store = Store()
    store.put(NAME, "ann@laptop/999999", NOW)
    assert lease_on(store, alive=False).check().verdict is LeaseVerdict.EXPIRED
    assert "no longer runs on this host" in lease_on(store, alive=False).acquire()
    assert holder(store) == ME


def test_a_lock_of_a_live_process_of_this_host_or_of_a_gone_pid_elsewhere_is_held() -> None:
    store = Store()
    store.put(NAME, "ann@laptop/999999", NOW)
    assert lease_on(store, alive=True).check().verdict is LeaseVerdict.HELD
    store.put(NAME, "ann@other-host/999999", NOW)
    assert lease_on(store, alive=False).check().verdict is LeaseVerdict.HELD


def test_break_lock_takes_a_live_one() -> None:
    store = Store()
    store.put(NAME, "bob@host/7", NOW)
    note = lease_on(store).acquire(break_lock=True)
    assert "bob@host/7" in note and "--break-lock" in note
    assert holder(store) == ME


def test_losing_the_race_to_create_reads_again_and_is_refused() -> None:
    store = Store()
    real_create = store.create_namespaced_lease

    def someone_first(namespace: str, body: dict[str, Any]) -> client.V1Lease:
        store.put(NAME, "bob@host/7", NOW)  # created by another run between our read and our create
        return real_create(namespace, body)

    store.create_namespaced_lease = someone_first  # type: ignore[method-assign]
    with pytest.raises(LockedError, match="locked by bob@host/7"):
        lease_on(store).acquire()
    assert store.requests == ["get", "create", "get"]


def test_renewal_writes_a_new_renew_time_guarded_by_the_resource_version() -> None:
    store, clock = Store(), Clock()
    lease = lease_on(store, clock=clock)
    lease.acquire()
    clock.now = NOW + timedelta(seconds=20)
    lease.renew()
    assert store.leases[NAME]["spec"]["renewTime"] == "2026-12-06T12:00:20.000000Z"
    assert store.leases[NAME]["spec"]["acquireTime"] == "2026-12-06T12:00:00.000000Z"
    store.put(NAME, "bob@host/7", NOW)  # taken (e.g. with --break-lock) meanwhile
    with pytest.raises(LeaseLost, match="taken by bob@host/7"):
        lease.renew()


def test_release_leaves_a_lock_someone_else_took() -> None:
    store = Store()
    lease = lease_on(store)
    lease.acquire()
    store.put(NAME, "bob@host/7", NOW)
    lease.release()
    assert holder(store) == "bob@host/7"


def test_the_lock_is_released_after_a_failure_and_after_ctrl_c() -> None:
    store = Store()
    with pytest.raises(RuntimeError), lease_on(store).holding():
        raise RuntimeError("the upgrade failed")
    assert NAME not in store.leases
    with pytest.raises(KeyboardInterrupt), lease_on(store).holding():
        raise KeyboardInterrupt
    assert NAME not in store.leases


def test_a_release_that_is_refused_fails_a_run_that_succeeded_but_not_one_that_failed() -> None:
    store = Store()
    store.forbid.add("delete")
    with pytest.raises(KubeApiError), lease_on(store).holding():
        pass
    store.leases.clear()
    notes: list[str] = []
    with pytest.raises(RuntimeError, match="first"), lease_on(store).holding(note=notes.append):
        raise RuntimeError("first")
    assert notes and "could not release Lease ns/kubectl-capc-upgrade-c1" in notes[0]


def test_a_lock_lost_during_a_wait_ends_the_wait_at_once_with_the_new_holder() -> None:
    store = Store()
    lease = lease_on(store, duration=3)  # renewed every second
    started = time.monotonic()
    with pytest.raises(LeaseLost) as lost, lease.holding():
        store.put(NAME, "bob@host/7", datetime.now(timezone.utc))
        time.sleep(30)  # the wait: interrupted by the renewal that finds bob holding the Lease
    assert time.monotonic() - started < 10
    assert "taken by bob@host/7" in str(lost.value) and lost.value.exit_code == 7
    assert holder(store) == "bob@host/7"  # not deleted: it is bob's
