"""Rollout simulator: a test-only controller that rolls out KCPs and MachineDeployments like CAPI.

The simulator watches KubeadmControlPlanes, MachineDeployments and Machines in all namespaces; when an
object's version or referenced infrastructure/bootstrap template changes it replaces its machines one
as its strategy allows (`tests.testenv.rollout_model`; OnDelete: only once someone deletes an old
Machine), keeps the owner's Machine objects in step (new-version Machines
come up, old ones are deleted: `tests.testenv.rollout_machines`) and reports each step through the
status subresource the way the CAPI release of the profile does (`tests.testenv.rollout_status`).
Machines are written before the status that counts them, so a status that says "done" never runs
ahead of the Machines. New objects start fully rolled out, with whatever Machines a test gave them.
Annotations steer a single object from a test:

    testenv.kubectl-capc.io/stall-at: "1"         stop once 1 machine is up to date; the old Machines
                                                  stay Running at the old version
    testenv.kubectl-capc.io/fail: "ImagePullFailed"  the next replacement machine never becomes ready;
                                                  its Machine stays Provisioning

Run it in a thread with `run(...)`, or as a process (SIGTERM stops it):

    python -m tests.testenv.rollout --kubeconfig K --capi v1beta1|v1beta2 [--seconds-per-machine S]
"""

from __future__ import annotations

import argparse
import logging
import queue
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from tests.testenv.rollout_machines import MACHINE, MachineKeeper, built_from, namespace_terminating
from tests.testenv.rollout_model import Controls, Rollout
from tests.testenv.rollout_status import (
    PROFILES,
    RESOURCES,
    Resource,
    adopt,
    desired_replicas,
    desired_strategy,
    desired_target,
    render_status,
)

log = logging.getLogger("tests.testenv.rollout")

WATCH_TIMEOUT_SECONDS = 20
"""Server-side watch timeout: bounds how long a watch thread takes to notice shutdown at worst."""
RETRY_SECONDS = 1.0
IDLE_WAKEUP_SECONDS = 1.0
FULL_PASS_SECONDS = 5.0
"""Between events only the owners they concern (and those with a step due) are reconciled; all of them
are, this often, as a safety net. A bed holds every Cluster its tests made: a pass over all at every
event made the simulator's cost grow with the session."""

Key = tuple[str, str]  # (plural, uid)


@dataclass(frozen=True)
class _Event:
    resource: Resource
    type: str  # ADDED, MODIFIED, DELETED, or LISTED (a fresh list replaces all known objects)
    objects: list[dict[str, Any]]


class _Watcher(threading.Thread):
    """List, then watch, one resource in all namespaces; relist after errors and expiry (410 Gone)."""

    def __init__(
        self, resource: Resource, capi: str, api: Any, events: queue.Queue[_Event], stop: threading.Event
    ):
        super().__init__(name=f"watch-{resource.plural}", daemon=True)
        self.resource, self.capi, self.api, self.events, self.stop_event = resource, capi, api, events, stop
        self._watch: Any = None

    def interrupt(self) -> None:
        if self._watch is not None:
            self._watch.stop()

    def run(self) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        group, plural = self.resource.group, self.resource.plural
        while not self.stop_event.is_set():
            try:
                listing = self.api.list_cluster_custom_object(group, self.capi, plural)
                self.events.put(_Event(self.resource, "LISTED", listing.get("items") or []))
                resource_version = listing["metadata"]["resourceVersion"]
                while not self.stop_event.is_set():
                    self._watch = watch.Watch()  # type: ignore[no-untyped-call]
                    if self.stop_event.is_set():
                        break
                    for event in self._watch.stream(
                        self.api.list_cluster_custom_object,
                        group,
                        self.capi,
                        plural,
                        resource_version=resource_version,
                        timeout_seconds=WATCH_TIMEOUT_SECONDS,
                        allow_watch_bookmarks=True,
                    ):
                        obj = event["raw_object"]
                        resource_version = obj["metadata"]["resourceVersion"]
                        if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                            self.events.put(_Event(self.resource, event["type"], [obj]))
            except ApiException as exc:
                if exc.status == 410:
                    log.info("%s watch expired; relisting", plural)
                    continue
                log.warning("%s watch failed (%s %s); retrying", plural, exc.status, exc.reason)
                self.stop_event.wait(RETRY_SECONDS)
            except Exception as exc:  # connection reset, apiserver restarting, ...
                if not self.stop_event.is_set():
                    log.warning("%s watch failed (%s); retrying", plural, exc)
                    self.stop_event.wait(RETRY_SECONDS)


class Simulator:
    """The reconcile side: turns watched objects plus elapsed time into status writes."""

    def __init__(
        self, api: Any, capi: str, seconds_per_machine: float, clock: Callable[[], float] = time.monotonic
    ):
        if capi not in PROFILES:
            raise ValueError(f"unknown CAPI profile {capi!r}; use one of {', '.join(PROFILES)}")
        if seconds_per_machine <= 0:
            raise ValueError("seconds_per_machine must be positive")
        self.api, self.capi, self.clock = api, capi, clock
        self.stage_seconds = seconds_per_machine / 3
        self.objects: dict[Key, tuple[Resource, dict[str, Any]]] = {}
        self.rollouts: dict[Key, Rollout] = {}
        self.machines = MachineKeeper(api, capi)
        self._rolled: set[Key] = set()  # owners whose Machines follow their rollout
        self._rejected: dict[Key, tuple[str, dict[str, Any]]] = {}  # status writes the apiserver refused
        self._conflicted: set[Key] = set()  # last status lost a conflict: write it before a step
        self._broken: dict[Key, str] = {}  # resourceVersions whose reconcile raised (logged once)
        self._bad_annotations: set[tuple[Key, str]] = set()
        self._dirty: set[Key] = set()  # owners an event concerned since their last reconcile

    def apply(self, event: _Event) -> None:
        self._mark_dirty(event)
        if event.resource == MACHINE:
            self.machines.apply(event.type, event.objects)
            return
        plural = event.resource.plural
        if event.type == "LISTED":
            listed = {(plural, o["metadata"]["uid"]) for o in event.objects}
            for key in [k for k in self.objects if k[0] == plural and k not in listed]:
                self._forget(key)
        for obj in event.objects:
            key = (plural, obj["metadata"]["uid"])
            if event.type == "DELETED":
                self._forget(key)
            else:
                self.objects[key] = (event.resource, obj)

    def _mark_dirty(self, event: _Event) -> None:
        """Every owner in a namespace the event touches (a list touches all): a Machine's change moves
        its owner's rollout, and an owner's own write comes back as an event of its namespace."""
        if event.type == "LISTED":
            self._dirty.update(self.objects)
            self._dirty.update((event.resource.plural, o["metadata"]["uid"]) for o in event.objects)
            return
        namespaces = {o["metadata"].get("namespace") for o in event.objects}
        self._dirty.update(
            k for k, (_, o) in self.objects.items() if o["metadata"].get("namespace") in namespaces
        )
        if event.resource != MACHINE:
            self._dirty.update((event.resource.plural, o["metadata"]["uid"]) for o in event.objects)

    def _forget(self, key: Key) -> None:
        self.objects.pop(key, None)
        self.rollouts.pop(key, None)
        self._rolled.discard(key)
        self._rejected.pop(key, None)
        self._conflicted.discard(key)
        self._broken.pop(key, None)
        self._dirty.discard(key)

    def next_wakeup(self) -> float:
        """Seconds until the earliest pending rollout step (capped, so a quiet loop still turns over)."""
        due = [r.next_step_at for r in self.rollouts.values() if r.next_step_at is not None]
        if not due:
            return IDLE_WAKEUP_SECONDS
        return min(IDLE_WAKEUP_SECONDS, max(0.0, min(due) - self.clock()))

    def reconcile_pending(self) -> None:
        """Reconcile the owners events concerned and those whose next step is due."""
        now = self.clock()
        due = {k for k, r in self.rollouts.items() if r.next_step_at is not None and r.next_step_at <= now}
        self._reconcile([k for k in self.objects if k in self._dirty or k in due])

    def reconcile_all(self) -> None:
        self._reconcile(list(self.objects))

    def _reconcile(self, keys: list[Key]) -> None:
        self._dirty.difference_update(keys)
        for key in keys:
            try:
                self.reconcile(key)
            except Exception:  # one malformed object must not stop the others
                meta = self.objects[key][1]["metadata"]
                if self._broken.get(key) != meta["resourceVersion"]:
                    self._broken[key] = meta["resourceVersion"]
                    log.exception("%s/%s: reconcile failed", meta.get("namespace"), meta["name"])

    def reconcile(self, key: Key) -> None:
        resource, obj = self.objects[key]
        meta = obj["metadata"]
        if meta.get("deletionTimestamp"):
            return
        controls = self._controls(key, meta)
        rollout = self.rollouts.get(key)
        if rollout is None:
            rollout = self.rollouts[key] = adopt(resource, self.capi, obj)
        target = desired_target(resource, obj)
        rollout.strategy = desired_strategy(resource, self.capi, obj)
        if target != rollout.target:
            log.info("%s %s/%s: rolling out %s", resource.kind, meta.get("namespace"), meta["name"], target)
            rollout.retarget(target)
        if rollout.strategy.on_delete and key in self._rolled and self.machines.listed:
            self._replace_deleted(resource, obj, rollout)
        rollout.resize(desired_replicas(obj))
        was_done = rollout.done
        if key not in self._conflicted:  # every step's status reaches the apiserver, as CAPI reports each
            rollout.advance(self.clock(), self.stage_seconds, controls)
        if rollout.done and not was_done:
            log.info("%s %s/%s: rollout complete", resource.kind, meta.get("namespace"), meta["name"])
        if not rollout.done:
            self._rolled.add(key)
        if key in self._rolled:
            if not self.machines.listed:
                return  # which Machines exist is not known yet: write nothing that would count them
            self.machines.sync(resource, obj, rollout)
            rollout.deleting = Counter(
                str((m.get("spec") or {}).get("version") or "") for m in self.machines.deleting(resource, obj)
            )
        status = render_status(resource, self.capi, obj, rollout, controls, now=datetime.now(timezone.utc))
        if status == obj.get("status"):
            self._conflicted.discard(key)
        elif self._rejected.get(key) != (meta["resourceVersion"], status):
            self._write(key, resource, obj, status)

    def _replace_deleted(self, resource: Resource, obj: dict[str, Any], rollout: Rollout) -> None:
        """OnDelete: each out-of-date Machine someone deleted since the last reconcile gets one
        replacement from the current target (the model keeps no machine that has no Machine)."""
        remaining = sum(
            1
            for m in self.machines.owned(resource, obj)
            if not m["metadata"].get("deletionTimestamp") and built_from(m) != rollout.target
        )
        while len(rollout.outdated) > remaining:
            rollout.machine_deleted()

    def _controls(self, key: Key, meta: dict[str, Any]) -> Controls:
        try:
            return Controls.from_annotations(meta.get("annotations"))
        except ValueError as exc:
            if (key, str(exc)) not in self._bad_annotations:
                self._bad_annotations.add((key, str(exc)))
                log.warning("%s/%s: ignoring annotations: %s", meta.get("namespace"), meta["name"], exc)
            return Controls()

    def _write(self, key: Key, resource: Resource, obj: dict[str, Any], status: dict[str, Any]) -> None:
        from kubernetes.client.exceptions import ApiException

        meta = obj["metadata"]
        body = {**obj, "status": status}
        try:
            written = self.api.replace_namespaced_custom_object_status(
                resource.group,
                self.capi,
                meta["namespace"],
                resource.plural,
                meta["name"],
                body,
            )
        except ApiException as exc:
            if exc.status == 409:
                self._conflicted.add(key)
                return  # a newer version is on its way through the watch
            if exc.status == 404 or namespace_terminating(exc):
                self._forget(key)
                return
            self._rejected[key] = (meta["resourceVersion"], status)
            self._conflicted.discard(key)
            log.error(
                "%s %s/%s: status write rejected (%s): %s",
                resource.kind,
                meta["namespace"],
                meta["name"],
                exc.status,
                exc.body,
            )
            return
        self._conflicted.discard(key)
        self.objects[key] = (resource, written)


def run(kubeconfig: str, capi_version: str, seconds_per_machine: float, stop_event: threading.Event) -> None:
    """Simulate rollouts against the apiserver of `kubeconfig` until `stop_event` is set."""
    from kubernetes import client, config

    def api() -> Any:
        return client.CustomObjectsApi(config.new_client_from_config(config_file=kubeconfig))  # type: ignore[no-untyped-call]

    simulator = Simulator(api(), capi_version, seconds_per_machine)
    events: queue.Queue[_Event] = queue.Queue()
    watchers = [
        _Watcher(resource, capi_version, api(), events, stop_event) for resource in (*RESOURCES, MACHINE)
    ]
    for watcher in watchers:
        watcher.start()
    log.info("simulating CAPI %s rollouts at %.2fs per machine", capi_version, seconds_per_machine)
    full_pass_at = time.monotonic() + FULL_PASS_SECONDS
    try:
        while not stop_event.is_set():
            try:
                simulator.apply(events.get(timeout=simulator.next_wakeup()))
                while True:
                    simulator.apply(events.get_nowait())
            except queue.Empty:
                pass
            if time.monotonic() >= full_pass_at:
                simulator.reconcile_all()
                full_pass_at = time.monotonic() + FULL_PASS_SECONDS
            else:
                simulator.reconcile_pending()
    finally:
        stop_event.set()
        for watcher in watchers:
            watcher.interrupt()
        for watcher in watchers:
            watcher.join(timeout=2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.testenv.rollout", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--capi", choices=PROFILES, required=True)
    parser.add_argument("--seconds-per-machine", type=float, default=2.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    if args.seconds_per_machine <= 0:
        parser.error("--seconds-per-machine must be positive")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    run(args.kubeconfig, args.capi, args.seconds_per_machine, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
