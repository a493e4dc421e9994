"""Normalise raw CAPI (v1beta1 or v1beta2) and CAPC (v1beta3) objects into the inventory model.

Pure functions from API dicts to `kubectl_capc.domain.model` types; no I/O. The shape of each object is chosen
from its own `apiVersion`, so a v1beta1 object read from a v1beta2 server (or the reverse) is still
understood. `build_inventories` joins per-kind object lists (as one LIST call per kind returns them)
into one `ClusterInventory` per Cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubectl_capc.domain.model import (
    CLONED_FROM_GROUPKIND,
    CLONED_FROM_NAME,
    CLOUDSTACK_CLUSTER_KIND,
    CLOUDSTACK_MACHINE_TEMPLATE_KIND,
    CLUSTER_NAME_LABEL,
    CONTROL_PLANE_LABEL,
    CONTROL_PLANE_NAME_LABEL,
    DEPLOYMENT_NAME_LABEL,
    INFRASTRUCTURE_GROUP,
    KUBEADM_CONTROL_PLANE_KIND,
    PAUSED_ANNOTATION,
    TOPOLOGY_OWNED_LABEL,
    BootstrapTemplate,
    CapiVersion,
    CloudStackCluster,
    CloudStackResource,
    Cluster,
    ClusterInventory,
    Condition,
    ControlPlane,
    DiskOffering,
    FailureDomain,
    FrozenDict,
    Machine,
    MachineDeployment,
    MachineNetwork,
    MachineRole,
    MachineTemplate,
    Network,
    Problem,
    Ref,
    Replicas,
    RolloutStrategy,
    SecretRef,
    Topology,
    VersionCount,
    find_condition,
)

Obj = Mapping[str, Any]


def _get(obj: Obj | None, *path: str) -> Any:
    """Walk nested mappings; None as soon as a key is missing or a value is not a mapping."""
    current: Any = obj
    for key in path:
        if not isinstance(current, Mapping):
            return None
        current = current.get(key)
    return current


def _str(obj: Obj | None, *path: str) -> str:
    value = _get(obj, *path)
    return value if isinstance(value, str) else ""


def _int(obj: Obj | None, *path: str) -> int:
    value = _get(obj, *path)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _optional_int(obj: Obj | None, *path: str) -> int | None:
    value = _get(obj, *path)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _map(obj: Obj | None, *path: str) -> Obj:
    value = _get(obj, *path)
    return value if isinstance(value, Mapping) else {}


def _list(obj: Obj | None, *path: str) -> list[Any]:
    value = _get(obj, *path)
    return list(value) if isinstance(value, (list, tuple)) else []


def api_version_of(obj: Obj) -> str:
    """The version part of `apiVersion` (`v1beta2` of `cluster.x-k8s.io/v1beta2`)."""
    return _str(obj, "apiVersion").rpartition("/")[2]


def capi_version_of(obj: Obj) -> CapiVersion:
    """The CAPI shape of an object; anything not v1beta2 is read as v1beta1."""
    return "v1beta2" if api_version_of(obj) == "v1beta2" else "v1beta1"


def _namespace(obj: Obj) -> str:
    return _str(obj, "metadata", "namespace")


def _name(obj: Obj) -> str:
    return _str(obj, "metadata", "name")


def _labels(obj: Obj) -> Obj:
    return _map(obj, "metadata", "labels")


def _annotations(obj: Obj) -> Obj:
    return _map(obj, "metadata", "annotations")


def _subject(kind: str, obj: Obj) -> str:
    return f"{kind}/{_namespace(obj)}/{_name(obj)}"


def parse_ref(ref: Obj | None, default_namespace: str) -> Ref | None:
    """A reference in either shape, as a version-free `Ref`.

    v1beta1 refs are `{apiVersion, kind, name, namespace}`, v1beta2 refs `{apiGroup, kind, name}`. The
    result never carries a version: CAPI picks the version of a referenced object itself.
    """
    if not isinstance(ref, Mapping) or not _str(ref, "name"):
        return None
    group = _str(ref, "apiGroup")
    if not group:
        api_version = _str(ref, "apiVersion")
        group = api_version.rpartition("/")[0] if "/" in api_version else ""
    return Ref(
        group=group,
        kind=_str(ref, "kind"),
        name=_str(ref, "name"),
        namespace=_str(ref, "namespace") or default_namespace,
    )


def parse_conditions(obj: Obj) -> tuple[Condition, ...]:
    """The object's own `status.conditions` (v1beta1 CAPI conditions or metav1 conditions)."""
    return _conditions(_list(obj, "status", "conditions"))


def _conditions(raw: Iterable[Any]) -> tuple[Condition, ...]:
    return tuple(
        Condition(
            type=_str(item, "type"),
            status=_str(item, "status"),
            reason=_str(item, "reason"),
            message=_str(item, "message"),
        )
        for item in raw
        if isinstance(item, Mapping) and _str(item, "type")
    )


def _v1beta2_conditions(obj: Obj) -> tuple[Condition, ...]:
    """Conditions in the v1beta2 vocabulary whatever the object's shape.

    v1beta2 objects carry them in `status.conditions`; v1beta1 objects from CAPI 1.9/1.10 also publish
    them under `status.v1beta2.conditions`.
    """
    if capi_version_of(obj) == "v1beta2":
        return parse_conditions(obj)
    return _conditions(_list(obj, "status", "v1beta2", "conditions"))


def _status_versions(obj: Obj) -> tuple[VersionCount, ...]:
    return tuple(
        VersionCount(version=_str(item, "version"), replicas=_int(item, "replicas"))
        for item in _list(obj, "status", "versions")
        if isinstance(item, Mapping) and _str(item, "version")
    )


def _is_paused(obj: Obj) -> bool:
    return PAUSED_ANNOTATION in _annotations(obj) or _get(obj, "spec", "paused") is True


def _rolling_out(obj: Obj) -> bool:
    """The controller's own verdict: v1beta2 `RollingOut` True, or v1beta1 `MachinesSpecUpToDate` False."""
    rolling = find_condition(_v1beta2_conditions(obj), "RollingOut")
    if rolling is not None:
        return rolling.is_true
    spec_up_to_date = find_condition(parse_conditions(obj), "MachinesSpecUpToDate")
    return spec_up_to_date is not None and spec_up_to_date.status == "False"


def _resource(obj: Obj | None) -> CloudStackResource:
    return CloudStackResource(id=_str(obj, "id"), name=_str(obj, "name"))


def parse_machine_template(obj: Obj) -> MachineTemplate:
    """A CloudStackMachineTemplate read at v1beta3."""
    spec = _map(obj, "spec", "template", "spec")
    raw_disk = _map(spec, "diskOffering")
    disk_resource = _resource(raw_disk)
    disk = (
        DiskOffering(
            offering=disk_resource,
            custom_size_gb=_int(raw_disk, "customSizeInGB"),
            mount_path=_str(raw_disk, "mountPath"),
            device=_str(raw_disk, "device"),
            filesystem=_str(raw_disk, "filesystem"),
            label=_str(raw_disk, "label"),
        )
        if disk_resource.is_set
        else None  # Go clients write an all-empty diskOffering object: that means "none"
    )
    return MachineTemplate(
        namespace=_namespace(obj),
        name=_name(obj),
        uid=_str(obj, "metadata", "uid"),
        resource_version=_str(obj, "metadata", "resourceVersion"),
        cloudstack_template=_resource(_map(spec, "template")),
        offering=_resource(_map(spec, "offering")),
        disk_offering=disk,
        ssh_key=_str(spec, "sshKey"),
        affinity=_str(spec, "affinity"),
        affinity_group_ids=tuple(str(item) for item in _list(spec, "affinityGroupIDs")),
        details=FrozenDict(_map(spec, "details")),
        networks=tuple(
            MachineNetwork(name=_str(item, "name"), id=_str(item, "id"), ip=_str(item, "ip"))
            for item in _list(spec, "networks")
            if isinstance(item, Mapping)
        ),
        failure_domain_name=_str(spec, "failureDomainName"),
        labels=FrozenDict(_labels(obj)),
        annotations=FrozenDict(_annotations(obj)),
        manifest=FrozenDict(obj),
    )


def parse_bootstrap_template(obj: Obj) -> BootstrapTemplate:
    return BootstrapTemplate(
        namespace=_namespace(obj),
        name=_name(obj),
        kind=_str(obj, "kind"),
        resource_version=_str(obj, "metadata", "resourceVersion"),
        manifest=FrozenDict(obj),
    )


def parse_failure_domain(raw: Obj, default_namespace: str) -> FailureDomain:
    zone = _map(raw, "zone")
    network = _map(zone, "network")
    return FailureDomain(
        name=_str(raw, "name"),
        zone=_resource(zone),
        network=Network(id=_str(network, "id"), name=_str(network, "name"), type=_str(network, "type")),
        account=_str(raw, "account"),
        domain=_str(raw, "domain"),
        project=_str(raw, "project"),
        credentials=SecretRef(
            namespace=_str(raw, "acsEndpoint", "namespace") or default_namespace,
            name=_str(raw, "acsEndpoint", "name"),
        ),
    )


def parse_cloudstack_cluster(obj: Obj) -> CloudStackCluster:
    """A CloudStackCluster read at v1beta3."""
    namespace = _namespace(obj)
    return CloudStackCluster(
        namespace=namespace,
        name=_name(obj),
        resource_version=_str(obj, "metadata", "resourceVersion"),
        failure_domains=tuple(
            parse_failure_domain(item, namespace)
            for item in _list(obj, "spec", "failureDomains")
            if isinstance(item, Mapping)
        ),
        endpoint_host=_str(obj, "spec", "controlPlaneEndpoint", "host"),
        endpoint_port=_int(obj, "spec", "controlPlaneEndpoint", "port"),
        ready=_get(obj, "status", "ready") is True,
    )


def parse_topology(obj: Obj) -> Topology | None:
    topology = _get(obj, "spec", "topology")
    if not isinstance(topology, Mapping):
        return None
    if capi_version_of(obj) == "v1beta2":
        class_name, class_namespace = (
            _str(topology, "classRef", "name"),
            _str(topology, "classRef", "namespace"),
        )
    else:
        class_name, class_namespace = _str(topology, "class"), _str(topology, "classNamespace")
    return Topology(
        class_name=class_name,
        class_namespace=class_namespace or _namespace(obj),
        version=_str(topology, "version"),
    )


def parse_cluster(obj: Obj) -> Cluster:
    namespace = _namespace(obj)
    return Cluster(
        namespace=namespace,
        name=_name(obj),
        uid=_str(obj, "metadata", "uid"),
        resource_version=_str(obj, "metadata", "resourceVersion"),
        paused=_is_paused(obj),
        phase=_str(obj, "status", "phase"),
        topology=parse_topology(obj),
        infrastructure_ref=parse_ref(_map(obj, "spec", "infrastructureRef"), namespace),
        control_plane_ref=parse_ref(_map(obj, "spec", "controlPlaneRef"), namespace),
        conditions=parse_conditions(obj),
        labels=FrozenDict(_labels(obj)),
        annotations=FrozenDict(_annotations(obj)),
    )


def _replicas(obj: Obj, *, available_from_unavailable: bool) -> Replicas:
    """Replica counts; v1beta1 names `updatedReplicas` what v1beta2 names `upToDateReplicas`."""
    status = _map(obj, "status")
    if capi_version_of(obj) == "v1beta2":
        up_to_date = _int(status, "upToDateReplicas")
        available = _int(status, "availableReplicas")
    else:
        up_to_date = _int(status, "updatedReplicas")
        if available_from_unavailable:
            available = max(_int(status, "replicas") - _int(status, "unavailableReplicas"), 0)
        else:
            available = _int(status, "availableReplicas")
    return Replicas(
        desired=_optional_int(obj, "spec", "replicas"),
        current=_int(status, "replicas"),
        ready=_int(status, "readyReplicas"),
        up_to_date=up_to_date,
        available=available,
    )


def _control_plane_infrastructure_ref(obj: Obj, namespace: str) -> Ref | None:
    if capi_version_of(obj) == "v1beta2":
        raw = _get(obj, "spec", "machineTemplate", "spec", "infrastructureRef")
    else:
        raw = _get(obj, "spec", "machineTemplate", "infrastructureRef")
    return parse_ref(raw, namespace)


def _is_topology_owned(obj: Obj) -> bool:
    return TOPOLOGY_OWNED_LABEL in _labels(obj)


def _across_namespaces(ref: Ref, subject: str, role: str, problems: list[Problem]) -> bool:
    """Whether `ref` names an object in another namespace than `subject`'s, recorded as a problem: CAPI
    refuses such references (its webhooks) and never follows one (its controllers)."""
    namespace = subject.split("/")[1]  # subjects are Kind/namespace/name
    if ref.namespace == namespace:
        return False
    problems.append(
        Problem(
            subject,
            f"{role} {ref} is in namespace {ref.namespace}: Cluster API only follows references within "
            f"the object's own namespace ({namespace}); copy the template there and point at the copy",
        )
    )
    return True


@dataclass(frozen=True)
class _TemplateIndex:
    """CloudStackMachineTemplates and bootstrap templates by (namespace, name)."""

    machine: Mapping[tuple[str, str], MachineTemplate]
    bootstrap: Mapping[tuple[str, str, str], BootstrapTemplate]

    def machine_template(
        self, ref: Ref | None, subject: str, problems: list[Problem]
    ) -> MachineTemplate | None:
        if ref is None:
            problems.append(Problem(subject, "has no infrastructure machine template reference"))
            return None
        if ref.kind != CLOUDSTACK_MACHINE_TEMPLATE_KIND or ref.group != INFRASTRUCTURE_GROUP:
            problems.append(
                Problem(subject, f"machine template {ref.kind}/{ref.name} is not a CAPC template")
            )
            return None
        if _across_namespaces(ref, subject, "machine template", problems):
            return None
        template = self.machine.get((ref.namespace, ref.name))
        if template is None:
            problems.append(Problem(subject, f"machine template {ref} not found"))
        return template

    def bootstrap_template(
        self, ref: Ref | None, subject: str, problems: list[Problem]
    ) -> BootstrapTemplate | None:
        if ref is None:
            problems.append(Problem(subject, "has no bootstrap config template reference"))
            return None
        if _across_namespaces(ref, subject, "bootstrap template", problems):
            return None
        template = self.bootstrap.get((ref.kind, ref.namespace, ref.name))
        if template is None:
            problems.append(Problem(subject, f"bootstrap template {ref} not found"))
        return template


def parse_control_plane(obj: Obj, index: _TemplateIndex, problems: list[Problem]) -> ControlPlane | None:
    """A KubeadmControlPlane; None (with a problem recorded) when its template reference is unusable."""
    namespace = _namespace(obj)
    subject = _subject(_str(obj, "kind") or KUBEADM_CONTROL_PLANE_KIND, obj)
    ref = _control_plane_infrastructure_ref(obj, namespace)
    template = index.machine_template(ref, subject, problems)
    if ref is None:
        return None
    return ControlPlane(
        namespace=namespace,
        name=_name(obj),
        kind=_str(obj, "kind"),
        resource_version=_str(obj, "metadata", "resourceVersion"),
        generation=_int(obj, "metadata", "generation"),
        observed_generation=_int(obj, "status", "observedGeneration"),
        version=_str(obj, "spec", "version"),
        status_version=_str(obj, "status", "version"),
        status_versions=_status_versions(obj),
        replicas=_replicas(obj, available_from_unavailable=True),
        infrastructure_ref=ref,
        machine_template=template,
        paused=_is_paused(obj),
        topology_owned=_is_topology_owned(obj),
        rolling_out=_rolling_out(obj),
        conditions=parse_conditions(obj),
        annotations=FrozenDict(_annotations(obj)),
        labels=FrozenDict(_labels(obj)),
        max_surge=_int_or_percent(_control_plane_rolling_update(obj), "maxSurge", 1),
    )


def _control_plane_rolling_update(obj: Obj) -> Obj:
    if capi_version_of(obj) == "v1beta2":
        return _map(obj, "spec", "rollout", "strategy", "rollingUpdate")
    return _map(obj, "spec", "rolloutStrategy", "rollingUpdate")


def _int_or_percent(obj: Obj, key: str, default: int) -> int | str:
    value = _get(obj, key)
    if isinstance(value, bool):
        return default
    if isinstance(value, (int, str)):
        return value
    return default


def parse_strategy(obj: Obj) -> RolloutStrategy:
    """A MachineDeployment's rollout strategy: v1beta1 `spec.strategy`, v1beta2 `spec.rollout.strategy`,
    with CAPI's defaults for whatever is unset."""
    if capi_version_of(obj) == "v1beta2":
        raw = _map(obj, "spec", "rollout", "strategy")
    else:
        raw = _map(obj, "spec", "strategy")
    rolling_update = _map(raw, "rollingUpdate")
    default = RolloutStrategy()
    return RolloutStrategy(
        type=_str(raw, "type") or default.type,
        max_surge=_int_or_percent(rolling_update, "maxSurge", 1),
        max_unavailable=_int_or_percent(rolling_update, "maxUnavailable", 0),
    )


def parse_machine_deployment(
    obj: Obj, index: _TemplateIndex, problems: list[Problem]
) -> MachineDeployment | None:
    namespace = _namespace(obj)
    subject = _subject("MachineDeployment", obj)
    machine_spec = _map(obj, "spec", "template", "spec")
    ref = parse_ref(_map(machine_spec, "infrastructureRef"), namespace)
    template = index.machine_template(ref, subject, problems)
    if ref is None:
        return None
    bootstrap_ref = parse_ref(_map(machine_spec, "bootstrap", "configRef"), namespace)
    return MachineDeployment(
        namespace=namespace,
        name=_name(obj),
        cluster_name=_str(obj, "spec", "clusterName"),
        resource_version=_str(obj, "metadata", "resourceVersion"),
        generation=_int(obj, "metadata", "generation"),
        observed_generation=_int(obj, "status", "observedGeneration"),
        version=_str(machine_spec, "version"),
        status_versions=_status_versions(obj),
        replicas=_replicas(obj, available_from_unavailable=False),
        infrastructure_ref=ref,
        machine_template=template,
        bootstrap_ref=bootstrap_ref,
        bootstrap_template=index.bootstrap_template(bootstrap_ref, subject, problems),
        failure_domain=_str(machine_spec, "failureDomain"),
        phase=_str(obj, "status", "phase"),
        paused=_is_paused(obj),
        topology_owned=_is_topology_owned(obj),
        rolling_out=_rolling_out(obj),
        conditions=parse_conditions(obj),
        labels=FrozenDict(_labels(obj)),
        annotations=FrozenDict(_annotations(obj)),
        strategy=parse_strategy(obj),
    )


def parse_rollout_owner(obj: Obj) -> ControlPlane | MachineDeployment | None:
    """A KubeadmControlPlane or MachineDeployment read on its own, for following its rollout.

    Its templates are not resolved (`machine_template` and `bootstrap_template` are None).
    """
    index = _TemplateIndex(machine={}, bootstrap={})
    if _str(obj, "kind") == KUBEADM_CONTROL_PLANE_KIND:
        return parse_control_plane(obj, index, [])
    return parse_machine_deployment(obj, index, [])


def cloned_from(obj: Obj) -> str:
    """The CloudStackMachineTemplate an object says it was cloned from (`cluster.x-k8s.io/cloned-from-name`,
    which CAPI puts on each infrastructure machine); empty when the annotation names none or another kind.
    A name without its group-kind annotation counts as a CloudStackMachineTemplate."""
    annotations = _annotations(obj)
    name = annotations.get(CLONED_FROM_NAME)
    group_kind = str(annotations.get(CLONED_FROM_GROUPKIND) or CLOUDSTACK_MACHINE_TEMPLATE_KIND)
    if isinstance(name, str) and group_kind.partition(".")[0] == CLOUDSTACK_MACHINE_TEMPLATE_KIND:
        return name
    return ""


MachineTemplates = Mapping[tuple[str, str], str]
"""(namespace, name) of a CloudStackMachine -> the CloudStackMachineTemplate it was cloned from."""


def machine_templates(cloudstack_machines: Iterable[Obj]) -> dict[tuple[str, str], str]:
    """Which template each CloudStackMachine was cloned from (`cloned_from`), for `parse_machine`.

    The CloudStackMachine, not the Machine's MachineSet, tells what a Machine was built from: it is
    the Machine's own record (a MachineSet's template can be changed in place, and hand-made or
    adopted Machines have none), and one LIST per namespace reads it for every Machine.
    """
    found = ((_namespace(o), _name(o), cloned_from(o)) for o in cloudstack_machines)
    return {(namespace, name): template for namespace, name, template in found if template}


def parse_machine(obj: Obj, templates: MachineTemplates | None = None) -> Machine:
    """A Machine; role and owner come from the labels CAPI puts on every Machine it creates, and the
    template it was built from is looked up in `templates` (`machine_templates`) by its infrastructureRef."""
    labels = _labels(obj)
    namespace = _namespace(obj)
    infrastructure = parse_ref(_map(obj, "spec", "infrastructureRef"), namespace)
    if CONTROL_PLANE_LABEL in labels or CONTROL_PLANE_NAME_LABEL in labels:
        role, owner = MachineRole.CONTROL_PLANE, str(labels.get(CONTROL_PLANE_NAME_LABEL, ""))
    else:
        role, owner = MachineRole.WORKER, str(labels.get(DEPLOYMENT_NAME_LABEL, ""))
    failure_domain = _str(obj, "spec", "failureDomain") or _str(obj, "status", "failureDomain")
    return Machine(
        namespace=namespace,
        name=_name(obj),
        role=role,
        owner=owner,
        version=_str(obj, "spec", "version"),
        node_version=_str(obj, "status", "nodeInfo", "kubeletVersion"),
        failure_domain=failure_domain,
        phase=_str(obj, "status", "phase"),
        node_name=_str(obj, "status", "nodeRef", "name"),
        infrastructure_ref=infrastructure,
        deleting=bool(_str(obj, "metadata", "deletionTimestamp")),
        node_ready=_node_ready(obj),
        machine_template=_built_from(infrastructure, templates or {}),
    )


def _built_from(infrastructure: Ref | None, templates: MachineTemplates) -> str:
    if infrastructure is None or infrastructure.kind != "CloudStackMachine":
        return ""
    return templates.get((infrastructure.namespace, infrastructure.name), "")


def _node_ready(obj: Obj) -> bool | None:
    """The Machine's view of its Node: `NodeReady` (v1beta2 vocabulary, also published by v1beta1
    Machines of CAPI 1.9/1.10), else v1beta1 `NodeHealthy`; None when neither is reported."""
    condition = find_condition(_v1beta2_conditions(obj), "NodeReady")
    if condition is None and capi_version_of(obj) == "v1beta1":
        condition = find_condition(parse_conditions(obj), "NodeHealthy")
    return None if condition is None else condition.is_true


@dataclass(frozen=True)
class RawObjects:
    """Raw API objects, one sequence per kind, as LIST calls return them (any mix of namespaces).

    CAPI kinds may be v1beta1 or v1beta2; CAPC kinds must be v1beta3.
    """

    clusters: Sequence[Obj] = ()
    control_planes: Sequence[Obj] = ()
    machine_deployments: Sequence[Obj] = ()
    machines: Sequence[Obj] = ()
    machine_templates: Sequence[Obj] = ()
    cloudstack_clusters: Sequence[Obj] = ()
    bootstrap_templates: Sequence[Obj] = ()
    cloudstack_machines: Sequence[Obj] = ()


def _by_key(objects: Iterable[Obj]) -> dict[tuple[str, str], Obj]:
    return {(_namespace(o), _name(o)): o for o in objects}


def _cluster_name(obj: Obj) -> str:
    """The Cluster a MachineDeployment or Machine belongs to: `spec.clusterName`, else the CAPI label."""
    return _str(obj, "spec", "clusterName") or str(_labels(obj).get(CLUSTER_NAME_LABEL, ""))


def build_inventories(objects: RawObjects, capi_version: CapiVersion) -> tuple[ClusterInventory, ...]:
    """Join per-kind object lists into one inventory per Cluster, sorted by namespace and name.

    `capi_version` is the version the objects were read at (recorded on each inventory).
    """
    templates = [parse_machine_template(o) for o in objects.machine_templates]
    index = _TemplateIndex(
        machine={(t.namespace, t.name): t for t in templates},
        bootstrap={
            (b.kind, b.namespace, b.name): b
            for b in (parse_bootstrap_template(o) for o in objects.bootstrap_templates)
        },
    )
    control_planes = _by_key(objects.control_planes)
    cloudstack_clusters = _by_key(objects.cloudstack_clusters)
    deployments_by_cluster: dict[tuple[str, str], list[Obj]] = {}
    for md in objects.machine_deployments:
        deployments_by_cluster.setdefault((_namespace(md), _cluster_name(md)), []).append(md)
    machines_by_cluster: dict[tuple[str, str], list[Machine]] = {}
    built_from = machine_templates(objects.cloudstack_machines)
    for raw_machine in objects.machines:
        key = (_namespace(raw_machine), _cluster_name(raw_machine))
        machines_by_cluster.setdefault(key, []).append(parse_machine(raw_machine, built_from))

    inventories = []
    for raw_cluster in sorted(objects.clusters, key=lambda o: (_namespace(o), _name(o))):
        cluster = parse_cluster(raw_cluster)
        key = (cluster.namespace, cluster.name)
        problems: list[Problem] = []
        inventories.append(
            ClusterInventory(
                capi_version=capi_version,
                cluster=cluster,
                control_plane=_resolve_control_plane(cluster, control_planes, index, problems),
                infrastructure=_resolve_infrastructure(cluster, cloudstack_clusters, problems),
                machine_deployments=tuple(
                    md
                    for md in (
                        parse_machine_deployment(raw, index, problems)
                        for raw in sorted(deployments_by_cluster.get(key, []), key=_name)
                    )
                    if md is not None
                ),
                machines=tuple(sorted(machines_by_cluster.get(key, []), key=lambda m: m.name)),
                namespace_templates=tuple(
                    sorted((t for t in templates if t.namespace == cluster.namespace), key=lambda t: t.name)
                ),
                problems=tuple(problems),
            )
        )
    return tuple(inventories)


def _resolve_control_plane(
    cluster: Cluster,
    control_planes: Mapping[tuple[str, str], Obj],
    index: _TemplateIndex,
    problems: list[Problem],
) -> ControlPlane | None:
    raw = _referenced(
        cluster.control_plane_ref,
        cluster,
        role="control plane",
        kind=KUBEADM_CONTROL_PLANE_KIND,
        objects=control_planes,
        problems=problems,
    )
    return None if raw is None else parse_control_plane(raw, index, problems)


def _resolve_infrastructure(
    cluster: Cluster, cloudstack_clusters: Mapping[tuple[str, str], Obj], problems: list[Problem]
) -> CloudStackCluster | None:
    raw = _referenced(
        cluster.infrastructure_ref,
        cluster,
        role="infrastructure",
        kind=CLOUDSTACK_CLUSTER_KIND,
        group=INFRASTRUCTURE_GROUP,
        objects=cloudstack_clusters,
        problems=problems,
    )
    return None if raw is None else parse_cloudstack_cluster(raw)


def _referenced(
    ref: Ref | None,
    cluster: Cluster,
    *,
    role: str,
    kind: str,
    group: str | None = None,
    objects: Mapping[tuple[str, str], Obj],
    problems: list[Problem],
) -> Obj | None:
    """The object the Cluster's `role` reference names, if it is a `kind` (of `group`, when given) that
    exists; otherwise None, with a problem recorded. A missing reference is a problem only without a
    topology: for a ClusterClass-managed Cluster the topology controller fills it in."""
    subject = f"Cluster/{cluster.namespace}/{cluster.name}"
    if ref is None:
        if cluster.topology is None:
            problems.append(Problem(subject, f"has no {role} reference"))
        return None
    if ref.kind != kind or (group is not None and ref.group != group):
        problems.append(Problem(subject, f"{role} {ref} is not a {kind}"))
        return None
    raw = objects.get((ref.namespace, ref.name))
    if raw is None:
        problems.append(Problem(subject, f"{role} {ref} not found"))
    return raw
