"""`kubectl capc describe`: a cluster inventory as a tree for people, or as a typed object for tools.

Pure rendering: takes `ClusterInventory` objects (and, optionally, what CloudStack lists per failure
domain) and returns text. The tree follows `clusterctl describe`: cluster -> infrastructure and failure
domains -> control plane -> workers, with the versions, replica counts and machine images an upgrade
is about. `-o json|yaml` emits `ClusterDescription` objects (a `ClusterDescriptionList` for several). `run` is
the command: it reads through `kubectl_capc.kube.read`, asks CloudStack which templates each failure
domain's zone offers (`lookup_zone_templates`), and renders.
"""

from __future__ import annotations

import enum
import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from kubectl_capc.domain.documents import API_VERSION
from kubectl_capc.domain.errors import CapcError, UsageError
from kubectl_capc.domain.model import (
    CloudStackResource,
    CloudStackTemplateRow,
    ClusterInventory,
    ControlPlane,
    DiskOffering,
    FailureDomain,
    Machine,
    MachineDeployment,
    MachineTemplate,
    Replicas,
    SecretRef,
    ZoneTemplates,
    built_from_another,
    normalize_version,
)
from kubectl_capc.kube.target import KubeTarget

DESCRIPTION_KIND = "ClusterDescription"
DESCRIPTION_LIST_KIND = "ClusterDescriptionList"
OUTPUT_FORMATS = ("tree", "json", "yaml")


class Availability(str, enum.Enum):
    """Whether a failure domain's zone offers the CloudStack template a machine template names."""

    AVAILABLE = "available"
    MISSING = "missing"
    DUPLICATE = "duplicate"
    NOT_READY = "not-ready"
    NAME_MISMATCH = "name-mismatch"
    NOT_CHECKED = "not-checked"


def template_availability(
    template: CloudStackResource, rows: Sequence[CloudStackTemplateRow] | None
) -> Availability:
    """Match by id when the machine template has one (the name, if also given, must agree), else by name.

    A summary for display; `validate` applies CAPC's exact resolution rules.
    """
    if rows is None:
        return Availability.NOT_CHECKED
    if template.id:
        matches = [r for r in rows if r.id == template.id]
    else:
        matches = [r for r in rows if r.name == template.name]
    if not matches:
        return Availability.MISSING
    if len(matches) > 1:
        return Availability.DUPLICATE
    row = matches[0]
    if template.id and template.name and row.name != template.name:
        return Availability.NAME_MISMATCH
    return Availability.AVAILABLE if row.ready else Availability.NOT_READY


# -- the typed object ------------------------------------------------------------------------------


def _resource(resource: CloudStackResource) -> dict[str, str]:
    return {key: value for key, value in (("id", resource.id), ("name", resource.name)) if value}


def _disk(disk: DiskOffering | None) -> dict[str, Any] | None:
    if disk is None:
        return None
    out: dict[str, Any] = _resource(disk.offering)
    if disk.custom_size_gb:
        out["customSizeInGB"] = disk.custom_size_gb
    for key, value in (("mountPath", disk.mount_path), ("device", disk.device)):
        if value:
            out[key] = value
    return out


def _replicas(replicas: Replicas) -> dict[str, Any]:
    return {
        "desired": replicas.desired,
        "current": replicas.current,
        "ready": replicas.ready,
        "upToDate": replicas.up_to_date,
        "available": replicas.available,
    }


def _machine_template(
    template: MachineTemplate | None,
    failure_domains: Sequence[FailureDomain],
    zone_templates: ZoneTemplates | None,
) -> dict[str, Any] | None:
    if template is None:
        return None
    out: dict[str, Any] = {
        "name": template.name,
        "cloudstackTemplate": _resource(template.cloudstack_template),
        "offering": _resource(template.offering),
    }
    disk = _disk(template.disk_offering)
    if disk is not None:
        out["diskOffering"] = disk
    if zone_templates is not None:
        out["availability"] = [
            {
                "failureDomain": fd.name,
                "zone": str(fd.zone),
                "state": template_availability(
                    template.cloudstack_template, zone_templates.get(fd.name)
                ).value,
            }
            for fd in failure_domains
        ]
    return out


def _machine(machine: Machine) -> dict[str, Any]:
    out: dict[str, Any] = {"name": machine.name, "version": machine.version, "phase": machine.phase}
    for key, value in (
        ("failureDomain", machine.failure_domain),
        ("nodeName", machine.node_name),
        ("nodeVersion", machine.node_version),
    ):
        if value:
            out[key] = value
    if machine.deleting:
        out["deleting"] = True
    return out


def _control_plane(
    inventory: ClusterInventory, control_plane: ControlPlane, zone_templates: ZoneTemplates | None
) -> dict[str, Any]:
    return {
        "kind": control_plane.kind,
        "name": control_plane.name,
        "version": {
            "spec": control_plane.version,
            "status": control_plane.status_version,
            "running": [
                {"version": v.version, "replicas": v.replicas} for v in control_plane.status_versions
            ],
        },
        "replicas": _replicas(control_plane.replicas),
        "paused": control_plane.paused,
        "rolloutInProgress": control_plane.rollout_in_progress(),
        "machineTemplate": _machine_template(
            control_plane.machine_template, inventory.failure_domains, zone_templates
        ),
        "machines": [_machine(m) for m in inventory.control_plane_machines()],
    }


def _machine_deployment(
    inventory: ClusterInventory, deployment: MachineDeployment, zone_templates: ZoneTemplates | None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": deployment.name,
        "version": {
            "spec": deployment.version,
            "running": [{"version": v.version, "replicas": v.replicas} for v in deployment.status_versions],
        },
        "replicas": _replicas(deployment.replicas),
        "phase": deployment.phase,
        "paused": deployment.paused,
        "rolloutInProgress": deployment.rollout_in_progress(),
        "machineTemplate": _machine_template(
            deployment.machine_template, inventory.failure_domains, zone_templates
        ),
        "bootstrapTemplate": str(deployment.bootstrap_ref) if deployment.bootstrap_ref else None,
        "machines": [_machine(m) for m in inventory.machines_of(deployment)],
        "strategy": deployment.strategy.to_document(),
    }
    if deployment.strategy.on_delete:
        out["oldMachines"] = [m.name for m in inventory.machines_behind(deployment)]
    if deployment.failure_domain:
        out["failureDomain"] = deployment.failure_domain
    return out


def _failure_domain(fd: FailureDomain) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": fd.name,
        "zone": _resource(fd.zone),
        "network": _resource(CloudStackResource(fd.network.id, fd.network.name)),
        "credentialsSecret": {"namespace": fd.credentials.namespace, "name": fd.credentials.name},
    }
    for key, value in (("account", fd.account), ("domain", fd.domain), ("project", fd.project)):
        if value:
            out[key] = value
    return out


def describe_cluster(
    inventory: ClusterInventory, zone_templates: ZoneTemplates | None = None
) -> dict[str, Any]:
    """The `ClusterDescription` object: JSON-ready, the same facts the tree shows."""
    cluster = inventory.cluster
    topology = cluster.topology
    description: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": DESCRIPTION_KIND,
        "metadata": {"name": cluster.name, "namespace": cluster.namespace},
        "capiVersion": inventory.capi_version,
        "cluster": {
            "phase": cluster.phase,
            "paused": cluster.paused,
            "management": "topology" if topology else "classic",
            "topology": (
                {
                    "class": topology.class_name,
                    "classNamespace": topology.class_namespace,
                    "version": topology.version,
                }
                if topology
                else None
            ),
        },
        "rolloutInProgress": inventory.rollout_in_progress(),
        "infrastructure": None,
        "controlPlane": None,
        "machineDeployments": [
            _machine_deployment(inventory, md, zone_templates) for md in inventory.machine_deployments
        ],
        "problems": [{"subject": p.subject, "message": p.message} for p in inventory.problems],
    }
    if inventory.infrastructure is not None:
        infrastructure = inventory.infrastructure
        description["infrastructure"] = {
            "kind": "CloudStackCluster",
            "name": infrastructure.name,
            "endpoint": f"{infrastructure.endpoint_host}:{infrastructure.endpoint_port}",
            "failureDomains": [_failure_domain(fd) for fd in infrastructure.failure_domains],
        }
    if inventory.control_plane is not None:
        description["controlPlane"] = _control_plane(inventory, inventory.control_plane, zone_templates)
    return description


def describe_list(
    inventories: Iterable[ClusterInventory],
    zone_templates: dict[tuple[str, str], ZoneTemplates] | None = None,
) -> dict[str, Any]:
    """A `ClusterDescriptionList`; `zone_templates` is keyed by (namespace, cluster name)."""
    lookups = zone_templates or {}
    return {
        "apiVersion": API_VERSION,
        "kind": DESCRIPTION_LIST_KIND,
        "items": [describe_cluster(inv, lookups.get((inv.namespace, inv.name))) for inv in inventories],
    }


# -- the tree --------------------------------------------------------------------------------------


def _versions_running(machines: Sequence[Machine], reported: Sequence[tuple[str, int]]) -> str:
    """`2 at v1.28.5, 1 at v1.29.3`: from the Machines when there are any, else from status.versions."""
    if machines:
        counts = Counter(normalize_version(m.version) for m in machines)
        pairs = sorted(counts.items())
    else:
        pairs = sorted(reported)
    return ", ".join(f"{count} at {version}" for version, count in pairs) or "-"


def _replica_line(replicas: Replicas) -> str:
    desired = "?" if replicas.desired is None else str(replicas.desired)
    return (
        f"{desired} desired, {replicas.current} current, {replicas.ready} ready, "
        f"{replicas.up_to_date} up-to-date, {replicas.available} available"
    )


def _template_lines(
    template: MachineTemplate | None,
    failure_domains: Sequence[FailureDomain],
    zone_templates: ZoneTemplates | None,
    ref_text: str,
) -> list[tuple[str, str]]:
    if template is None:
        return [("template", f"{ref_text} (not found)")]
    lines = [
        ("template", f"CloudStackMachineTemplate/{template.name}"),
        ("image", str(template.cloudstack_template)),
        ("offering", str(template.offering)),
    ]
    if template.disk_offering is not None:
        disk = template.disk_offering
        size = f", {disk.custom_size_gb} GB" if disk.custom_size_gb else ""
        lines.append(("disk", f"{disk.offering}{size}"))
    if zone_templates is not None:
        states = ", ".join(
            f"{fd.name} ({fd.zone}): "
            f"{template_availability(template.cloudstack_template, zone_templates.get(fd.name)).value}"
            for fd in failure_domains
        )
        lines.append(("zones", states or "-"))
    return lines


def _details(lines: Sequence[tuple[str, str]], prefix: str) -> list[str]:
    width = max((len(key) for key, _ in lines), default=0)
    return [f"{prefix}{key.ljust(width)}  {value}" for key, value in lines]


def _flags(paused: bool, rollout: bool, topology_owned: bool) -> str:
    flags = [
        name
        for name, on in (("PAUSED", paused), ("ROLLING OUT", rollout), ("TOPOLOGY-OWNED", topology_owned))
        if on
    ]
    return f"  [{', '.join(flags)}]" if flags else ""


def _built_from(machine: Machine, deployment: MachineDeployment) -> str:
    """What an old Machine of `deployment` runs: its version, and its template when not the deployment's."""
    if built_from_another(machine.machine_template, deployment.infrastructure_ref.name):
        return f"{machine.version}, {machine.machine_template}"
    return machine.version


def render_tree(inventory: ClusterInventory, zone_templates: ZoneTemplates | None = None) -> str:
    """The human-readable tree for one cluster."""
    cluster = inventory.cluster
    management = "classic"
    if cluster.topology is not None:
        topology = cluster.topology
        management = (
            f"topology-managed (ClusterClass {topology.class_namespace}/{topology.class_name}, "
            f"version {topology.version}): upgrade through the ClusterClass, not as a classic cluster"
        )
    phase = f"  phase {cluster.phase}" if cluster.phase else ""
    out = [
        f"Cluster/{cluster.namespace}/{cluster.name}  CAPI {inventory.capi_version}{phase}"
        f"{_flags(cluster.paused, False, False)}",
        f"│ management  {management}",
    ]
    infrastructure = inventory.infrastructure
    if infrastructure is not None:
        out.append(
            f"├─Infrastructure  CloudStackCluster/{infrastructure.name}  "
            f"endpoint {infrastructure.endpoint_host}:{infrastructure.endpoint_port}"
        )
        for index, fd in enumerate(infrastructure.failure_domains):
            branch = "└─" if index == len(infrastructure.failure_domains) - 1 else "├─"
            tenancy = "".join(
                f"  {key} {value}"
                for key, value in (("account", fd.account), ("domain", fd.domain), ("project", fd.project))
                if value
            )
            out.append(
                f"│ {branch}FailureDomain {fd.name}  zone {fd.zone}  network {fd.network}{tenancy}  "
                f"credentials {fd.credentials}"
            )
    failure_domains = inventory.failure_domains
    control_plane = inventory.control_plane
    workers = inventory.machine_deployments
    if control_plane is not None:
        last = not workers
        cp = control_plane
        flags = _flags(cp.paused, cp.rollout_in_progress(), cp.topology_owned)
        out.append(f"{'└─' if last else '├─'}ControlPlane  {cp.kind}/{cp.name}{flags}")
        status = control_plane.status_version or "-"
        lines = [
            ("version", f"{control_plane.version} (status {status})"),
            ("replicas", _replica_line(control_plane.replicas)),
            (
                "machines",
                _versions_running(
                    inventory.control_plane_machines(),
                    [(v.version, v.replicas) for v in control_plane.status_versions],
                ),
            ),
            *_template_lines(
                control_plane.machine_template,
                failure_domains,
                zone_templates,
                str(control_plane.infrastructure_ref),
            ),
        ]
        out.extend(_details(lines, "      " if last else "│     "))
    if workers:
        out.append("└─Workers")
        for index, md in enumerate(workers):
            last = index == len(workers) - 1
            out.append(
                f"  {'└─' if last else '├─'}MachineDeployment/{md.name}"
                f"{_flags(md.paused, md.rollout_in_progress(), md.topology_owned)}"
            )
            lines = [
                ("version", md.version),
                ("strategy", str(md.strategy)),
                ("replicas", _replica_line(md.replicas)),
                (
                    "machines",
                    _versions_running(
                        inventory.machines_of(md), [(v.version, v.replicas) for v in md.status_versions]
                    ),
                ),
                *_template_lines(
                    md.machine_template, failure_domains, zone_templates, str(md.infrastructure_ref)
                ),
            ]
            if md.bootstrap_ref is not None:
                lines.append(("bootstrap", str(md.bootstrap_ref)))
            behind = inventory.machines_behind(md) if md.strategy.on_delete else ()
            if behind:
                names = ", ".join(f"{m.name} ({_built_from(m, md)})" for m in behind)
                lines.append(("old machines", f"{names}: replaced only once deleted (OnDelete)"))
            out.extend(_details(lines, "        " if last else "  │     "))
    for problem in inventory.problems:
        out.append(f"! {problem}")
    return "\n".join(out) + "\n"


def render(
    inventories: Sequence[ClusterInventory],
    output: str = "tree",
    zone_templates: dict[tuple[str, str], ZoneTemplates] | None = None,
    *,
    as_list: bool = False,
) -> str:
    """Render for `-o`: one description per cluster, or a list object when `as_list` (`-A`, no name)."""
    lookups = zone_templates or {}
    if output == "tree":
        return "\n".join(render_tree(inv, lookups.get((inv.namespace, inv.name))) for inv in inventories)
    if as_list or len(inventories) != 1:
        document = describe_list(inventories, lookups)
    else:
        inventory = inventories[0]
        document = describe_cluster(inventory, lookups.get((inventory.namespace, inventory.name)))
    if output == "json":
        return json.dumps(document, indent=2) + "\n"
    if output == "yaml":
        import yaml

        return str(yaml.safe_dump(document, sort_keys=False))
    raise ValueError(f"unknown output format {output!r}; use one of {', '.join(OUTPUT_FORMATS)}")


# -- CloudStack: what each failure domain's zone offers ----------------------------------------


TenantKey = tuple[SecretRef, str, str, str, str]
"""(credentials Secret, zone id or name, account, domain, project): who asks CloudStack, and where."""


def lookup_zone_templates(
    api_client: Any,
    inventories: Sequence[ClusterInventory],
    make_client: Callable[[Any], Any] | None = None,
) -> tuple[dict[tuple[str, str], ZoneTemplates], list[str]]:
    """List, per failure domain, the executable templates CloudStack shows in its zone to its tenant.

    Returns the rows keyed by (namespace, cluster) and notes for the failure domains that could not be
    checked (unreadable Secret, unreachable CloudStack, unknown zone): those show as not-checked, and
    the rest of the description still renders. Secrets, clients and listings are shared between
    failure domains (and clusters) that use the same credentials, zone and tenancy.
    """
    from kubectl_capc.cloudstack.client import CloudStackClient
    from kubectl_capc.ops.image_targets import read_secret_credentials

    factory = make_client or CloudStackClient
    clients: dict[SecretRef, Any] = {}
    listings: dict[TenantKey, tuple[CloudStackTemplateRow, ...] | CapcError] = {}
    found: dict[tuple[str, str], ZoneTemplates] = {}
    notes: list[str] = []

    def listing(fd: FailureDomain) -> tuple[CloudStackTemplateRow, ...]:
        if fd.credentials not in clients:
            clients[fd.credentials] = factory(read_secret_credentials(api_client, fd.credentials, fd.name))
        client = clients[fd.credentials]
        zone = client.zone(fd.zone.id or fd.zone.name)
        owner = client.owner_scope(project=fd.project, account=fd.account, domain=fd.domain)
        return tuple(t.as_row() for t in client.templates(zone_id=zone.id, owner=owner))

    for inventory in inventories:
        rows: dict[str, tuple[CloudStackTemplateRow, ...]] = {}
        for fd in inventory.failure_domains:
            key = (fd.credentials, fd.zone.id or fd.zone.name, fd.account, fd.domain, fd.project)
            if key not in listings:
                try:
                    listings[key] = listing(fd)
                except CapcError as err:
                    listings[key] = err
            result = listings[key]
            if isinstance(result, CapcError):
                notes.append(
                    f"{inventory.namespace}/{inventory.name} failure domain {fd.name}: not checked: {result}"
                )
            else:
                rows[fd.name] = result
        found[(inventory.namespace, inventory.name)] = rows
    return found, notes


# -- the command -----------------------------------------------------------------------------------


def run(
    target: KubeTarget,
    cluster: str | None,
    *,
    all_namespaces: bool,
    output: str,
    zones: bool = True,
    label_selector: str | None = None,
) -> tuple[str, list[str]]:
    """Read and render for `kubectl capc describe` (`output`: tree, json or yaml); returns (stdout text,
    notes for stderr).

    Without a name every cluster in the namespace (or, with `-A`, in all namespaces) is described, or
    those `label_selector` (`-l`) selects.
    `zones` adds per-failure-domain template availability, read from CloudStack with each failure
    domain's credentials Secret.
    """
    from kubectl_capc.kube.client import kube_client
    from kubectl_capc.kube.read import read_inventories

    if cluster is not None and (all_namespaces or label_selector is not None):
        raise UsageError(
            "a cluster name cannot be combined with -A or -l", hint="drop -A and -l, or drop the cluster name"
        )
    namespace = None if all_namespaces else target.resolve_context().namespace
    api = kube_client(target)
    inventories = read_inventories(api, namespace=namespace, cluster=cluster, label_selector=label_selector)
    if not inventories:
        where = f" in namespace {namespace}" if namespace else ""
        notes = [f"No clusters found{where}{f' matching {label_selector}' if label_selector else ''}."]
        return ("" if output == "tree" else render(inventories, output, as_list=True)), notes
    zone_templates, notes = lookup_zone_templates(api, inventories) if zones else (None, [])
    return render(inventories, output, zone_templates, as_list=cluster is None), notes
