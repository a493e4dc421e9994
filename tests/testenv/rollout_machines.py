"""The Machine objects behind a simulated rollout, kept as CAPI's controllers would keep them.

Once the simulator drives a rollout of a KubeadmControlPlane or MachineDeployment, that owner's Machines
follow the machine-level model (`tests.testenv.rollout_model.Rollout`): one Machine per modelled
machine, the replacement in flight included (phase Provisioning until it is ready, Running after), and
the out-of-date one deleted when its replacement is done; a deleted Machine that a finalizer keeps (its
drain is blocked) still counts among its owner's replicas, as in CAPI. Owners the simulator never
rolled out keep whatever Machines a test made for them by hand; Machines that exist when a rollout
starts (made by a test, or by an earlier simulator) count as the owner's machines, so nothing is
duplicated.

Each Machine carries what CAPI puts on one: the cluster-name label plus `control-plane` and
`control-plane-name` (control plane) or `deployment-name` (workers), an owner reference, spec.version,
spec.bootstrap.configRef and spec.infrastructureRef in the profile's reference shape, status.phase, and
the Node conditions of the phase (v1beta2 `NodeReady`/`NodeHealthy`, v1beta1 `NodeHealthy`).
With each Machine comes its CloudStackMachine, as CAPI's MachineSet and KubeadmControlPlane controllers
clone it (`infra_machine`): the `spec.template.spec` of the CloudStackMachineTemplate the Machine is built
from, the cloned-from annotations naming that template, the cluster-name label and an owner reference to
the Machine; it is deleted once its Machine is gone, as CAPI's Machine controller does. No CAPC controller
fills in its VM here (the workload bed's does, `tests.testenv.workload_infra`), and the referenced
KubeadmConfig is not created: no bootstrap controller runs here. Worker Machines are owned by their
MachineDeployment directly (the simulator keeps no MachineSets). The annotation
`testenv.kubectl-capc.io/built-from` records the version and templates a Machine was built from, which
CAPI reads from the infrastructure machine instead.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from tests.testenv.rollout_model import ANNOTATION_PREFIX, RefKey, Rollout, Stage, Target
from tests.testenv.rollout_status import CLUSTER_NAME_LABEL, CONTROL_PLANE_LABEL, Resource

log = logging.getLogger("tests.testenv.rollout")

MACHINE = Resource("Machine", "cluster.x-k8s.io", "machines")
INFRA_GROUP, INFRA_VERSION = "infrastructure.cluster.x-k8s.io", "v1beta3"
INFRA_MACHINE = Resource("CloudStackMachine", INFRA_GROUP, "cloudstackmachines")
MACHINE_TEMPLATE = Resource("CloudStackMachineTemplate", INFRA_GROUP, "cloudstackmachinetemplates")
CLONED_FROM_NAME = "cluster.x-k8s.io/cloned-from-name"
CLONED_FROM_GROUPKIND = "cluster.x-k8s.io/cloned-from-groupkind"
TEMPLATE_GROUPKIND = f"{MACHINE_TEMPLATE.kind}.{INFRA_GROUP}"
CLUSTER = Resource("Cluster", "cluster.x-k8s.io", "clusters")
CONTROL_PLANE_NAME_LABEL = "cluster.x-k8s.io/control-plane-name"
DEPLOYMENT_NAME_LABEL = "cluster.x-k8s.io/deployment-name"
BUILT_FROM_ANNOTATION = ANNOTATION_PREFIX + "built-from"
INFRA_API = f"{INFRA_GROUP}/{INFRA_VERSION}"
RUNNING, PROVISIONING = "Running", "Provisioning"
_NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the one Kubernetes uses for generated names

Machine = dict[str, Any]
Slot = tuple[Target, str]
"""One machine the model says exists: what it is built from, and the phase it reports."""


def owner_label(resource: Resource) -> str:
    return CONTROL_PLANE_NAME_LABEL if resource.is_control_plane else DEPLOYMENT_NAME_LABEL


def slots(rollout: Rollout) -> list[Slot]:
    """The machines at this point of `rollout`, oldest first, the replacements in flight last."""
    wanted = [(machine, RUNNING) for machine in rollout.machines]
    if rollout.stage is Stage.PROVISIONING:
        wanted += [(rollout.target, PROVISIONING)] * rollout.batch
    elif rollout.stage is Stage.REPLACING:
        wanted += [(rollout.target, RUNNING)] * rollout.batch
    return wanted


def encode_target(target: Target) -> str:
    return json.dumps([target.version, target.infrastructure, target.bootstrap])


def built_from(machine: Machine) -> Target | None:
    """The target recorded on a Machine made here; None for one made elsewhere (or unreadable)."""
    raw = ((machine.get("metadata") or {}).get("annotations") or {}).get(BUILT_FROM_ANNOTATION)
    try:
        version, infrastructure, bootstrap = json.loads(raw or "null")
        return Target(str(version), _ref_key(infrastructure), _ref_key(bootstrap))
    except (TypeError, ValueError):
        return None


def _ref_key(value: Any) -> RefKey | None:
    if not value:
        return None
    group, kind, name = value
    return (str(group), str(kind), str(name))


def phase_of(machine: Machine) -> str:
    return str((machine.get("status") or {}).get("phase", ""))


@dataclass(frozen=True)
class MachinePlan:
    """The writes that make an owner's Machines match its rollout."""

    create: list[Slot]
    report: list[tuple[Machine, str]]
    """Existing Machines whose phase must change, with the phase to report."""
    delete: list[Machine]


def plan_machines(rollout: Rollout, existing: Iterable[Machine]) -> MachinePlan:
    """Pair the modelled machines with existing Machines; the rest is created, or deleted oldest first.

    A Machine built from a modelled machine's target fills that slot (same phase preferred). Slots of
    out-of-date machines also take any Machine not built from the current target, such as one a test
    made by hand, so those are replaced like old machines instead of being duplicated.
    """
    unpaired = sorted(
        (m for m in existing if not m["metadata"].get("deletionTimestamp")),
        key=lambda m: (str(m["metadata"].get("creationTimestamp", "")), str(m["metadata"]["name"])),
        reverse=True,  # newest first: what stays unpaired, and is deleted, is the oldest
    )
    open_slots = slots(rollout)
    paired: list[tuple[Slot, Machine]] = []

    def pair(fits: Callable[[Slot, Machine], bool]) -> None:
        for slot in list(open_slots):
            machine = next((m for m in unpaired if fits(slot, m)), None)
            if machine is not None:
                open_slots.remove(slot)
                unpaired.remove(machine)
                paired.append((slot, machine))

    def outdated(slot: Slot, machine: Machine) -> bool:
        return slot[0] != rollout.target and built_from(machine) != rollout.target

    pair(lambda slot, m: built_from(m) == slot[0] and phase_of(m) == slot[1])
    pair(lambda slot, m: built_from(m) == slot[0])
    pair(lambda slot, m: outdated(slot, m) and phase_of(m) == slot[1])
    pair(outdated)
    report = [(machine, phase) for (_, phase), machine in paired if phase_of(machine) != phase]
    return MachinePlan(create=open_slots, report=report, delete=unpaired)


# -- object shapes ----------------------------------------------------------------------------------


def cluster_name(resource: Resource, owner: dict[str, Any]) -> str | None:
    """The owner's cluster as the owner itself says: MachineDeployment spec.clusterName, the cluster-name
    label, or an owner reference to a Cluster (which CAPI's Cluster controller adds)."""
    meta = owner["metadata"]
    if not resource.is_control_plane and (name := (owner.get("spec") or {}).get("clusterName")):
        return str(name)
    if label := (meta.get("labels") or {}).get(CLUSTER_NAME_LABEL):
        return str(label)
    clusters = [ref["name"] for ref in meta.get("ownerReferences") or [] if ref.get("kind") == "Cluster"]
    return str(clusters[0]) if clusters else None


def _ref(capi: str, api_version: str, kind: str, name: str, namespace: str) -> dict[str, str]:
    """A reference in the profile's shape: v1beta1 ObjectReference, v1beta2 {apiGroup, kind, name}."""
    if capi == "v1beta1":
        return {"apiVersion": api_version, "kind": kind, "name": name, "namespace": namespace}
    return {"apiGroup": api_version.partition("/")[0], "kind": kind, "name": name}


def new_machine(
    capi: str, resource: Resource, owner: dict[str, Any], cluster: str, target: Target
) -> Machine:
    """A Machine as KCP or a MachineSet creates it for `owner`, built from `target`."""
    meta, spec = owner["metadata"], owner.get("spec") or {}
    namespace = meta["namespace"]
    suffix = "".join(random.choices(_NAME_SUFFIX_ALPHABET, k=5))
    name = f"{meta['name']}-{suffix}"
    bootstrap_api = f"bootstrap.cluster.x-k8s.io/{capi}"
    if resource.is_control_plane:
        template = spec.get("machineTemplate") or {}
        labels = {CONTROL_PLANE_LABEL: "", CONTROL_PLANE_NAME_LABEL: meta["name"]}
    else:
        template = spec.get("template") or {}
        labels = {DEPLOYMENT_NAME_LABEL: meta["name"]}
    machine_spec: dict[str, Any] = {
        "clusterName": cluster,
        "version": target.version,
        "bootstrap": {"configRef": _ref(capi, bootstrap_api, "KubeadmConfig", name, namespace)},
        "infrastructureRef": _ref(capi, INFRA_API, "CloudStackMachine", name, namespace),
    }
    if failure_domain := (template.get("spec") or {}).get("failureDomain"):
        machine_spec["failureDomain"] = failure_domain
    return {
        "apiVersion": f"{MACHINE.group}/{capi}",
        "kind": MACHINE.kind,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                **((template.get("metadata") or {}).get("labels") or {}),
                CLUSTER_NAME_LABEL: cluster,
                **labels,
            },
            "annotations": {BUILT_FROM_ANNOTATION: encode_target(target)},
            "ownerReferences": [
                {
                    "apiVersion": f"{resource.group}/{capi}",
                    "kind": resource.kind,
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": machine_spec,
    }


def infra_machine(machine: Machine, template: dict[str, Any]) -> dict[str, Any]:
    """The CloudStackMachine CAPI clones from `template` for `machine`: named after the Machine's
    infrastructureRef, owned by the Machine, with the template's labels and annotations and the
    cloned-from ones."""
    meta = machine["metadata"]
    template_spec = (template.get("spec") or {}).get("template") or {}
    template_meta = template_spec.get("metadata") or {}
    return {
        "apiVersion": INFRA_API,
        "kind": INFRA_MACHINE.kind,
        "metadata": {
            "name": machine["spec"]["infrastructureRef"]["name"],
            "namespace": meta["namespace"],
            "labels": {
                **(template_meta.get("labels") or {}),
                CLUSTER_NAME_LABEL: machine["spec"]["clusterName"],
            },
            "annotations": {
                **(template_meta.get("annotations") or {}),
                CLONED_FROM_NAME: template["metadata"]["name"],
                CLONED_FROM_GROUPKIND: TEMPLATE_GROUPKIND,
            },
            "ownerReferences": [
                {
                    "apiVersion": machine["apiVersion"],
                    "kind": MACHINE.kind,
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": dict(template_spec.get("spec") or {}),
    }


def node_conditions(running: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The Node conditions CAPI's Machine controller reports: (v1beta2 `NodeReady` and `NodeHealthy`,
    v1beta1 `NodeHealthy`). Before the infrastructure reports a providerID both v1beta2 ones are Unknown
    (InspectionFailed, "Waiting for CloudStackMachine to report spec.providerID"); the v1beta1 one is
    False with severity Info and reason NodeProvisioning."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if running:
        current = [
            {"type": kind, "status": "True", "reason": kind, "message": "", "lastTransitionTime": now}
            for kind in ("NodeReady", "NodeHealthy")
        ]
        legacy = [{"type": "NodeHealthy", "status": "True", "lastTransitionTime": now}]
        return current, legacy
    message = "Waiting for CloudStackMachine to report spec.providerID"
    current = [
        {"type": kind, "status": "Unknown", "reason": "InspectionFailed", "message": message,
         "lastTransitionTime": now}
        for kind in ("NodeReady", "NodeHealthy")
    ]  # fmt: skip
    legacy = [
        {"type": "NodeHealthy", "status": "False", "severity": "Info", "reason": "NodeProvisioning",
         "lastTransitionTime": now}
    ]  # fmt: skip
    return current, legacy


def machine_status(capi: str, name: str, phase: str) -> dict[str, Any]:
    """The status fields a phase comes with: readiness flags, the Node once it is Running, and the Node
    conditions in both vocabularies (`node_conditions`)."""
    running = phase == RUNNING
    current, legacy = node_conditions(running)
    if capi == "v1beta1":
        node: dict[str, str] | None = {"apiVersion": "v1", "kind": "Node", "name": name} if running else None
        return {
            "phase": phase, "bootstrapReady": True, "infrastructureReady": running, "nodeRef": node,
            "conditions": legacy, "v1beta2": {"conditions": current},
        }  # fmt: skip
    return {
        "phase": phase,
        "initialization": {"bootstrapDataSecretCreated": True, "infrastructureProvisioned": running},
        "nodeRef": {"name": name} if running else None,
        "conditions": current,
        "deprecated": {"v1beta1": {"conditions": legacy}},
    }


# -- keeping them -----------------------------------------------------------------------------------


class MachineKeeper:
    """A watched cache of all Machines, and the writes that keep a rolled-out owner's Machines in step.

    Every write goes through the cache at once, so the next reconcile (before the watch catches up)
    plans from what is really there.
    """

    def __init__(self, api: Any, capi: str) -> None:
        self.api, self.capi = api, capi
        self.machines: dict[str, Machine] = {}  # by uid
        self.listed = False  # whether the first list has arrived: before it, `machines` proves nothing
        self._deleted: set[str] = set()  # deleted here; their watch events may still be on the way
        self._deleting: dict[str, Machine] = {}  # deleted here but held by a finalizer (a drain), by uid
        self._clusters: dict[str, str] = {}  # control plane uid -> the Cluster whose controlPlaneRef names it
        self._reported: set[str] = set()
        self._closed: set[str] = set()  # namespaces being deleted: nothing more can be created there
        self._infra: dict[str, tuple[str, str]] = {}  # Machine uid -> its CloudStackMachine made here

    def apply(self, event_type: str, objects: list[Machine]) -> None:
        """A watch event (ADDED, MODIFIED, DELETED) or a fresh list (LISTED) of Machines."""
        if event_type == "LISTED":
            self.machines, self._deleted, self._deleting, self.listed = {}, set(), {}, True
            listed = {m["metadata"]["uid"] for m in objects}
            for uid in [uid for uid in self._infra if uid not in listed]:  # went while the watch was down
                self._release_infra({"metadata": {"uid": uid}})
        for machine in objects:
            uid = machine["metadata"]["uid"]
            if event_type == "DELETED":
                self._release_infra(machine)
                self.machines.pop(uid, None)
                self._deleted.discard(uid)
                self._deleting.pop(uid, None)
            elif uid in self._deleted:
                if uid in self._deleting and machine["metadata"].get("deletionTimestamp"):
                    self._deleting[uid] = machine
            elif not _older(machine, self.machines.get(uid)):
                self.machines[uid] = machine

    def owned(self, resource: Resource, owner: dict[str, Any]) -> list[Machine]:
        meta, label = owner["metadata"], owner_label(resource)
        return [
            m
            for m in self.machines.values()
            if m["metadata"].get("namespace") == meta["namespace"]
            and (m["metadata"].get("labels") or {}).get(label) == meta["name"]
        ]

    def deleting(self, resource: Resource, owner: dict[str, Any]) -> list[Machine]:
        """The owner's Machines that are deleted but still there (their drain holds them)."""
        meta, label = owner["metadata"], owner_label(resource)
        candidates = [*self.machines.values(), *self._deleting.values()]
        return [
            m
            for m in candidates
            if m["metadata"].get("deletionTimestamp")
            and m["metadata"].get("namespace") == meta["namespace"]
            and (m["metadata"].get("labels") or {}).get(label) == meta["name"]
        ]

    def sync(self, resource: Resource, owner: dict[str, Any], rollout: Rollout) -> None:
        """Create, update and delete Machines until the owner's match `rollout` (once `listed`)."""
        if owner["metadata"]["namespace"] in self._closed:
            return
        cluster = cluster_name(resource, owner) or self._referring_cluster(resource, owner)
        if cluster is None:
            self._once(f"{owner['metadata']['uid']}/cluster", logging.WARNING, "%s %s/%s: no cluster name; "
                       "its Machines are not simulated", resource.kind, owner["metadata"]["namespace"],
                       owner["metadata"]["name"])  # fmt: skip
            return
        plan = plan_machines(rollout, self.owned(resource, owner))
        for target, phase in plan.create:
            self._create(new_machine(self.capi, resource, owner, cluster, target), phase)
        for machine, phase in plan.report:
            self._report(machine, phase)
        for machine in plan.delete:
            self._delete(machine)

    def _referring_cluster(self, resource: Resource, owner: dict[str, Any]) -> str | None:
        """The Cluster whose spec.controlPlaneRef names this control plane (no Cluster controller runs
        here to add the owner reference); remembered once found."""
        meta = owner["metadata"]
        if not resource.is_control_plane or meta["uid"] in self._clusters:
            return self._clusters.get(meta["uid"])
        listing = self._call(
            f"list Clusters in {meta['namespace']}",
            self.api.list_namespaced_custom_object,
            CLUSTER.group, self.capi, meta["namespace"], CLUSTER.plural,
        )  # fmt: skip
        clusters = listing.get("items") or [] if isinstance(listing, dict) else []
        for cluster in clusters:
            ref = (cluster.get("spec") or {}).get("controlPlaneRef") or {}
            if (ref.get("kind"), ref.get("name")) == (resource.kind, meta["name"]):
                self._clusters[meta["uid"]] = str(cluster["metadata"]["name"])
        return self._clusters.get(meta["uid"])

    def _create(self, machine: Machine, phase: str) -> None:
        meta = machine["metadata"]
        created = self._call(
            f"create Machine {meta['namespace']}/{meta['name']}",
            self.api.create_namespaced_custom_object,
            MACHINE.group, self.capi, meta["namespace"], MACHINE.plural, machine,
        )  # fmt: skip
        if isinstance(created, dict):
            self.machines[created["metadata"]["uid"]] = created
            self._create_infra(created)
            self._report(created, phase)
        elif created is None:  # the namespace is gone or going: its owners are left alone from now on
            self._closed.add(meta["namespace"])

    def _create_infra(self, machine: Machine) -> None:
        """The Machine's CloudStackMachine, cloned from the template it is built from (none when that
        template is not a CloudStackMachineTemplate or cannot be read)."""
        target, namespace = built_from(machine), machine["metadata"]["namespace"]
        if (
            target is None
            or target.infrastructure is None
            or target.infrastructure[1] != MACHINE_TEMPLATE.kind
        ):
            return
        name = target.infrastructure[2]
        template = self._call(
            f"read CloudStackMachineTemplate {namespace}/{name}",
            self.api.get_namespaced_custom_object,
            INFRA_GROUP, INFRA_VERSION, namespace, MACHINE_TEMPLATE.plural, name,
        )  # fmt: skip
        if not isinstance(template, dict):
            return
        body = infra_machine(machine, template)
        self._call(
            f"create CloudStackMachine {namespace}/{body['metadata']['name']}",
            self.api.create_namespaced_custom_object,
            INFRA_GROUP, INFRA_VERSION, namespace, INFRA_MACHINE.plural, body,
        )  # fmt: skip
        self._infra[machine["metadata"]["uid"]] = (namespace, body["metadata"]["name"])

    def _release_infra(self, machine: Machine) -> None:
        """A Machine made here is gone: so is its CloudStackMachine (CAPI's Machine controller deletes it)."""
        where = self._infra.pop(machine["metadata"]["uid"], None)
        if where is not None:
            self._call(
                f"delete CloudStackMachine {where[0]}/{where[1]}",
                self.api.delete_namespaced_custom_object,
                INFRA_GROUP, INFRA_VERSION, where[0], INFRA_MACHINE.plural, where[1],
            )  # fmt: skip

    def _report(self, machine: Machine, phase: str) -> None:
        meta = machine["metadata"]
        written = self._call(
            f"report Machine {meta['namespace']}/{meta['name']} {phase}",
            self.api.patch_namespaced_custom_object_status,
            MACHINE.group, self.capi, meta["namespace"], MACHINE.plural, meta["name"],
            {"status": machine_status(self.capi, meta["name"], phase)},
        )  # fmt: skip
        if isinstance(written, dict):
            self.machines[meta["uid"]] = written

    def _delete(self, machine: Machine) -> None:
        meta = machine["metadata"]
        answer = self._call(
            f"delete Machine {meta['namespace']}/{meta['name']}",
            self.api.delete_namespaced_custom_object,
            MACHINE.group, self.capi, meta["namespace"], MACHINE.plural, meta["name"],
        )  # fmt: skip
        if answer is not _FAILED:
            self.machines.pop(meta["uid"], None)
            self._deleted.add(meta["uid"])
            if isinstance(answer, dict) and (answer.get("metadata") or {}).get("deletionTimestamp"):
                self._deleting[meta["uid"]] = answer  # a finalizer keeps it until its drain is done

    def _call(self, what: str, request: Callable[..., Any], *args: Any) -> Any:
        """One write: its answer, None when the object is gone, `_FAILED` when it was refused.

        A conflict waits for the watch to bring the newer object; anything else is logged once.
        """
        from kubernetes.client.exceptions import ApiException

        try:
            answer = request(*args)
        except ApiException as exc:
            if exc.status == 404 or namespace_terminating(exc):
                return None
            if exc.status != 409:
                self._once(f"{what}/{exc.status}", logging.ERROR, "%s rejected (%s): %s", what, exc.status,
                           exc.body)  # fmt: skip
            return _FAILED
        log.debug("%s", what)
        return answer

    def _once(self, key: str, level: int, message: str, *args: Any) -> None:
        if key not in self._reported:
            self._reported.add(key)
            log.log(level, message, *args)


_FAILED = object()


def namespace_terminating(exc: Any) -> bool:
    """Whether an API error says the object's namespace is being deleted (403, cause
    NamespaceTerminating): the object is on its way out, as after a 404, not a refusal to report."""
    return exc.status == 403 and "NamespaceTerminating" in str(exc.body or "")


def _older(machine: Machine, cached: Machine | None) -> bool:
    """Whether a watch event is older than the copy a write already put in the cache."""
    if cached is None:
        return False
    new, old = machine["metadata"].get("resourceVersion", ""), cached["metadata"].get("resourceVersion", "")
    return new.isdigit() and old.isdigit() and int(new) < int(old)
