"""Where a cluster's node-image templates must exist: the zone of each failure domain, reached with that
failure domain's credentials, as the owner (account or project) CAPC will look the template up for.

The credentials come from each failure domain's `acsEndpoint` Secret (keys `api-url`, `api-key`,
`secret-key`, `verify-ssl`), read once per Secret, and again when CloudStack rejects them (keys rotated
during a run).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kubectl_capc.cloudstack.client import CloudStackClient
from kubectl_capc.cloudstack.credentials import Credentials, credentials_from_secret_data
from kubectl_capc.cloudstack.errors import CloudStackError
from kubectl_capc.cloudstack.rows import OwnerScope, Template, Zone
from kubectl_capc.domain.errors import ConfigError, KubeApiError, PlanError
from kubectl_capc.domain.model import CloudStackResource, ClusterInventory, FailureDomain, SecretRef
from kubectl_capc.kube.read import fetch_secret

__all__ = ["ClientFactory", "ZoneTarget", "current_template", "read_secret_credentials", "zone_targets"]

ClientFactory = Callable[[Credentials], CloudStackClient]


@dataclass(frozen=True)
class ZoneTarget:
    """One failure domain's zone, the client that reaches it, and whose templates CAPC sees there."""

    failure_domain: str
    zone: Zone
    client: CloudStackClient
    owner: OwnerScope


def read_secret_credentials(api_client: Any, ref: SecretRef, failure_domain: str) -> Credentials:
    """Read a failure domain's credentials Secret; its values are never logged or shown."""
    source = f"Secret {ref}"
    answer = fetch_secret(api_client, ref)
    if answer.invalid:
        raise ConfigError(f"{source}: {answer.invalid}")
    if answer.data is None:
        if answer.status == 404:
            raise ConfigError(
                f"{source} (credentials of failure domain {failure_domain}) does not exist",
                hint="create it with the keys api-url, api-key and secret-key, as CAPC's guide shows",
            )
        if answer.denied is not None:
            raise answer.denied
        hint = (
            "the context's user needs `get secrets` in that namespace"
            if answer.status in (401, 403)
            else None
        )
        raise KubeApiError(f"read {source}: HTTP {answer.status} {answer.reason}", hint=hint)
    data = answer.data
    return credentials_from_secret_data(data, source)


def zone_targets(
    api_client: Any,
    inventory: ClusterInventory,
    make_client: ClientFactory = CloudStackClient,
) -> tuple[ZoneTarget, ...]:
    """One target per failure domain, in the CloudStackCluster's order; one client per Secret."""
    domains = inventory.failure_domains
    if not domains:
        raise PlanError(
            f"cluster {inventory.namespace}/{inventory.name} has no CloudStack failure domains",
            hint="check its CloudStackCluster (kubectl capc describe shows what was read)",
        )
    clients: dict[SecretRef, CloudStackClient] = {}
    zones: dict[SecretRef, tuple[Zone, ...]] = {}
    targets = []
    for domain in domains:
        if domain.credentials not in clients:
            read = functools.partial(read_secret_credentials, api_client, domain.credentials, domain.name)
            clients[domain.credentials] = make_client(read())
            clients[domain.credentials].reload = read
            zones[domain.credentials] = clients[domain.credentials].zones()
        client = clients[domain.credentials]
        zone = _zone_of(domain, zones[domain.credentials], client)
        owner = client.owner_scope(project=domain.project, account=domain.account, domain=domain.domain)
        targets.append(ZoneTarget(domain.name, zone, client, owner))
    return tuple(targets)


def _zone_of(domain: FailureDomain, zones: Sequence[Zone], client: CloudStackClient) -> Zone:
    ref = domain.zone
    # By name when the failure domain names it (CAPC then overwrites the id), else by id.
    found = (
        next((z for z in zones if z.name == ref.name), None)
        if ref.name
        else next((z for z in zones if z.id == ref.id), None)
    )
    if found is None:  # CloudStack answered: the cluster asks for something that is not there
        names = ", ".join(z.name for z in zones) or "none"
        raise PlanError(
            f"zone {ref} of failure domain {domain.name} does not exist at {client.endpoint} "
            f"(zones: {names})",
            hint="fix the failure domain's zone, or the api-url of its credentials Secret",
        )
    return found


def current_template(inventory: ClusterInventory, targets: Sequence[ZoneTarget]) -> Template:
    """The CloudStack template the cluster's machines boot today, as seen in the first failure domain.

    Taken from the control plane's CloudStackMachineTemplate, else the first MachineDeployment's.
    """
    resource = _template_in_use(inventory)
    target = targets[0]
    if resource.id:
        rows = target.client.templates(template_id=resource.id, owner=target.owner)
    else:
        rows = target.client.templates(name=resource.name, zone_id=target.zone.id, owner=target.owner)
    row = next((r for r in rows if r.zone_id == target.zone.id), None) or (rows[0] if rows else None)
    if row is None:
        raise CloudStackError(
            f"the template {resource} that cluster {inventory.name} uses is not visible in zone "
            f"{target.zone.name}",
            hint="the new template copies its OS type and hypervisor from it: check the credentials Secret",
        )
    return row


def _template_in_use(inventory: ClusterInventory) -> CloudStackResource:
    templates = [inventory.control_plane.machine_template] if inventory.control_plane else []
    templates += [md.machine_template for md in inventory.machine_deployments]
    for template in templates:
        if template is not None and template.cloudstack_template.is_set:
            return template.cloudstack_template
    raise PlanError(
        f"cluster {inventory.namespace}/{inventory.name} has no CloudStackMachineTemplate naming a template",
        hint="kubectl capc describe shows which machine templates were found",
    )
