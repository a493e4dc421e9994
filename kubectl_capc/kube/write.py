"""The Kubernetes write side of an upgrade: create templates, patch owners, and watch rollouts finish.

Every write can be sent with `dryRun=All`, which runs admission (webhooks, policies) and schema
validation without persisting, so a preview shows exactly what the server would refuse. A patch of a
KubeadmControlPlane or MachineDeployment changes version, machine template and the project's history
annotations in one JSON merge patch that carries the resourceVersion the plan was made from: a concurrent
change makes it fail with 409 (`Conflict`) instead of being overwritten.

Waiting uses watches, not polling: one LIST, then WATCH requests of 5 to 10 minutes, each from the last
resourceVersion seen, so nothing is missed between them. When the stream breaks, as it does when the
API server restarts, the watch resumes from that resourceVersion after a short pause, longer each time
it breaks again; only when the server answers 410 Gone (it no longer has that version) is the LIST made
again.
Each WATCH ends by the wait's deadline.

Which failed requests are sent again is decided in `kubectl_capc.kube.retries`. A write that failed
after it was sent (the connection broke, no answer came in time, or a gateway answered 502/503/504) may
or may not have happened: it is never sent blindly again but reported as `OutcomeUnknown`, a `Conflict`,
so the engine reads the cluster again and re-plans. Ctrl-C during a write is deferred until it is done
(`kubectl_capc.domain.interrupts`).

The kubernetes library is imported inside the functions: importing it costs about half a second.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from kubectl_capc.domain.errors import CapcError, KubeApiError, PlanError, RolloutError, one_line
from kubectl_capc.domain.interrupts import writing
from kubectl_capc.domain.inventory import (
    MachineTemplates,
    machine_templates,
    parse_machine,
    parse_rollout_owner,
)
from kubectl_capc.domain.model import (
    CLOUDSTACK_MACHINE_TEMPLATE_KIND,
    CLUSTER_NAME_LABEL,
    CONTROL_PLANE_NAME_LABEL,
    DEPLOYMENT_NAME_LABEL,
    INFRASTRUCTURE_GROUP,
    KUBEADM_CONTROL_PLANE_KIND,
    CapiVersion,
    Machine,
    built_from_another,
    normalize_version,
)
from kubectl_capc.domain.ondelete import Decision, next_step
from kubectl_capc.domain.plan import PatchObject, RollOnDelete, WaitRollout
from kubectl_capc.domain.progress import MachinePhase, OwnerProgress
from kubectl_capc.kube.errors import forbidden_error, server_message, unreachable_error
from kubectl_capc.kube.resources import CAPC_VERSION, RESOURCES
from kubectl_capc.kube.retries import RETRIES, request_was_sent, transport_failure

__all__ = [
    "FIELD_MANAGER",
    "WATCH_SECONDS",
    "Conflict",
    "Gone",
    "KubeWriter",
    "OutcomeUnknown",
    "OwnerProgress",
    "Rejected",
    "patch_body",
    "server_dry_run",
    "stall_hint",
    "watch_seconds",
]

_log = logging.getLogger(__name__)

FIELD_MANAGER = "kubectl-capc"
WATCH_SECONDS = (300, 600)
"""Shortest and longest single WATCH request (client-go's reflector: 5 to 10 minutes). The server sends
a bookmark about once a minute meanwhile, which moves the progress line's elapsed time on."""
_EXPIRED, _BROKEN, _TIMED_OUT = "EXPIRED", "BROKEN", "TIMED_OUT"
"""How a WATCH ended besides its events: 410 Gone, the stream broke, or its time was up."""

_UNAVAILABLE = frozenset({502, 503, 504})
"""A gateway or an overloaded server answered for the API server: a write may or may not have happened."""
# Conditions that are good when True, and those that are good when False (CAPI v1beta1 and v1beta2).
_GOOD_WHEN_TRUE = frozenset(
    {"Ready", "Available", "MachinesReady", "MachinesUpToDate", "MachinesSpecUpToDate", "MachineSetReady",
     "MachinesCreated", "Resized", "ControlPlaneComponentsHealthy", "EtcdClusterHealthy",
     "CertificatesAvailable"}
)  # fmt: skip
_GOOD_WHEN_FALSE = frozenset({"RollingOut", "ScalingUp", "ScalingDown", "Remediating", "Deleting", "Paused"})


class Conflict(KubeApiError):
    """The object changed (or appeared, or vanished) since the plan was made: re-read and re-plan."""


class Gone(Conflict):
    """The object does not exist (any more)."""


class OutcomeUnknown(Conflict):
    """A write was sent but no answer came back: read again to learn whether it happened."""


class Rejected(PlanError):
    """The API server refused a write in admission or validation; with dryRun nothing was changed."""


def patch_body(
    step: PatchObject, capi_version: CapiVersion, annotations: Mapping[str, str]
) -> dict[str, Any]:
    """The JSON merge patch for `step`: version, template reference and annotations, guarded."""
    ref = {"name": step.template_to}
    if step.is_control_plane:
        if capi_version == "v1beta2":
            machine_template: dict[str, Any] = {"spec": {"infrastructureRef": ref}}
        else:
            machine_template = {"infrastructureRef": ref}
        spec: dict[str, Any] = {"version": step.version_to, "machineTemplate": machine_template}
    else:
        spec = {"template": {"spec": {"version": step.version_to, "infrastructureRef": ref}}}
    metadata: dict[str, Any] = {"annotations": dict(annotations)}
    if step.resource_version:
        metadata["resourceVersion"] = step.resource_version
    return {"metadata": metadata, "spec": spec}


ProgressCallback = Callable[[tuple[OwnerProgress, ...], float], None]


class SharedWait(Protocol):
    """A wait that serves many writers from shared watches (`kube.watches.WatchHub.wait`)."""

    def __call__(
        self,
        writer: KubeWriter,
        step: WaitRollout,
        *,
        timeout: float | None,
        on_progress: ProgressCallback | None = None,
    ) -> tuple[OwnerProgress, ...]: ...


def progress_of(obj: Mapping[str, Any], want_version: str) -> OwnerProgress:
    """Read rollout progress from a raw KubeadmControlPlane or MachineDeployment."""
    owner = parse_rollout_owner(obj)
    kind = str(obj.get("kind", ""))
    name = str((obj.get("metadata") or {}).get("name", ""))
    if owner is None:
        raise Conflict(f"{kind}/{name} has no machine template reference any more")
    replicas = owner.replicas
    desired = replicas.desired if replicas.desired is not None else replicas.current
    done = not owner.rollout_in_progress() and normalize_version(owner.version) == normalize_version(
        want_version
    )
    return OwnerProgress(
        kind, name, owner.version, desired, replicas.up_to_date, replicas.ready, replicas.available,
        owner.observed, done,
    )  # fmt: skip


class KubeWriter:
    """Writes to, and watches, one cluster's objects in one namespace at the served CAPI version."""

    def __init__(self, api_client: Any, namespace: str, capi_version: CapiVersion) -> None:
        from kubernetes import client

        self._api = client.CustomObjectsApi(api_client)
        self.namespace = namespace
        self.capi_version = capi_version
        self.shared_wait: SharedWait | None = None
        """Where `wait` waits instead of watching on its own (a fleet run's `kube.watches.WatchHub`)."""

    def _version(self, kind: str) -> str:
        return CAPC_VERSION if RESOURCES[kind].group == INFRASTRUCTURE_GROUP else self.capi_version

    # -- reads ------------------------------------------------------------------------------------

    def get(self, kind: str, name: str) -> dict[str, Any]:
        group, plural = _where(kind)
        result: dict[str, Any] = self._call(
            f"read {kind}/{name}",
            lambda: self._api.get_namespaced_custom_object(
                group, self._version(kind), self.namespace, plural, name
            ),
        )
        return result

    def list_objects(
        self, kind: str, *, label_selector: str | None = None, field_selector: str | None = None
    ) -> dict[str, Any]:
        group, plural = _where(kind)
        selectors: dict[str, Any] = {
            key: value
            for key, value in (("label_selector", label_selector), ("field_selector", field_selector))
            if value
        }
        result: dict[str, Any] = self._call(
            f"list {plural}",
            lambda: self._api.list_namespaced_custom_object(
                group, self._version(kind), self.namespace, plural, **selectors
            ),
        )
        return result

    # -- writes -----------------------------------------------------------------------------------

    def create_template(self, manifest: Mapping[str, Any], *, dry_run: bool) -> dict[str, Any]:
        """Create a CloudStackMachineTemplate; 409 (it exists) is a `Conflict`."""
        group, plural = _where(CLOUDSTACK_MACHINE_TEMPLATE_KIND)
        name = str(manifest["metadata"]["name"])
        result: dict[str, Any] = self._write(
            f"create {CLOUDSTACK_MACHINE_TEMPLATE_KIND}/{name}",
            dry_run,
            lambda: self._api.create_namespaced_custom_object(
                group, CAPC_VERSION, self.namespace, plural, dict(manifest),
                field_manager=FIELD_MANAGER, dry_run=_dry_run(dry_run),
            ),
        )  # fmt: skip
        return result

    def patch_owner(
        self, step: PatchObject, annotations: Mapping[str, str], *, dry_run: bool
    ) -> dict[str, Any]:
        """Patch version and template of a KubeadmControlPlane or MachineDeployment in one request."""
        group, plural = _where(step.kind)
        body = patch_body(step, self.capi_version, annotations)
        what = f"patch {step.subject}"
        try:
            result: dict[str, Any] = self._write(
                what,
                dry_run,
                lambda: self._api.patch_namespaced_custom_object(
                    group, self.capi_version, self.namespace, plural, step.name, body,
                    field_manager=FIELD_MANAGER, dry_run=_dry_run(dry_run),
                    _content_type="application/merge-patch+json",
                ),
            )  # fmt: skip
        except Rejected:
            refused = _refused_as_stored(
                self._api, group=group, version=self.capi_version, namespace=self.namespace,
                plural=plural, name=step.name,
            )  # fmt: skip
            if refused is None:
                raise
            raise _invalid_as_stored(what, f"{step.kind}/{step.name}", refused) from None
        return result

    def delete_template(self, name: str, *, uid: str, resource_version: str, dry_run: bool) -> None:
        """Delete a CloudStackMachineTemplate only if it is still the object that was read.

        The uid and resourceVersion preconditions make the server refuse (409, `Conflict`) when the
        template was changed or re-created since; `Gone` when it no longer exists.
        """
        from kubernetes import client

        group, plural = _where(CLOUDSTACK_MACHINE_TEMPLATE_KIND)
        # With a body, the server reads every delete option from it and ignores the query: dryRun too.
        body = client.V1DeleteOptions(
            dry_run=["All"] if dry_run else None,
            preconditions=client.V1Preconditions(uid=uid, resource_version=resource_version),
        )
        self._write(
            f"delete {CLOUDSTACK_MACHINE_TEMPLATE_KIND}/{name}",
            dry_run,
            lambda: self._api.delete_namespaced_custom_object(
                group, CAPC_VERSION, self.namespace, plural, name, body=body
            ),
        )

    # -- waiting ----------------------------------------------------------------------------------

    def wait(
        self,
        step: WaitRollout,
        *,
        timeout: float | None,
        on_progress: ProgressCallback | None = None,
    ) -> tuple[OwnerProgress, ...]:
        """Watch until every object of `step` has finished rolling out at `step.version`.

        Raises `RolloutError` with a stall report when `timeout` (seconds; None = no limit) passes, and
        `Conflict` when an object's version is changed by someone else meanwhile.
        """
        if self.shared_wait is not None:
            return self.shared_wait(self, step, timeout=timeout, on_progress=on_progress)
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        latest: dict[str, dict[str, Any]] = {}
        wanted = set(step.names)
        phases = _Phases(self, step)

        def report(changed: bool = True) -> tuple[OwnerProgress, ...]:
            progress = tuple(progress_of(latest[name], step.version) for name in step.names if name in latest)
            for item in progress:
                if normalize_version(item.version) != normalize_version(step.version):
                    raise Conflict(f"{step.kind}/{item.name} was changed to {item.version} during the wait")
            if on_progress is not None:
                progress = phases.add(progress, latest, refresh=changed)
                on_progress(progress, time.monotonic() - started)
            return progress

        def finished(progress: tuple[OwnerProgress, ...]) -> bool:
            return len(progress) == len(wanted) and all(p.done for p in progress)

        while True:
            listing = self._list_wanted(step)
            latest = {
                o["metadata"]["name"]: o
                for o in listing.get("items") or []
                if o["metadata"]["name"] in wanted
            }
            missing = wanted - set(latest)
            if missing:
                raise Conflict(f"{step.kind} {', '.join(sorted(missing))} no longer exists")
            progress = report()
            if finished(progress):
                return progress
            resource_version = str((listing.get("metadata") or {}).get("resourceVersion", ""))
            breaks = 0  # streams in a row that broke before delivering anything
            ended = _TIMED_OUT
            while ended != _EXPIRED:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise RolloutError(self.stall_report(step, progress, timeout), hint=stall_hint(step))
                ended = _TIMED_OUT
                for event_type, obj in self._watch(step, resource_version, watch_seconds(remaining)):
                    if event_type in (_EXPIRED, _BROKEN):
                        ended = event_type
                        break
                    breaks = 0
                    resource_version = str(obj["metadata"].get("resourceVersion", resource_version))
                    if event_type == "BOOKMARK":  # about once a minute: moves the elapsed time on
                        progress = report(changed=False)
                        continue
                    name = obj["metadata"].get("name")
                    if name not in wanted:
                        continue
                    if event_type == "DELETED":
                        raise Conflict(f"{step.kind}/{name} was deleted during the wait")
                    latest[name] = obj
                    progress = report()
                    if finished(progress):
                        return progress
                if ended == _BROKEN:
                    breaks += 1
                    pause = RETRIES.delay(breaks)
                    time.sleep(pause if remaining is None else max(0.0, min(pause, remaining)))
                elif ended == _TIMED_OUT:
                    progress = report(changed=False)

    def _list_wanted(self, step: WaitRollout) -> dict[str, Any]:
        if len(step.names) == 1:
            return self.list_objects(step.kind, field_selector=f"metadata.name={step.names[0]}")
        return self.list_objects(step.kind)

    def _watch(
        self, step: WaitRollout, resource_version: str, seconds: int
    ) -> Iterable[tuple[str, dict[str, Any]]]:
        """One WATCH request of at most `seconds` from `resource_version`; yields (type, object), then
        (`_EXPIRED`, {}) on 410 Gone (list again) or (`_BROKEN`, {}) when the open stream broke (watch
        again from the last resourceVersion)."""
        selectors: dict[str, Any] = (
            {"field_selector": f"metadata.name={step.names[0]}"} if len(step.names) == 1 else {}
        )
        return self._watch_kind(step.kind, resource_version, seconds, selectors)

    def _watch_kind(
        self, kind: str, resource_version: str, seconds: int, selectors: Mapping[str, Any]
    ) -> Iterable[tuple[str, dict[str, Any]]]:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError, MaxRetryError

        group, plural = _where(kind)
        watcher = watch.Watch()  # type: ignore[no-untyped-call]
        try:
            for event in watcher.stream(  # type: ignore[no-untyped-call]
                self._api.list_namespaced_custom_object,
                group, self.capi_version, self.namespace, plural,
                resource_version=resource_version, timeout_seconds=seconds, allow_watch_bookmarks=True,
                _request_timeout=seconds + 30, **dict(selectors),
            ):  # fmt: skip
                if event["type"] == "ERROR":
                    code = (event.get("raw_object") or {}).get("code")
                    if code == 410:
                        yield _EXPIRED, {}
                        return
                    raise KubeApiError(f"watching {plural}: {event.get('raw_object')}")
                yield str(event["type"]), event["raw_object"]
        except ApiException as err:
            if err.status == 410:
                yield _EXPIRED, {}
                return
            raise _translate(err, f"watch {plural}") from None
        except MaxRetryError as err:
            # Opening the watch failed, after the retries of kubectl_capc.kube.client: the server is gone.
            raise _unreachable_during_run(f"watch {plural}", err) from None
        except (HTTPError, OSError) as err:
            # The open stream broke (an API server restart, a proxy cutting long requests): watch again.
            _log.info("watch of %s ended: %s; watching again from there", plural, one_line(str(err)))
            yield _BROKEN, {}
        finally:
            watcher.stop()  # type: ignore[no-untyped-call]

    # -- OnDelete MachineDeployments ------------------------------------------------------------

    def delete_machine(self, name: str, *, uid: str) -> None:
        """Delete a Machine only if it is still the object that was seen (uid precondition); one that is
        already gone counts as deleted."""
        from kubernetes import client

        group, plural = _where("Machine")
        body = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid))
        try:
            self._write(
                f"delete Machine/{name}",
                False,
                lambda: self._api.delete_namespaced_custom_object(
                    group, self.capi_version, self.namespace, plural, name, body=body
                ),
            )
        except Gone:
            return

    def replace_on_delete(
        self,
        step: RollOnDelete,
        *,
        timeout: float | None,
        on_progress: ProgressCallback | None = None,
        on_delete: Callable[[str, Decision], None] | None = None,
    ) -> None:
        """Delete `step`'s deployment's old Machines (not at `step.version`, or built from another
        CloudStackMachineTemplate than `step.template`) one at a time, watching its Machines until each
        replacement's Node is Ready (`kubectl_capc.domain.ondelete`).

        Which template a Machine was built from is read from the CloudStackMachines, listed with each
        LIST of the Machines: those created later are the replacements, made from the new template.

        Raises `RolloutError` when `timeout` passes, `Conflict` when the deployment is gone or asks for
        another version or template meanwhile (`_still_asked`, read again before each deletion).
        """
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        desired = self._still_asked(step).desired
        selector = {"label_selector": f"{DEPLOYMENT_NAME_LABEL}={step.name}"}
        machines: dict[str, dict[str, Any]] = {}
        built_from: dict[tuple[str, str], str] = {}
        baseline = 0
        deleted: set[str] = set()

        def decide() -> Decision:
            nonlocal baseline
            parsed = machines_oldest_first(machines.values(), built_from)
            if not deleted:  # the ready count to keep: as it is until the first deletion
                baseline = sum(1 for m in parsed if m.ready)
            decision = next_step(
                parsed,
                version=step.version,
                template=step.template,
                desired=desired,
                max_unavailable=step.max_unavailable,
                baseline_ready=baseline,
            )
            if on_progress is not None:
                item = OwnerProgress(
                    step.kind, step.name, step.version, desired, decision.up_to_date, decision.ready,
                    decision.ready, True, decision.done,
                    replacing_machine(parsed, step.name, step.version, step.template),
                )  # fmt: skip
                on_progress((item,), time.monotonic() - started)
            return decision

        def act(decision: Decision) -> bool:
            """True once done; deletes the next Machine when that is the decision."""
            if decision.done:
                return True
            if decision.delete and decision.delete not in deleted:
                self._still_asked(step)
                machine = machines[decision.delete]
                if on_delete is not None:
                    on_delete(decision.delete, decision)
                self.delete_machine(decision.delete, uid=str(machine["metadata"].get("uid", "")))
                deleted.add(decision.delete)
            return False

        while True:
            listing = self.list_objects("Machine", label_selector=selector["label_selector"])
            machines = {m["metadata"]["name"]: m for m in listing.get("items") or []}
            built_from = machine_templates(self.list_objects("CloudStackMachine").get("items") or [])
            decision = decide()
            if act(decision):
                return
            resource_version = str((listing.get("metadata") or {}).get("resourceVersion", ""))
            breaks = 0
            ended = _TIMED_OUT
            while ended != _EXPIRED:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    limit = f" within {_duration(timeout)}" if timeout is not None else ""
                    raise RolloutError(
                        f"{step.subject} (OnDelete) did not finish replacing its Machines{limit}: "
                        f"waiting for "
                        f"{decision.waiting}; {decision.old} Machine(s) still at another version than "
                        f"{step.version} or on another CloudStackMachineTemplate than {step.template}",
                        hint="fix what keeps the Machines from being replaced or Ready, then re-run the same "
                        "command to continue (Machines already replaced are kept); `kubectl get machines "
                        f"-n {self.namespace} -l {DEPLOYMENT_NAME_LABEL}={step.name}` shows them",
                    )
                ended = _TIMED_OUT
                for event_type, obj in self._watch_kind(
                    "Machine", resource_version, watch_seconds(remaining), selector
                ):
                    if event_type in (_EXPIRED, _BROKEN):
                        ended = event_type
                        break
                    breaks = 0
                    resource_version = str(obj["metadata"].get("resourceVersion", resource_version))
                    if event_type == "BOOKMARK":
                        continue
                    name = str(obj["metadata"].get("name", ""))
                    if event_type == "DELETED":
                        machines.pop(name, None)
                    else:
                        machines[name] = obj
                    decision = decide()
                    if act(decision):
                        return
                if ended == _BROKEN:
                    breaks += 1
                    pause = RETRIES.delay(breaks)
                    time.sleep(pause if remaining is None else max(0.0, min(pause, remaining)))

    def _still_asked(self, step: RollOnDelete) -> OwnerProgress:
        """`step`'s deployment as it is now, which must still ask for `step.version` and `step.template`:
        a Machine is never deleted for a spec the deployment no longer has (someone changed it, or a GitOps
        controller undid the patch); a `Conflict` makes the run read the cluster again."""
        owner = self.get(step.kind, step.name)
        progress = progress_of(owner, step.version)
        if normalize_version(progress.version) != normalize_version(step.version):
            raise Conflict(f"{step.subject} was changed to {progress.version} during the run")
        parsed = parse_rollout_owner(owner)
        template = parsed.infrastructure_ref.name if parsed is not None else ""
        if built_from_another(template, step.template):
            raise Conflict(
                f"{step.subject} was changed to {CLOUDSTACK_MACHINE_TEMPLATE_KIND}/{template} during the run"
            )
        return progress

    # -- stalls -----------------------------------------------------------------------------------

    def stall_report(
        self, step: WaitRollout, progress: Iterable[OwnerProgress], timeout: float | None
    ) -> str:
        """What is stuck: each unfinished object's counts, its problem conditions, and its Machines."""
        parts = []
        limit = f" within {_duration(timeout)}" if timeout is not None else ""
        for item in progress:
            if item.done:
                continue
            text = f"{item.kind}/{item.name} did not finish rolling out to {step.version}{limit} ({item})"
            conditions = _problem_conditions(self.get(item.kind, item.name))
            if conditions:
                text += "; conditions: " + "; ".join(conditions)
            machines, causes = self._stuck_machines(item, step.version)
            if machines:
                text += "; machines: " + ", ".join(machines)
            if causes:
                text += "; held up: " + "; ".join(causes)
            parts.append(text)
        return " | ".join(parts) or f"{step.subject} did not finish rolling out{limit}"

    def _stuck_machines(self, item: OwnerProgress, version: str) -> tuple[list[str], list[str]]:
        """The owner's Machines not Running at `version` (`NAME (PHASE, VERSION)`), and for those the
        rollout doctor finds held up, `NAME: cause` (from the Machines and their CloudStackMachines)."""
        label = CONTROL_PLANE_NAME_LABEL if item.kind == KUBEADM_CONTROL_PLANE_KIND else DEPLOYMENT_NAME_LABEL
        try:
            machines = self.list_objects("Machine", label_selector=f"{label}={item.name}").get("items") or []
        except KubeApiError:
            return [], []  # the report is still useful without them
        stuck = []
        for machine in machines:
            phase = str((machine.get("status") or {}).get("phase", "Unknown"))
            machine_version = str((machine.get("spec") or {}).get("version", ""))
            if phase != "Running" or normalize_version(machine_version) != normalize_version(version):
                stuck.append(f"{machine['metadata']['name']} ({phase}, {machine_version or 'no version'})")
        return stuck, self._causes(item, version, machines) if stuck else []

    def _causes(self, item: OwnerProgress, version: str, machines: Sequence[Mapping[str, Any]]) -> list[str]:
        from datetime import datetime, timezone

        from kubectl_capc.domain.diagnosis import OwnerSpec, diagnose
        from kubectl_capc.domain.status_facts import ZoneFacts, parse_infra_machine, parse_machine

        clusters = {str((m["metadata"].get("labels") or {}).get(CLUSTER_NAME_LABEL, "")) for m in machines}
        try:
            selector = f"{CLUSTER_NAME_LABEL}={clusters.pop()}" if len(clusters) == 1 else None
            listed = self.list_objects("CloudStackMachine", label_selector=selector).get("items") or []
        except KubeApiError:
            listed = []  # causes from the Machines alone
        by_name = {str(csm["metadata"]["name"]): csm for csm in listed}
        infra = {}
        for machine in machines:
            ref = str(((machine.get("spec") or {}).get("infrastructureRef") or {}).get("name", ""))
            if ref in by_name:
                infra[str(machine["metadata"]["name"])] = parse_infra_machine(by_name[ref], {}, ZoneFacts())
        owner = OwnerSpec(item.kind, self.namespace, item.name, version)
        status = diagnose(
            self.namespace, "", [owner], [parse_machine(m) for m in machines], infra=infra, workload=None,
            templates={}, now=datetime.now(timezone.utc),
        )  # fmt: skip
        return [f"{m.name}: {one_line(m.cause)}" for o in status.owners for m in o.blocked]

    # -- plumbing ---------------------------------------------------------------------------------

    def _write(self, what: str, dry_run: bool, request: Callable[[], Any]) -> Any:
        """A write: with Ctrl-C deferred until it is done; one that may have happened is `OutcomeUnknown`."""
        if dry_run:
            return self._call(what, request)
        with writing(what):
            return self._call(what, request, sent_may_count=True)

    def _call(self, what: str, request: Callable[[], Any], *, sent_may_count: bool = False) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return request()
        except ApiException as err:
            if sent_may_count and err.status in _UNAVAILABLE:
                raise OutcomeUnknown(
                    f"{what}: the API server answered HTTP {err.status} ({server_message(err)}); "
                    "it may or may not have done it",
                    hint="the cluster is read again before anything else is written",
                ) from None
            raise _translate(err, what) from None
        except (HTTPError, OSError) as err:
            reason = transport_failure(err)
            if sent_may_count and request_was_sent(err):
                raise OutcomeUnknown(
                    f"{what}: the API server did not answer ({reason}); it may or may not have done it",
                    hint="the cluster is read again before anything else is written",
                ) from None
            raise _unreachable_during_run(what, err) from None


def watch_seconds(remaining: float | None, rand: Callable[[], float] = random.random) -> int:
    """`timeoutSeconds` of the next WATCH: random within `WATCH_SECONDS`, as client-go spreads the
    re-watches of many clients, and never past the wait's deadline, `remaining` seconds away."""
    shortest, longest = WATCH_SECONDS
    seconds = int(shortest + rand() * (longest - shortest))
    return seconds if remaining is None else max(1, min(seconds, math.ceil(remaining)))


def _unreachable_during_run(what: str, err: BaseException) -> KubeApiError:
    return unreachable_error(
        what, err, hint="nothing after this step was done; re-run the same command to continue"
    )


def _dry_run(dry_run: bool) -> str | None:
    return "All" if dry_run else None


def _translate(err: Any, what: str) -> Exception:
    status = int(err.status or 0)
    message = server_message(err)
    if status == 404:
        return Gone(f"{what}: {message}", hint="the cluster changed since it was read")
    if status == 409:
        return Conflict(f"{what}: {message}", hint="the cluster changed since it was read")
    if status == 401:
        return KubeApiError(
            f"{what}: HTTP 401: the API server did not accept the credentials ({message})",
            hint="they may have expired or been revoked: log in again (refresh the kubeconfig's user), then "
            "re-run the same command to continue",
        )
    # 403 is both "RBAC says no" (worded as for reads) and an admission refusal (webhooks, quotas).
    denied = forbidden_error(what, err)
    if denied is not None:
        return denied
    if status in (400, 403, 422):
        return Rejected(f"{what}: the API server refused it: {message}")
    return KubeApiError(
        f"{what}: HTTP {status}: {message}",
        hint="re-run the same command to continue: it reads the cluster before writing again",
    )


def _problem_conditions(obj: Mapping[str, Any]) -> list[str]:
    status = obj.get("status") or {}
    raw = [*(status.get("conditions") or []), *((status.get("v1beta2") or {}).get("conditions") or [])]
    seen: set[tuple[str, str, str]] = set()
    lines = []
    for condition in raw:
        kind, state = str(condition.get("type", "")), str(condition.get("status", ""))
        bad = (kind in _GOOD_WHEN_TRUE and state != "True") or (kind in _GOOD_WHEN_FALSE and state == "True")
        message = one_line(str(condition.get("message") or condition.get("reason") or ""))
        if bad and (kind, state, message) not in seen:
            seen.add((kind, state, message))
            lines.append(f"{kind}={state}" + (f" ({message})" if message else ""))
    return lines


def stall_hint(step: WaitRollout) -> str:
    return (
        "the changes are in place and Cluster API keeps rolling out; fix what is stuck, then re-run the same "
        "command to continue waiting (or raise --timeout); `kubectl describe "
        f"{step.kind.lower()} {step.names[0]}` shows more"
    )


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "no limit"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return "".join(f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n) or "0s"


def _where(kind: str) -> tuple[str, str]:
    resource = RESOURCES[kind]
    return resource.group, resource.plural


def _refused_as_stored(
    api: Any, *, group: str, version: str, namespace: str, plural: str, name: str
) -> str | None:
    """The API server's refusal of the stored object sent back unchanged (an empty merge patch, dry run),
    or None when it accepts it (or the probe cannot tell): a refused change may be the object's own fault,
    e.g. one stored before a webhook or policy that rejects it was installed."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        api.patch_namespaced_custom_object(
            group, version, namespace, plural, name, {}, dry_run="All", field_manager=FIELD_MANAGER,
            _content_type="application/merge-patch+json",
        )  # fmt: skip
    except ApiException as err:
        return server_message(err) if err.status in (400, 403, 422) else None
    except (HTTPError, OSError):
        return None
    return None


def _invalid_as_stored(what: str, subject: str, message: str) -> Rejected:
    return Rejected(
        f"{what}: {subject} as it is stored in the cluster is invalid: the API server refuses it even "
        f"unchanged ({message})",
        hint=f"fix {subject} itself (`kubectl edit`), then run the command again: the change is not "
        "the cause",
    )


def server_dry_run(api_client: Any, objects: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """Send each object as a server-side apply with dryRun=All: admission and schema judge the result
    (an object missing from the cluster is judged as a create), and nothing is stored.

    Returns each object's `Kind/name` with the server's refusal of it, "" when it was accepted."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    api = client.CustomObjectsApi(api_client)
    verdicts: list[tuple[str, str]] = []
    for obj in objects:
        group, _, version = str(obj["apiVersion"]).rpartition("/")
        metadata = obj["metadata"]
        subject = f"{obj['kind']}/{metadata['name']}"
        try:
            api.patch_namespaced_custom_object(
                group, version, metadata["namespace"], RESOURCES[str(obj["kind"])].plural, metadata["name"],
                dict(obj), dry_run="All", field_manager=FIELD_MANAGER, force=True,
                _content_type="application/apply-patch+yaml",
            )  # fmt: skip
        except ApiException as err:
            what = f"server dry run of {subject}"
            denied = forbidden_error(what, err)
            if denied is not None:
                raise denied from None
            message = server_message(err)
            if err.status == 404:
                raise KubeApiError(
                    f"{what}: the server does not serve {obj['apiVersion']} {obj['kind']}: {message}"
                ) from None
            if err.status not in (400, 403, 409, 422):
                raise KubeApiError(f"{what}: HTTP {err.status}: {message}") from None
            # A refusal of the object itself: admission (webhooks, policies, also 403) or validation;
            # when the stored object is refused even unchanged, that is what to fix, not the change.
            plural = RESOURCES[str(obj["kind"])].plural
            stored = _refused_as_stored(
                api, group=group, version=version, namespace=metadata["namespace"], plural=plural,
                name=metadata["name"],
            )  # fmt: skip
            if stored is not None:
                message = str(_invalid_as_stored(what, subject, stored))
            verdicts.append((subject, message))
            continue
        except (HTTPError, OSError) as err:
            raise unreachable_error(f"server dry run of {subject}", err) from None
        verdicts.append((subject, ""))
    return verdicts


class _Phases:
    """The Machine each unfinished owner of a wait is replacing, for its progress line: the owners'
    Machines are listed (one LIST, by label) each time an owner changed while its rollout is under way,
    never on a bookmark or while nothing changes, so an idle wait makes no more requests than before.
    A failed LIST only leaves the phase out."""

    def __init__(self, writer: KubeWriter, step: WaitRollout) -> None:
        self._writer = writer
        self._label = CONTROL_PLANE_NAME_LABEL if step.is_control_plane else DEPLOYMENT_NAME_LABEL
        self._version = step.version
        self._machines: list[Machine] = []
        self._counted: tuple[OwnerProgress, ...] = ()

    def add(
        self, progress: tuple[OwnerProgress, ...], owners: Mapping[str, Mapping[str, Any]], *, refresh: bool
    ) -> tuple[OwnerProgress, ...]:
        pending = [item for item in progress if item.observed and not item.done]
        if not pending:
            return progress
        if refresh and progress != self._counted:  # an owner event that left its counts alone: no LIST
            self._counted = progress
            self._machines = self._list(pending, owners)
        found = {item.name: replacing_machine(self._machines, item.name, self._version) for item in pending}
        return tuple(
            replace(item, replacing=found[item.name]) if found.get(item.name) is not None else item
            for item in progress
        )

    def _list(self, pending: Sequence[OwnerProgress], owners: Mapping[str, Mapping[str, Any]]) -> list[Any]:
        names = sorted(item.name for item in pending)
        clusters = {str((owners[n].get("spec") or {}).get("clusterName", "")) for n in names if n in owners}
        if len(names) == 1:
            selector = f"{self._label}={names[0]}"
        elif len(clusters) == 1 and "" not in clusters:
            selector = f"{CLUSTER_NAME_LABEL}={clusters.pop()}"
        else:
            selector = self._label
        try:
            items = self._writer.list_objects("Machine", label_selector=selector).get("items") or []
        except CapcError as err:
            _log.info("listing Machines for the progress line failed: %s", one_line(err.message))
            return []
        return machines_oldest_first(items)


def machines_oldest_first(
    items: Iterable[Mapping[str, Any]], templates: MachineTemplates | None = None
) -> list[Machine]:
    """Machine objects parsed (with the templates they were built from, `parse_machine`), by creation
    (then name, for those created in the same second): Machine names end in random suffixes, so only
    this order tells the newest."""

    def created(item: Mapping[str, Any]) -> tuple[str, str]:
        metadata = item.get("metadata") or {}
        return str(metadata.get("creationTimestamp") or ""), str(metadata.get("name") or "")

    return [parse_machine(item, templates) for item in sorted(items, key=created)]


def replacing_machine(
    machines: Iterable[Machine], owner: str, version: str, template: str = ""
) -> MachinePhase | None:
    """The Machine `owner` is replacing now, from `machines` oldest first (`machines_oldest_first`): the
    newest new one (at `version`, from `template` when known) that is not ready yet, else the oldest
    being deleted; None when neither is there."""
    mine = [m for m in machines if m.owner == owner]
    coming = [m for m in mine if not m.outdated(version, template) and not m.ready]
    if coming:
        machine = coming[-1]
        return MachinePhase(machine.name, "Deleting" if machine.deleting else machine.phase or "Pending")
    going = [m for m in mine if m.deleting]
    if going:
        return MachinePhase(going[0].name, "Deleting")
    return None
