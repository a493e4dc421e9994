"""Nodes for the Machines of a workload cluster, and the drain CAPI runs before a Machine goes away.

Each Machine of a cluster with a workload control plane (not Provisioning/Pending) gets a Node of the
Machine's name, as kubeadm registers it: kubelet version = the Machine's version, providerID
`cloudstack:///<vm id>`, control-plane nodes labelled and tainted `node-role.kubernetes.io/control-plane`,
workers with no taints. KWOK manages it (annotation `kwok.x-k8s.io/node: fake`), so it turns Ready and
its pods run. The Machine gets status.nodeRef in its profile's shape and CAPI's finalizer.

A deleted Machine is drained as CAPI's Machine controller does: cordon, then evict every pod on the node
(DaemonSet and mirror pods aside) through the policy/v1 Eviction API. While evictions are refused or
evicted pods still exist, the Machine stays deleting with `status.deletion.nodeDrainStartTime` and the
blocked-drain conditions (v1beta1: `DrainingSucceeded` False/`Draining`; v1beta2: `Deleting`
True/`DrainingNode`), with CAPI's "Drain not completed yet (started at …):" message in the layout of
the profile's release (`drain_message`). Once the drain
completes, or the Machine's node drain timeout passes, the Node is deleted, the Machine's infrastructure
released (`release`) and the finalizer removed.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

log = logging.getLogger("tests.testenv.workload")

MACHINE_FINALIZER = "machine.cluster.x-k8s.io"
CONTROL_PLANE_ROLE = "node-role.kubernetes.io/control-plane"
CONTROL_PLANE_MACHINE_LABEL = "cluster.x-k8s.io/control-plane"
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
NOT_YET_NODES = ("Pending", "Provisioning")
PROVIDER_ID_NAMESPACE = uuid.UUID("6f1d0c52-1f7e-4e0b-9a57-0c5b6f0d7a11")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}

Machine = dict[str, Any]
ClusterKey = tuple[str, str]


def go_duration_seconds(text: str) -> float:
    """Seconds of a Go/metav1.Duration string such as "1m30s"; a malformed one is a ValueError."""
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def drain_timeout_seconds(capi: str, machine: Machine) -> float | None:
    """The Machine's node drain timeout; None (or 0) means wait for ever, as in CAPI."""
    spec = machine.get("spec") or {}
    if capi == "v1beta1":
        raw = spec.get("nodeDrainTimeout")
        seconds = go_duration_seconds(raw) if raw else 0.0
    else:
        seconds = float((spec.get("deletion") or {}).get("nodeDrainTimeoutSeconds") or 0)
    return seconds or None


def vm_id(machine: Machine) -> str:
    """The VM id behind a Machine: its providerID's, else a stable one derived from the Machine's uid."""
    provider_id = str((machine.get("spec") or {}).get("providerID") or "")
    if provider_id.startswith("cloudstack:///"):
        return provider_id.removeprefix("cloudstack:///")
    return str(uuid.uuid5(PROVIDER_ID_NAMESPACE, machine["metadata"]["uid"]))


def is_control_plane(machine: Machine) -> bool:
    return CONTROL_PLANE_MACHINE_LABEL in (machine["metadata"].get("labels") or {})


def node_for(machine: Machine) -> dict[str, Any]:
    """The Node kubeadm would register for `machine`, marked for KWOK."""
    meta = machine["metadata"]
    name = meta["name"]
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
    }
    taints: list[dict[str, str]] = []
    if is_control_plane(machine):
        labels[CONTROL_PLANE_ROLE] = ""
        taints.append({"key": CONTROL_PLANE_ROLE, "effect": "NoSchedule"})
    version = str((machine.get("spec") or {}).get("version") or "")
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {
                KWOK_NODE_ANNOTATION: "fake",
                "cluster.x-k8s.io/machine": name,
                "cluster.x-k8s.io/cluster-namespace": meta["namespace"],
            },
        },
        "spec": {"providerID": f"cloudstack:///{vm_id(machine)}", "taints": taints},
        "status": {
            "nodeInfo": {
                "kubeletVersion": version,
                "kubeProxyVersion": version,
                "architecture": "amd64",
                "operatingSystem": "linux",
                "containerRuntimeVersion": "containerd://1.7.0",
                "osImage": "Ubuntu 22.04 LTS",
                "kernelVersion": "5.15.0",
                "machineID": "",
                "systemUUID": vm_id(machine),
                "bootID": "",
            },
            "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
            "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
        },
    }


def node_ref(capi: str, node: dict[str, Any]) -> dict[str, str]:
    if capi == "v1beta1":
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "name": node["metadata"]["name"],
            "uid": node["metadata"]["uid"],
        }
    return {"name": node["metadata"]["name"]}


def pod_list(pods: list[Any], limit: int) -> str:
    """`ns/name` of the first `limit` pods, then how many more, as CAPI lists them in messages."""
    names = [f"{p.metadata.namespace}/{p.metadata.name}" for p in pods]
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


PDB_REFUSAL = "Cannot evict pod as it would violate the pod's disruption budget."


def drain_message(capi: str, started: str, deleting: list[Any], failed: dict[str, list[Any]]) -> str:
    """CAPI's condition message for a drain that has not completed, in the layout of the profile's
    release. Pods are listed in `ns/name` order, as CAPI sorts them before evicting.

    CAPI v1.10 (v1beta1): a line for the pods still terminating (up to 5 named), then "Pods with
    eviction failed:" with one indented line per error (up to 5) naming its pods (up to 3).
    CAPI v1.11+ (v1beta2): one line per group of pods (up to 3 named), the pods first: those still
    terminating, then one per eviction error (up to 5; a budget's refusal starts lower-case, any other
    error with "failed to evict Pod, "), then a count of the pods with other errors.
    """

    def ordered(pods: list[Any]) -> list[Any]:
        return sorted(pods, key=lambda p: (p.metadata.namespace, p.metadata.name))

    message = f"Drain not completed yet (started at {started}):"
    errors = sorted(failed)
    shown, skipped = errors[:5], errors[5:]
    skipped_pods = sum(len(failed[e]) for e in skipped)
    plural = "s" if skipped_pods != 1 else ""
    if capi == "v1beta1":
        if deleting:
            message += f"\n* Pods with deletionTimestamp that still exist: {pod_list(ordered(deleting), 5)}"
        if failed:
            message += "\n* Pods with eviction failed:"
            for error in shown:
                message += f"\n  * {error}: {pod_list(ordered(failed[error]), 3)}"
            if skipped:
                more = "1 more error" if len(skipped) == 1 else f"{len(skipped)} more errors"
                message += f"\n  * ... ({more} applying to {skipped_pods} Pod{plural})"
        return message

    def pods(group: list[Any]) -> str:
        return f"{'Pods' if len(group) > 1 else 'Pod'} {pod_list(ordered(group), 3)}"

    if deleting:
        message += f"\n* {pods(deleting)}: deletionTimestamp set, but still not removed from the Node"
    for error in shown:
        text = error.replace(PDB_REFUSAL, PDB_REFUSAL[0].lower() + PDB_REFUSAL[1:])
        if not text.startswith("cannot evict pod as it would violate the pod's disruption budget."):
            text = f"failed to evict Pod, {text}"
        message += f"\n* {pods(failed[error])}: {text}"
    if skipped:
        message += f"\n* {skipped_pods} Pod{plural} with other issues"
    return message


def eviction_error(exc: Any) -> str:
    """The message CAPI records for a refused eviction: the status message plus its causes."""
    import json

    try:
        status = json.loads(exc.body or "{}")
    except ValueError:
        return str(exc.reason)
    message = str(status.get("message") or exc.reason)
    causes = [str(c.get("message", "")) for c in (status.get("details") or {}).get("causes") or []]
    return f"{message} {','.join(causes)}" if causes else message


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _set_condition(conditions: list[dict[str, Any]], condition: dict[str, Any]) -> list[dict[str, Any]]:
    kept = [c for c in conditions if c.get("type") != condition["type"]]
    old = next((c for c in conditions if c.get("type") == condition["type"]), None)
    if old is not None and old.get("status") == condition["status"]:
        condition = {
            **condition,
            "lastTransitionTime": old.get("lastTransitionTime", condition["lastTransitionTime"]),
        }
    return [*kept, condition]


def blocked_drain_status(capi: str, machine: Machine, started: str, message: str) -> dict[str, Any]:
    """The status CAPI reports for a Machine whose node drain has not completed."""
    status = machine.get("status") or {}
    now = _now()
    generation = machine["metadata"].get("generation", 1)
    v1beta1 = {
        "type": "DrainingSucceeded",
        "status": "False",
        "severity": "Info",
        "reason": "Draining",
        "message": message,
        "lastTransitionTime": now,
    }
    v1beta2 = {
        "type": "Deleting",
        "status": "True",
        "reason": "DrainingNode",
        "message": message,
        "lastTransitionTime": now,
        "observedGeneration": generation,
    }
    deletion = {**(status.get("deletion") or {}), "nodeDrainStartTime": started}
    if capi == "v1beta1":
        newer = (status.get("v1beta2") or {}).get("conditions") or []
        return {
            "phase": "Deleting",
            "deletion": deletion,
            "conditions": _set_condition(status.get("conditions") or [], v1beta1),
            "v1beta2": {**(status.get("v1beta2") or {}), "conditions": _set_condition(newer, v1beta2)},
        }
    older = ((status.get("deprecated") or {}).get("v1beta1") or {}).get("conditions") or []
    return {
        "phase": "Deleting",
        "deletion": deletion,
        "conditions": _set_condition(status.get("conditions") or [], v1beta2),
        "deprecated": {
            "v1beta1": {
                **((status.get("deprecated") or {}).get("v1beta1") or {}),
                "conditions": _set_condition(older, v1beta1),
            }
        },
    }


def _nodes_by_name(workload: Any) -> dict[str, Any]:
    from kubernetes import client

    return {node.metadata.name: node for node in client.CoreV1Api(workload).list_node().items}


class NodeKeeper:
    """Registers Nodes for Machines and drains them when their Machines are deleted."""

    def __init__(
        self, mgmt: Any, capi: str, release: Callable[[Machine], None] = lambda _machine: None
    ) -> None:
        self.mgmt, self.capi, self.release = mgmt, capi, release
        self._messages: dict[str, str] = {}  # Machine uid -> last drain message written

    def sync(self, machines: list[Machine], workloads: dict[ClusterKey, Any]) -> None:
        nodes: dict[ClusterKey, dict[str, Any]] = {}  # one LIST of Nodes per workload cluster and pass
        for machine in machines:
            meta = machine["metadata"]
            cluster = (meta["namespace"], str((machine.get("spec") or {}).get("clusterName") or ""))
            workload = workloads.get(cluster)
            try:
                if workload is None:
                    if meta.get("deletionTimestamp") and MACHINE_FINALIZER in (meta.get("finalizers") or []):
                        self._finish(machine)  # its Cluster is gone: CAPI skips the drain, there is no node
                    continue
                if cluster not in nodes:
                    nodes[cluster] = _nodes_by_name(workload)
                if meta.get("deletionTimestamp"):
                    if MACHINE_FINALIZER in (meta.get("finalizers") or []):
                        self._drain(machine, workload, nodes[cluster].get(meta["name"]))
                elif (machine.get("status") or {}).get("phase") not in NOT_YET_NODES:
                    self._register(machine, workload, nodes[cluster].get(meta["name"]))
            except Exception as exc:  # one Machine's trouble must not stop the others
                log.warning("Machine %s/%s: %s", meta["namespace"], meta["name"], exc)

    def _custom(self) -> Any:
        from kubernetes import client

        return client.CustomObjectsApi(self.mgmt)

    def _register(self, machine: Machine, workload: Any, node: Any) -> None:
        from kubernetes import client

        meta = machine["metadata"]
        if node is None:
            node = client.CoreV1Api(workload).create_node(node_for(machine))
            log.info("Node %s registered for Machine %s/%s", meta["name"], meta["namespace"], meta["name"])
        node_dict = workload.sanitize_for_serialization(node)
        if MACHINE_FINALIZER not in (meta.get("finalizers") or []):
            self._custom().patch_namespaced_custom_object(
                "cluster.x-k8s.io", self.capi, meta["namespace"], "machines", meta["name"],
                {"metadata": {"finalizers": [*(meta.get("finalizers") or []), MACHINE_FINALIZER]},
                 "spec": {"providerID": node_dict["spec"]["providerID"]}},
            )  # fmt: skip
        ref = node_ref(self.capi, node_dict)
        if (machine.get("status") or {}).get("nodeRef") != ref:
            self._custom().patch_namespaced_custom_object_status(
                "cluster.x-k8s.io", self.capi, meta["namespace"], "machines", meta["name"],
                {"status": {"nodeRef": ref}},
            )  # fmt: skip

    def _drain(self, machine: Machine, workload: Any, node: Any) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        meta = machine["metadata"]
        core = client.CoreV1Api(workload)
        name = meta["name"]
        if node is not None:
            started = ((machine.get("status") or {}).get("deletion") or {}).get(
                "nodeDrainStartTime"
            ) or _now()
            timeout = drain_timeout_seconds(self.capi, machine)
            begun = datetime.strptime(started, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
            timed_out = timeout is not None and (datetime.now(timezone.utc) - begun).total_seconds() > timeout
            if not timed_out:
                if not node.spec.unschedulable:
                    core.patch_node(name, {"spec": {"unschedulable": True}})
                message = self._evict(core, name, started)
                if message:
                    if self._messages.get(meta["uid"]) != message:
                        self._messages[meta["uid"]] = message
                        self._custom().patch_namespaced_custom_object_status(
                            "cluster.x-k8s.io", self.capi, meta["namespace"], "machines", name,
                            {"status": blocked_drain_status(self.capi, machine, started, message)},
                        )  # fmt: skip
                    return
            else:
                log.info(
                    "Machine %s/%s: node drain timeout passed; deleting the node", meta["namespace"], name
                )
            try:
                core.delete_node(name)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        self._finish(machine)

    def _finish(self, machine: Machine) -> None:
        """Release the Machine's VM and remove CAPI's finalizer, which lets the deletion complete."""
        meta = machine["metadata"]
        self.release(machine)
        finalizers = [f for f in meta.get("finalizers") or [] if f != MACHINE_FINALIZER]
        self._custom().patch_namespaced_custom_object(
            "cluster.x-k8s.io", self.capi, meta["namespace"], "machines", meta["name"],
            {"metadata": {"finalizers": finalizers, "resourceVersion": meta["resourceVersion"]}},
        )  # fmt: skip
        self._messages.pop(meta["uid"], None)

    def _evict(self, core: Any, node: str, started: str) -> str:
        """Evict what is on `node`; the blocked-drain message, or "" once nothing is left to drain."""
        from kubernetes.client.exceptions import ApiException

        pods = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items
        deleting, failed = [], {}
        for pod in pods:
            owners = pod.metadata.owner_references or []
            if any(o.kind == "DaemonSet" for o in owners) or "kubernetes.io/config.mirror" in (
                pod.metadata.annotations or {}
            ):
                continue
            if pod.status and pod.status.phase in ("Succeeded", "Failed"):
                continue
            if pod.metadata.deletion_timestamp:
                deleting.append(pod)
                continue
            body = {"apiVersion": "policy/v1", "kind": "Eviction",
                    "metadata": {"name": pod.metadata.name, "namespace": pod.metadata.namespace}}  # fmt: skip
            try:
                core.create_namespaced_pod_eviction(pod.metadata.name, pod.metadata.namespace, body)
                deleting.append(pod)
            except ApiException as exc:
                if exc.status == 404:
                    continue
                reason = eviction_error(exc) if exc.status == 429 else str(exc.reason)
                failed.setdefault(reason, []).append(pod)
        if not deleting and not failed:
            return ""
        return drain_message(self.capi, started, deleting, failed)
