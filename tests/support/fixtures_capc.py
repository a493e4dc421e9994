"""Realistic CAPC workload-cluster objects for tests, rendered from the upstream clusterctl templates.

- `render_cluster` fills the `${VAR}` placeholders of an upstream template (the pinned CAPC release's
  `templates/`, see tests.testenv.upstream),
  applies what the CAPI defaulting webhooks would (cluster-name labels, selectors), optionally adds
  MachineDeployments, failure domains and Machines, and converts the CAPI objects to the v1beta2 shape for
  the newest-CAPI profile.
- `settled_status` is the status a finished rollout leaves, in the object's own shape;
  `with_settled_status` applies it. `raw_objects` sorts objects into the reader's per-kind lists.
- On the test bed: `create_objects` sends objects to the apiserver; `tagged_api_client` and
  `audit_requests` count the requests one client made, from the audit log.
Nothing here talks to CloudStack.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kubectl_capc.domain.inventory import RawObjects
from tests.testenv import upstream

CLUSTER_NAME_LABEL = "cluster.x-k8s.io/cluster-name"

PLURALS = {
    "Cluster": "clusters",
    "MachineDeployment": "machinedeployments",
    "Machine": "machines",
    "KubeadmControlPlane": "kubeadmcontrolplanes",
    "KubeadmConfigTemplate": "kubeadmconfigtemplates",
    "CloudStackCluster": "cloudstackclusters",
    "CloudStackMachineTemplate": "cloudstackmachinetemplates",
}

_PLACEHOLDER = re.compile(r"\$\{([A-Z0-9_]+)(?:=([^}]*))?\}")


@dataclass(frozen=True)
class Zone:
    """One failure domain of the rendered CloudStackCluster."""

    name: str
    network: str
    failure_domain: str = ""
    secret_name: str = "cloudstack-credentials"
    secret_namespace: str = "default"

    @property
    def fd_name(self) -> str:
        return self.failure_domain or f"fd-{self.name}"


DEFAULT_ZONES = (Zone("zone-a", "net-a"),)


def substitute(text: str, values: Mapping[str, str]) -> str:
    """envsubst as clusterctl does it: `${VAR}` must be given, `${VAR=default}` falls back."""

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in values:
            return values[name]
        if default is not None:
            return default
        raise KeyError(f"template variable {name} has no value")

    return _PLACEHOLDER.sub(replace, text)


def render_cluster(
    name: str,
    namespace: str = "default",
    *,
    capi: str = "v1beta1",
    version: str = "v1.28.5",
    image: str | None = None,
    control_plane_replicas: int = 3,
    worker_replicas: int = 2,
    md_count: int = 1,
    zones: Sequence[Zone] = DEFAULT_ZONES,
    flavor: str = "cluster-template.yaml",
    control_plane_offering: str = "Large",
    worker_offering: str = "Medium",
    with_machines: bool = False,
    topology_class: str | None = None,
    extra_values: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """All objects of one workload cluster, in the CAPI shape `capi` ("v1beta1" or "v1beta2").

    MachineDeployments are `<name>-md-0` .. `<name>-md-<md_count-1>`, each with its own
    CloudStackMachineTemplate and KubeadmConfigTemplate; the control plane is `<name>-control-plane`.
    `image` defaults to `ubuntu-2204-kube-<version>`. `with_machines` adds Machines labelled and spread
    over the failure domains as CAPI would create them. `topology_class` adds `spec.topology`.
    """
    if capi not in ("v1beta1", "v1beta2"):
        raise ValueError(f"unknown CAPI version {capi!r}")
    if not zones:
        raise ValueError("at least one zone is needed")
    values = stock_values(
        name,
        zones[0],
        version=version,
        image=image,
        control_plane_replicas=control_plane_replicas,
        worker_replicas=worker_replicas,
        control_plane_offering=control_plane_offering,
        worker_offering=worker_offering,
        extra=extra_values,
    )
    objects = render_flavor(flavor, values)
    for obj in objects:
        obj.setdefault("metadata", {})["namespace"] = namespace
    _set_failure_domains(objects, zones)
    objects = _multiply_machine_deployments(objects, name, md_count)
    for obj in objects:
        _apply_capi_defaults(obj, name)
    if topology_class is not None:
        _cluster(objects)["spec"]["topology"] = {"class": topology_class, "version": version}
    if with_machines:
        objects.extend(capi_machines(objects, name, namespace, zones))
    if capi == "v1beta2":
        objects = [to_v1beta2(obj) for obj in objects]
    return objects


def render_flavor(flavor: str, values: Mapping[str, str]) -> list[dict[str, Any]]:
    """The objects of the pinned CAPC release's clusterctl `flavor` file, as `clusterctl generate cluster`
    writes them with `values`."""
    text = substitute((upstream.capc_templates_dir() / flavor).read_text(), values)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def stock_values(
    name: str,
    zone: Zone,
    *,
    version: str = "v1.28.5",
    image: str | None = None,
    control_plane_replicas: int = 1,
    worker_replicas: int = 2,
    control_plane_offering: str = "Large Instance",
    worker_offering: str = "Medium Instance",
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The variables `clusterctl generate cluster` fills in CAPC's flavours, for a cluster in `zone`.

    `image` defaults to `ubuntu-2204-kube-<version>`; `extra` adds or overrides (a flavour's own ones).
    """
    return {
        "CLUSTER_NAME": name,
        "KUBERNETES_VERSION": version,
        "CLOUDSTACK_TEMPLATE_NAME": image or f"ubuntu-2204-kube-{version}",
        "CONTROL_PLANE_MACHINE_COUNT": str(control_plane_replicas),
        "WORKER_MACHINE_COUNT": str(worker_replicas),
        "CLUSTER_ENDPOINT_IP": "10.0.0.10",
        "CLOUDSTACK_ZONE_NAME": zone.name,
        "CLOUDSTACK_NETWORK_NAME": zone.network,
        "CLOUDSTACK_FD1_NAME": zone.fd_name,
        "CLOUDSTACK_CONTROL_PLANE_MACHINE_OFFERING": control_plane_offering,
        "CLOUDSTACK_WORKER_MACHINE_OFFERING": worker_offering,
        "CLOUDSTACK_SSH_KEY_NAME": "capc-key",
        "CLOUDSTACK_DISK_OFFERING_NAME": "Custom",
        "CLOUDSTACK_DISK_OFFERING_MOUNT_PATH": "/data",
        "CLOUDSTACK_DISK_OFFERING_DEVICE": "/dev/vdb",
        "CLOUDSTACK_DISK_OFFERING_FILESYSTEM": "ext4",
        "CLOUDSTACK_DISK_OFFERING_LABEL": "data_disk",
        **(extra or {}),
    }


def _cluster(objects: Iterable[dict[str, Any]]) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == "Cluster")


def _set_failure_domains(objects: list[dict[str, Any]], zones: Sequence[Zone]) -> None:
    cloudstack_cluster = next(o for o in objects if o["kind"] == "CloudStackCluster")
    template_fd = cloudstack_cluster["spec"]["failureDomains"][0]
    domains = []
    for zone in zones:
        fd = copy.deepcopy(template_fd)
        fd["name"] = zone.fd_name
        fd["zone"] = {"name": zone.name, "network": {"name": zone.network}}
        fd["acsEndpoint"] = {"name": zone.secret_name, "namespace": zone.secret_namespace}
        domains.append(fd)
    cloudstack_cluster["spec"]["failureDomains"] = domains


def _multiply_machine_deployments(
    objects: list[dict[str, Any]], name: str, count: int
) -> list[dict[str, Any]]:
    """Replace the template's single `<name>-md-0` trio by `count` copies (MD, CSMT, KCT)."""
    first = f"{name}-md-0"
    trio_kinds = ("MachineDeployment", "CloudStackMachineTemplate", "KubeadmConfigTemplate")
    trio = [o for o in objects if o["kind"] in trio_kinds and o["metadata"]["name"] == first]
    rest = [o for o in objects if o not in trio]
    out = list(rest)
    for index in range(count):
        md_name = f"{name}-md-{index}"
        for obj in trio:
            clone = copy.deepcopy(obj)
            clone["metadata"]["name"] = md_name
            if clone["kind"] == "MachineDeployment":
                machine_spec = clone["spec"]["template"]["spec"]
                machine_spec["bootstrap"]["configRef"]["name"] = md_name
                machine_spec["infrastructureRef"]["name"] = md_name
            out.append(clone)
    return out


def _apply_capi_defaults(obj: dict[str, Any], cluster_name: str) -> None:
    """What the CAPI defaulting webhooks (absent from the test bed) add on create."""
    if obj["kind"] == "MachineDeployment":
        labels = {CLUSTER_NAME_LABEL: cluster_name}
        obj["metadata"].setdefault("labels", {}).update(labels)
        obj["spec"]["selector"] = {
            "matchLabels": {**labels, "cluster.x-k8s.io/deployment-name": obj["metadata"]["name"]}
        }
        template_labels = obj["spec"]["template"].setdefault("metadata", {}).setdefault("labels", {})
        template_labels.update(obj["spec"]["selector"]["matchLabels"])


def capi_machines(
    objects: Iterable[Mapping[str, Any]],
    cluster_name: str,
    namespace: str,
    zones: Sequence[Zone],
    *,
    capi: str = "v1beta1",
) -> list[dict[str, Any]]:
    """The Machines CAPI's controllers would create for the control plane and MachineDeployments among
    `objects`, spread over `zones`, in the CAPI shape `capi`."""
    objects = list(objects)
    machines = []
    kcp = next(o for o in objects if o["kind"] == "KubeadmControlPlane")
    owners: list[tuple[dict[str, Any], dict[str, str], int, str]] = [
        (
            kcp,
            {
                "cluster.x-k8s.io/control-plane": "",
                "cluster.x-k8s.io/control-plane-name": kcp["metadata"]["name"],
            },
            int(kcp["spec"]["replicas"]),
            str(kcp["spec"]["version"]),
        )
    ]
    for md in (o for o in objects if o["kind"] == "MachineDeployment"):
        owners.append(
            (
                md,
                {"cluster.x-k8s.io/deployment-name": md["metadata"]["name"]},
                int(md["spec"]["replicas"]),
                str(md["spec"]["template"]["spec"]["version"]),
            )
        )
    for owner, labels, count, version in owners:
        for index in range(count):
            machine_name = f"{owner['metadata']['name']}-{index}"
            machines.append(
                {
                    "apiVersion": "cluster.x-k8s.io/v1beta1",
                    "kind": "Machine",
                    "metadata": {
                        "name": machine_name,
                        "namespace": namespace,
                        "labels": {CLUSTER_NAME_LABEL: cluster_name, **labels},
                    },
                    "spec": {
                        "clusterName": cluster_name,
                        "version": version,
                        "failureDomain": zones[index % len(zones)].fd_name,
                        "bootstrap": {
                            "configRef": {
                                "apiVersion": "bootstrap.cluster.x-k8s.io/v1beta1",
                                "kind": "KubeadmConfig",
                                "name": machine_name,
                            }
                        },
                        "infrastructureRef": {
                            "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta3",
                            "kind": "CloudStackMachine",
                            "name": machine_name,
                        },
                    },
                }
            )
    return [to_v1beta2(m) for m in machines] if capi == "v1beta2" else machines


def _v1beta2_ref(ref: Mapping[str, Any]) -> dict[str, str]:
    group = str(ref.get("apiVersion", "")).rpartition("/")[0]
    return {"apiGroup": group, "kind": str(ref["kind"]), "name": str(ref["name"])}


def _extra_args_as_list(value: Any) -> Any:
    if isinstance(value, dict):
        return [{"name": key, "value": str(item)} for key, item in value.items()]
    return value


def _convert_kubeadm_config(spec: dict[str, Any]) -> None:
    for section in ("initConfiguration", "joinConfiguration"):
        registration = spec.get(section, {}).get("nodeRegistration")
        if registration and "kubeletExtraArgs" in registration:
            registration["kubeletExtraArgs"] = _extra_args_as_list(registration["kubeletExtraArgs"])
    cluster_configuration = spec.get("clusterConfiguration")
    if cluster_configuration is not None and not cluster_configuration.get("imageRepository", "x"):
        del cluster_configuration["imageRepository"]  # v1beta2 has minLength 1: "" means unset


def to_v1beta2(obj: dict[str, Any]) -> dict[str, Any]:
    """Convert one CAPI v1beta1 object (as the templates write it) to the v1beta2 shape; others pass."""
    group, _, version = str(obj["apiVersion"]).rpartition("/")
    if version != "v1beta1" or not group.endswith("cluster.x-k8s.io") or group.startswith("infrastructure"):
        return obj
    out = copy.deepcopy(obj)
    out["apiVersion"] = f"{group}/v1beta2"
    spec = out.get("spec", {})
    kind = out["kind"]
    if kind == "Cluster":
        for key in ("infrastructureRef", "controlPlaneRef"):
            if key in spec:
                spec[key] = _v1beta2_ref(spec[key])
        topology = spec.get("topology")
        if topology is not None:
            topology["classRef"] = {"name": topology.pop("class")}
            if "classNamespace" in topology:
                topology["classRef"]["namespace"] = topology.pop("classNamespace")
    elif kind == "KubeadmControlPlane":
        template = spec["machineTemplate"]
        spec["machineTemplate"] = {"spec": {"infrastructureRef": _v1beta2_ref(template["infrastructureRef"])}}
        _convert_kubeadm_config(spec.get("kubeadmConfigSpec", {}))
    elif kind in ("MachineDeployment", "Machine"):
        machine_spec = spec["template"]["spec"] if kind == "MachineDeployment" else spec
        machine_spec["infrastructureRef"] = _v1beta2_ref(machine_spec["infrastructureRef"])
        machine_spec["bootstrap"]["configRef"] = _v1beta2_ref(machine_spec["bootstrap"]["configRef"])
    elif kind == "KubeadmConfigTemplate":
        _convert_kubeadm_config(spec["template"]["spec"])
    return out


def settled_status(
    obj: Mapping[str, Any], *, version: str | None = None, generation: int = 1
) -> dict[str, Any]:
    """The status of a KubeadmControlPlane or MachineDeployment after a finished rollout, in its shape.

    `version` defaults to the object's spec version; `generation` is the observed generation.
    """
    kind = obj["kind"]
    replicas = int(obj["spec"].get("replicas", 1))
    spec_version = (
        obj["spec"]["version"]
        if kind == "KubeadmControlPlane"
        else obj["spec"]["template"]["spec"]["version"]
    )
    running = version or spec_version
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "replicas": replicas,
        "readyReplicas": replicas,
    }
    v1beta2 = str(obj["apiVersion"]).endswith("/v1beta2")
    if v1beta2:
        status.update(upToDateReplicas=replicas, availableReplicas=replicas)
        status["conditions"] = [
            _condition("Available", "True"),
            _condition("RollingOut", "False", reason="NotRollingOut"),
        ]
    else:
        status["updatedReplicas"] = replicas
        if kind == "MachineDeployment":
            status["availableReplicas"] = replicas
            status["unavailableReplicas"] = 0
        else:
            status["unavailableReplicas"] = 0
        status["conditions"] = [_condition("Ready", "True"), _condition("Available", "True")]
    if kind == "KubeadmControlPlane":
        status["version"] = running
        if v1beta2:
            status["initialization"] = {"controlPlaneInitialized": True}
        else:
            status.update(ready=True, initialized=True)
            status["conditions"].append(_condition("MachinesSpecUpToDate", "True"))
    else:
        status["phase"] = "Running"
    return status


def _condition(condition_type: str, status: str, reason: str = "") -> dict[str, str]:
    condition = {"type": condition_type, "status": status, "lastTransitionTime": "2026-01-01T00:00:00Z"}
    if reason or status != "True":
        condition["reason"] = reason or condition_type
    return condition


def raw_objects(objects: Iterable[Mapping[str, Any]]) -> RawObjects:
    """Sort objects by kind into the reader's per-kind lists, as if each kind had been LISTed."""
    by_kind: dict[str, list[Mapping[str, Any]]] = {}
    for obj in objects:
        by_kind.setdefault(str(obj["kind"]), []).append(obj)
    return RawObjects(
        clusters=by_kind.get("Cluster", []),
        control_planes=by_kind.get("KubeadmControlPlane", []),
        machine_deployments=by_kind.get("MachineDeployment", []),
        machines=by_kind.get("Machine", []),
        machine_templates=by_kind.get("CloudStackMachineTemplate", []),
        cloudstack_clusters=by_kind.get("CloudStackCluster", []),
        bootstrap_templates=by_kind.get("KubeadmConfigTemplate", []),
        cloudstack_machines=by_kind.get("CloudStackMachine", []),
    )


def with_settled_status(objects: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of `objects` where every KubeadmControlPlane and MachineDeployment has finished rolling out."""
    out = []
    for obj in objects:
        obj = copy.deepcopy(obj)
        if obj["kind"] in ("KubeadmControlPlane", "MachineDeployment"):
            obj["metadata"]["generation"] = 1
            obj["status"] = settled_status(obj)
        out.append(obj)
    return out


def _gvp(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    group, _, version = str(obj["apiVersion"]).rpartition("/")
    return group, version, PLURALS[str(obj["kind"])]


def create_objects(api_client: Any, objects: Iterable[Mapping[str, Any]]) -> list[Any]:
    """Create each object (custom resources only); returns the created objects as the server stored them."""
    from kubernetes import client

    api = client.CustomObjectsApi(api_client)
    created: list[Any] = []
    for obj in objects:
        group, version, plural = _gvp(obj)
        namespace = obj["metadata"]["namespace"]
        created.append(api.create_namespaced_custom_object(group, version, namespace, plural, dict(obj)))
    return created


def tagged_api_client(kubeconfig: Path, user_agent: str) -> Any:
    """An admin ApiClient whose requests carry `user_agent`, so the audit log can tell them apart."""
    from kubectl_capc.kube.client import api_client
    from kubectl_capc.kube.target import KubeTarget

    return api_client(KubeTarget(kubeconfig=str(kubeconfig)), user_agent)


_AUDIT_PLAIN = re.compile(r"[A-Za-z0-9._:/@ +-]+")


def audit_events(audit_log: Path, mentioning: str) -> Iterator[dict[str, Any]]:
    """The completed requests in the apiserver's audit log (a JSON event a line) whose line mentions
    `mentioning` as a JSON string; other lines are skipped unparsed (the log grows all session).

    Only strings that Go's and Python's JSON encoders write alike are accepted (Go escapes <, > and &,
    Python non-ASCII): any other would match no line, and a test expecting none would pass unseen."""
    if not _AUDIT_PLAIN.fullmatch(mentioning):
        raise ValueError(f"{mentioning!r}: not a string the audit log is searched for verbatim")
    needle = json.dumps(mentioning)
    with audit_log.open() as lines:
        for line in lines:
            if needle in line:
                event = json.loads(line)
                if event.get("stage") == "ResponseComplete":
                    yield event


def audit_requests(audit_log: Path, user_agent: str) -> list[dict[str, Any]]:
    """Completed requests made with `user_agent`, from the apiserver's audit log."""
    return [e for e in audit_events(audit_log, user_agent) if e.get("userAgent") == user_agent]
