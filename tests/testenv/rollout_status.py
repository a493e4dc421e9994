"""How CAPI reports a rollout in the status of KubeadmControlPlanes and MachineDeployments.

Two profiles, matching the CRDs the test bed installs:
- v1beta1 (CAPI v1.10): updatedReplicas/readyReplicas/unavailableReplicas, conditions with severity
  (`Ready`, `Available`, `MachinesSpecUpToDate`, ...) plus the `status.v1beta2` preview block.
- v1beta2 (CAPI >= v1.11): upToDateReplicas/availableReplicas/readyReplicas, metav1 conditions
  (`Available`, `RollingOut`, `MachinesUpToDate`, ...), `versions[]`, and the old counters and
  conditions under `status.deprecated.v1beta1`.
Reasons and messages follow the upstream condition constants and message formats; everything written
here must pass the upstream CRD schema, which the apiserver enforces on the status subresource too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tests.testenv.rollout_model import (
    Controls,
    Rollout,
    Stage,
    Strategy,
    Target,
    ref_key,
    resolve_fencepost,
    rolling,
    version_key,
)

CLUSTER_NAME_LABEL = "cluster.x-k8s.io/cluster-name"
CONTROL_PLANE_LABEL = "cluster.x-k8s.io/control-plane"
PROFILES = ("v1beta1", "v1beta2")
SEVERITY_ORDER = ("Error", "Warning", "Info")

Status = dict[str, Any]
Condition = dict[str, Any]


@dataclass(frozen=True)
class Resource:
    kind: str
    group: str
    plural: str

    @property
    def is_control_plane(self) -> bool:
        return self.kind == "KubeadmControlPlane"


KUBEADM_CONTROL_PLANE = Resource(
    "KubeadmControlPlane", "controlplane.cluster.x-k8s.io", "kubeadmcontrolplanes"
)
MACHINE_DEPLOYMENT = Resource("MachineDeployment", "cluster.x-k8s.io", "machinedeployments")
RESOURCES = (KUBEADM_CONTROL_PLANE, MACHINE_DEPLOYMENT)

# Status keys this simulator computes; anything else already in a status is left as it is.
_OWNED_KEYS = {
    "v1beta1": {
        "observedGeneration",
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
        "unavailableReplicas",
        "version",
        "ready",
        "initialized",
        "phase",
        "selector",
        "conditions",
        "v1beta2",
    },
    "v1beta2": {
        "observedGeneration",
        "replicas",
        "upToDateReplicas",
        "readyReplicas",
        "availableReplicas",
        "version",
        "versions",
        "initialization",
        "phase",
        "selector",
        "conditions",
        "deprecated",
    },
}


# -- reading an object ------------------------------------------------------------------------------


def desired_target(resource: Resource, obj: dict[str, Any]) -> Target:
    """The spec new machines are built from: version and referenced templates (both API profiles)."""
    spec = obj.get("spec") or {}
    if resource.is_control_plane:
        machine_template = spec.get("machineTemplate") or {}
        template_spec = machine_template.get("spec") or machine_template  # v1beta2 nests the ref in spec
        return Target(str(spec.get("version", "")), ref_key(template_spec.get("infrastructureRef")))
    machine_spec = (spec.get("template") or {}).get("spec") or {}
    return Target(
        str(machine_spec.get("version", "")),
        ref_key(machine_spec.get("infrastructureRef")),
        ref_key((machine_spec.get("bootstrap") or {}).get("configRef")),
    )


def desired_strategy(resource: Resource, capi: str, obj: dict[str, Any]) -> Strategy:
    """The rollout strategy CAPI applies to `obj`, with CAPI's defaults: MachineDeployment v1beta1
    spec.strategy, v1beta2 spec.rollout.strategy (RollingUpdate or OnDelete, maxSurge 1, maxUnavailable 0,
    int or percentage); KubeadmControlPlane v1beta1 spec.rolloutStrategy, v1beta2 spec.rollout.strategy
    (RollingUpdate only, maxSurge 0 or 1: with 0 a machine is deleted before its replacement is made)."""
    spec = obj.get("spec") or {}
    if capi == "v1beta1":
        strategy = spec.get("rolloutStrategy" if resource.is_control_plane else "strategy") or {}
    else:
        strategy = (spec.get("rollout") or {}).get("strategy") or {}
    if not resource.is_control_plane and strategy.get("type") == "OnDelete":
        return Strategy(on_delete=True)
    rolling_update = strategy.get("rollingUpdate") or {}
    desired = desired_replicas(obj)
    surge = resolve_fencepost(rolling_update.get("maxSurge"), desired, round_up=True, default=1)
    if resource.is_control_plane:
        return rolling(min(surge, 1), 0)
    unavailable = resolve_fencepost(rolling_update.get("maxUnavailable"), desired, round_up=False, default=0)
    return rolling(surge, unavailable)


def desired_replicas(obj: dict[str, Any]) -> int:
    """spec.replicas; upstream defaulting webhooks set 1 when it is omitted."""
    replicas = (obj.get("spec") or {}).get("replicas")
    return 1 if replicas is None else max(0, int(replicas))


def adopt(resource: Resource, capi: str, obj: dict[str, Any]) -> Rollout:
    """Rebuild a Rollout for an object seen for the first time, trusting what its status reports.

    A new object (no observedGeneration yet) starts fully rolled out. An object whose generation moved
    past observedGeneration changed while nobody watched; with no record of its previous spec, that
    change is treated as one that needs a rollout.
    """
    target, desired = desired_target(resource, obj), desired_replicas(obj)
    status = obj.get("status") or {}
    if "observedGeneration" not in status:
        return Rollout.completed(target, desired)
    versions = [str(v["version"]) for v in status.get("versions") or [] if v.get("version")]
    old_version = str(
        status.get("version") or (min(versions, key=version_key) if versions else target.version)
    )
    if status["observedGeneration"] != obj["metadata"].get("generation"):
        up_to_date = 0
    else:
        counter = "upToDateReplicas" if capi == "v1beta2" else "updatedReplicas"
        up_to_date = min(desired, max(0, int(status.get(counter) or 0)))
    same_version = old_version == target.version
    outdated = Target(old_version, None if same_version else target.infrastructure, target.bootstrap)
    return Rollout(
        target=target, desired=desired, machines=[outdated] * (desired - up_to_date) + [target] * up_to_date
    )


def _selector(resource: Resource, obj: dict[str, Any]) -> str | None:
    if resource.is_control_plane:
        cluster = (obj["metadata"].get("labels") or {}).get(CLUSTER_NAME_LABEL)
        return f"{CLUSTER_NAME_LABEL}={cluster},{CONTROL_PLANE_LABEL}" if cluster else None
    labels = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or None


# -- conditions -------------------------------------------------------------------------------------


def condition_reason(text: str) -> str:
    """A CamelCase reason valid for both condition schemas (v1beta2 requires ^[A-Za-z][A-Za-z0-9_,:]*)."""
    words = re.findall(r"[A-Za-z0-9]+", text)
    reason = "".join(w[:1].upper() + w[1:] for w in words).lstrip("0123456789")
    return reason[:256] or "RolloutFailed"


def _cond(kind: str, status: bool, reason: str, message: str = "") -> Condition:
    """A metav1.Condition as CAPI's v1beta2 contract writes it (reason always set, message may be empty)."""
    return {"type": kind, "status": "True" if status else "False", "reason": reason, "message": message}


def _legacy(
    kind: str, reason: str | None = None, severity: str | None = None, message: str | None = None
) -> Condition:
    """A v1beta1 CAPI condition: True carries nothing else; False carries reason, severity and message."""
    if reason is None:
        return {"type": kind, "status": "True"}
    return {
        "type": kind,
        "status": "False",
        "reason": reason,
        "severity": severity,
        "message": message or reason,
    }


def _legacy_summary(conditions: list[Condition]) -> list[Condition]:
    """Prepend `Ready`, mirroring the most severe False condition, the way v1beta1 summaries work."""
    failing = [c for c in conditions if c["status"] != "True"]
    if not failing:
        ready = _legacy("Ready")
    else:
        worst = min(failing, key=lambda c: SEVERITY_ORDER.index(c["severity"]))
        ready = _legacy("Ready", worst["reason"], worst["severity"], worst["message"])
    return [ready, *sorted(conditions, key=lambda c: str(c["type"]))]


def _machines_ready_message(rollout: Rollout, controls: Controls) -> str:
    if rollout.failing(controls):
        return f"* Machine replacing an out-of-date replica failed: {controls.fail_reason}"
    return (
        "* Machine replacing an out-of-date replica: waiting for its infrastructure and Node to become ready"
    )


def _current_conditions(resource: Resource, rollout: Rollout, controls: Controls) -> list[Condition]:
    """The metav1 conditions (v1beta2 contract): top level in v1beta2, `status.v1beta2` in v1beta1."""
    replicas, desired, outdated = rollout.replicas, rollout.desired, len(rollout.outdated)
    reasons = "".join(f"\n{r}" for r in rollout.outdated_reasons())
    conditions = [
        _cond("Available", rollout.ready >= (1 if resource.is_control_plane else desired), "Available")
    ]
    if conditions[0]["status"] == "False":
        conditions[0]["reason"] = "NotAvailable"
    if resource.is_control_plane:
        conditions += [
            _cond("Initialized", True, "Initialized"),
            _cond("CertificatesAvailable", True, "Available"),
            _cond("EtcdClusterHealthy", True, "Healthy"),
            _cond("ControlPlaneComponentsHealthy", True, "Healthy"),
        ]
    if replicas == 0:
        conditions += [
            _cond("MachinesReady", True, "NoReplicas"),
            _cond("MachinesUpToDate", True, "NoReplicas"),
        ]
    else:
        if rollout.stage is Stage.PROVISIONING:
            reason = condition_reason(controls.fail_reason or "") if rollout.failing(controls) else "NotReady"
            conditions.append(
                _cond("MachinesReady", False, reason, _machines_ready_message(rollout, controls))
            )
        else:
            conditions.append(_cond("MachinesReady", True, "Ready"))
        if outdated:
            message = f"* {outdated} Machines are not up-to-date:" + reasons.replace("\n*", "\n  *")
            conditions.append(_cond("MachinesUpToDate", False, "NotUpToDate", message))
        else:
            conditions.append(_cond("MachinesUpToDate", True, "UpToDate"))
    if outdated:
        conditions.append(
            _cond(
                "RollingOut", True, "RollingOut", f"Rolling out {outdated} not up-to-date replicas{reasons}"
            )
        )
    else:
        conditions.append(_cond("RollingOut", False, "NotRollingOut"))
    if replicas < desired:
        conditions.append(
            _cond("ScalingUp", True, "ScalingUp", f"Scaling up from {replicas} to {desired} replicas")
        )
    else:
        conditions.append(_cond("ScalingUp", False, "NotScalingUp"))
    if replicas > desired:
        conditions.append(
            _cond("ScalingDown", True, "ScalingDown", f"Scaling down from {replicas} to {desired} replicas")
        )
    else:
        conditions.append(_cond("ScalingDown", False, "NotScalingDown"))
    return [
        *conditions,
        _cond("Remediating", False, "NotRemediating"),
        _cond("Deleting", False, "NotDeleting"),
        _cond("Paused", False, "NotPaused"),
    ]


def _legacy_conditions(resource: Resource, rollout: Rollout, controls: Controls) -> list[Condition]:
    """The v1beta1 conditions: top level in v1beta1, `status.deprecated.v1beta1` in v1beta2."""
    replicas, desired, outdated = rollout.replicas, rollout.desired, len(rollout.outdated)
    if rollout.failing(controls):
        machines_ready = _legacy(
            "MachinesReady" if resource.is_control_plane else "MachineSetReady",
            condition_reason(controls.fail_reason or ""),
            "Error",
            _machines_ready_message(rollout, controls),
        )
    elif rollout.stage is Stage.PROVISIONING:
        machines_ready = _legacy(
            "MachinesReady" if resource.is_control_plane else "MachineSetReady",
            "WaitingForInfrastructure",
            "Info",
            f"{rollout.ready} of {replicas} completed",
        )
    else:
        machines_ready = _legacy("MachinesReady" if resource.is_control_plane else "MachineSetReady")
    if not resource.is_control_plane:
        available = rollout.ready >= desired
        return _legacy_summary(
            [
                _legacy("Available")
                if available
                else _legacy(
                    "Available",
                    "WaitingForAvailableMachines",
                    "Warning",
                    f"Minimum availability requires {desired} replicas, current {rollout.ready} available",
                ),
                machines_ready,
            ]
        )
    if replicas > desired:
        resized = _legacy(
            "Resized",
            "ScalingDown",
            "Warning",
            f"Scaling down control plane to {desired} replicas (actual {replicas})",
        )
    elif replicas < desired:
        resized = _legacy(
            "Resized",
            "ScalingUp",
            "Warning",
            f"Scaling up control plane to {desired} replicas (actual {replicas})",
        )
    else:
        resized = _legacy("Resized")
    up_to_date = (
        _legacy("MachinesSpecUpToDate")
        if not outdated
        else _legacy(
            "MachinesSpecUpToDate",
            "RollingUpdateInProgress",
            "Warning",
            f"Rolling {outdated} replicas with outdated spec ({replicas - outdated} replicas up to date)",
        )
    )
    return _legacy_summary(
        [
            _legacy("Available"),
            _legacy("CertificatesAvailable"),
            _legacy("ControlPlaneComponentsHealthy"),
            _legacy("EtcdClusterHealthy"),
            _legacy("MachinesCreated"),
            machines_ready,
            up_to_date,
            resized,
        ]
    )


def _stamp(
    new: list[Condition], old: list[Condition] | None, now: str, generation: int | None
) -> list[Condition]:
    """Keep lastTransitionTime where a condition's status did not change, as controllers must."""
    previous = {c.get("type"): c for c in old or []}
    for condition in new:
        before = previous.get(condition["type"])
        same = before is not None and before.get("status") == condition["status"]
        condition["lastTransitionTime"] = before["lastTransitionTime"] if same and before else now
        if generation is not None:
            condition["observedGeneration"] = generation
    return new


# -- the whole status -------------------------------------------------------------------------------


def _phase(rollout: Rollout, controls: Controls) -> str | None:
    """MachineDeployment phase as CAPI computes it: ready vs desired; unset while surplus machines exist."""
    if rollout.failing(controls):
        return "Failed"
    if rollout.ready == rollout.desired:
        return "Running"
    return "ScalingUp" if rollout.ready < rollout.desired else None


def render_status(
    resource: Resource, capi: str, obj: dict[str, Any], rollout: Rollout, controls: Controls, *, now: datetime
) -> Status:
    """The full status CAPI would report for `obj` at this point of `rollout` (fields we do not own kept)."""
    if capi not in PROFILES:
        raise ValueError(f"unknown CAPI profile {capi!r}; use one of {', '.join(PROFILES)}")
    old: Status = obj.get("status") or {}
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    generation = int(obj["metadata"]["generation"])
    up_to_date, ready, replicas = rollout.up_to_date, rollout.ready, rollout.replicas
    unavailable = replicas - ready  # KCP: machines without a ready Node; MD: machines not available
    status: Status = {"observedGeneration": generation, "replicas": replicas, "readyReplicas": ready}
    if (selector := _selector(resource, obj)) is not None:
        status["selector"] = selector
    if resource.is_control_plane and (lowest := rollout.lowest_version()):
        status["version"] = lowest
    if not resource.is_control_plane and (phase := _phase(rollout, controls)):
        status["phase"] = phase
    current = _current_conditions(resource, rollout, controls)
    legacy = _legacy_conditions(resource, rollout, controls)

    if capi == "v1beta1":
        status["updatedReplicas"] = up_to_date
        if resource.is_control_plane:
            status.update(unavailableReplicas=unavailable, ready=True, initialized=True)
        else:
            status.update(availableReplicas=ready, unavailableReplicas=unavailable)
        status["conditions"] = _stamp(legacy, old.get("conditions"), stamp, None)
        status["v1beta2"] = {
            "conditions": _stamp(current, (old.get("v1beta2") or {}).get("conditions"), stamp, generation),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "upToDateReplicas": up_to_date,
        }
    else:
        status.update(availableReplicas=ready, upToDateReplicas=up_to_date)
        versions = sorted((v for v in rollout.all_versions() if v), key=version_key)
        status["versions"] = [{"version": v, "replicas": rollout.all_versions()[v]} for v in versions]
        if resource.is_control_plane:
            status["initialization"] = {"controlPlaneInitialized": True}
        status["conditions"] = _stamp(current, old.get("conditions"), stamp, generation)
        old_legacy = ((old.get("deprecated") or {}).get("v1beta1") or {}).get("conditions")
        deprecated: Status = {
            "conditions": _stamp(legacy, old_legacy, stamp, None),
            "updatedReplicas": up_to_date,
            "readyReplicas": ready,
            "unavailableReplicas": unavailable,
        }
        if not resource.is_control_plane:
            deprecated["availableReplicas"] = ready
        status["deprecated"] = {"v1beta1": deprecated}
        if not status["versions"]:
            del status["versions"]

    kept = {k: v for k, v in old.items() if k not in _OWNED_KEYS[capi]}
    return {**kept, **status}
