"""Resource limits and counts of accounts, projects and domains (ResourceLimitManagerImpl).

Counted from the double's VMs and volumes: a VM counts (user_vm, cpu, memory) until it is destroyed;
its volumes count (volume, primary_storage) until they are removed. Limits are -1 (unlimited) for root
admin accounts and the ROOT domain, otherwise the global defaults (max.account.*, max.project.*,
max.domain.*) unless updateResourceLimit or the seed set one. API responses show -1 as "Unlimited".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .errors import RESOURCE_ALLOCATION, ApiError
from .model import Owner, VirtualMachine, VmState
from .state import State

GIB = 1024**3
UNLIMITED = -1
# Resource.ResourceType ordinal -> name.
RESOURCE_TYPES = (
    "user_vm", "public_ip", "volume", "snapshot", "template", "project", "network", "vpc", "cpu", "memory",
    "primary_storage", "secondary_storage",
)  # fmt: skip
ACCOUNT_DEFAULTS = {"user_vm": 20, "public_ip": 20, "volume": 20, "snapshot": 20, "template": 20,
                    "project": 20, "network": 20, "vpc": 20, "cpu": 40, "memory": 40960,
                    "primary_storage": 200, "secondary_storage": 400}  # fmt: skip
DOMAIN_DEFAULTS = {name: 2 * value for name, value in ACCOUNT_DEFAULTS.items()}
# Response field prefixes (AccountResponse, DomainResponse, ProjectResponse) per counted type.
FIELD_PREFIXES = {"user_vm": "vm", "volume": "volume", "cpu": "cpu", "memory": "memory",
                  "primary_storage": "primarystorage"}  # fmt: skip


@dataclass(frozen=True)
class Holder:
    """Who a limit belongs to: kind is account, project or domain."""

    kind: str
    id: str


def _counted(vm: VirtualMachine) -> bool:
    return not vm.removed and vm.state not in (VmState.DESTROYED, VmState.EXPUNGING)


def _owners(state: State, holder: Holder) -> Iterable[Owner]:
    """The owners whose resources count against `holder`."""
    if holder.kind == "account":
        return [Owner(account_id=holder.id)]
    if holder.kind == "project":
        return [Owner(project_id=holder.id)]
    accounts = [
        Owner(account_id=a.id) for a in state.accounts.values() if state.is_subdomain(a.domain_id, holder.id)
    ]
    projects = [
        Owner(project_id=p.id) for p in state.projects.values() if state.is_subdomain(p.domain_id, holder.id)
    ]
    return accounts + projects


def count(state: State, holder: Holder, resource: str) -> int:
    owners = set(_owners(state, holder))
    vms = [vm for vm in state.vms.values() if vm.owner in owners and _counted(vm)]
    if resource == "user_vm":
        return len(vms)
    if resource == "cpu":
        return sum(vm.cpunumber for vm in vms)
    if resource == "memory":
        return sum(vm.memory for vm in vms)
    volumes = [v for v in state.volumes.values() if v.owner in owners and not v.removed]
    if resource == "volume":
        return len(volumes)
    if resource == "primary_storage":
        return sum(v.size for v in volumes)
    return 0


def limit(state: State, holder: Holder, resource: str) -> int:
    """The configured maximum (GiB for storage), -1 when unlimited."""
    if (holder.kind, holder.id, resource) in state.limits:
        return state.limits[(holder.kind, holder.id, resource)]
    if holder.kind == "account" and state.accounts[holder.id].is_root_admin:
        return UNLIMITED
    if holder.kind == "domain":
        return UNLIMITED if state.domains[holder.id].parent_id is None else DOMAIN_DEFAULTS[resource]
    return ACCOUNT_DEFAULTS[resource]


def _in_limit_units(resource: str, amount: int) -> int:
    return amount // GIB if resource in ("primary_storage", "secondary_storage") else amount


def limit_fields(state: State, holder: Holder) -> dict[str, Any]:
    """<prefix>limit / <prefix>total / <prefix>available, "Unlimited" where the limit is -1."""
    fields: dict[str, Any] = {}
    for resource, prefix in FIELD_PREFIXES.items():
        maximum = limit(state, holder, resource)
        total = _in_limit_units(resource, count(state, holder, resource))
        fields[f"{prefix}limit"] = "Unlimited" if maximum == UNLIMITED else str(maximum)
        fields[f"{prefix}total"] = total
        fields[f"{prefix}available"] = "Unlimited" if maximum == UNLIMITED else str(max(maximum - total, 0))
    return fields


def _holders(state: State, owner: Owner) -> list[tuple[Holder, str]]:
    """The account or project, then each domain up to ROOT, with the words the error names them by."""
    if owner.project_id is not None:
        project = state.projects[owner.project_id]
        first = (Holder("project", project.id), f"project name={project.name}")
        domain_id: str | None = project.domain_id
    else:
        account = state.accounts[str(owner.account_id)]
        first = (Holder("account", account.id), f"account name={account.name}")
        domain_id = account.domain_id
    chain = [first]
    while domain_id is not None:
        chain.append((Holder("domain", domain_id), ""))
        domain_id = state.domains[domain_id].parent_id
    return chain


def check_deploy_limits(state: State, owner: Owner, cpus: int, memory: int, storage: int) -> None:
    """ResourceLimitManagerImpl.checkResourceLimit for a new VM, failing as DeployVMCmd reports it."""
    wanted = {"user_vm": 1, "cpu": cpus, "memory": memory, "volume": 1, "primary_storage": storage}
    domain_of = _owner_domain_db_id(state, owner)
    for holder, words in _holders(state, owner):
        for resource, amount in wanted.items():
            maximum = limit(state, holder, resource)
            if maximum == UNLIMITED:
                continue
            current = count(state, holder, resource)
            cap = maximum * GIB if resource == "primary_storage" else maximum
            if current + amount <= cap:
                continue
            if holder.kind == "domain":
                whose = f"domain id={_domain_db_id(state, holder.id)}"
            else:
                whose = f"{words} in domain id={domain_of}"
            raise ApiError(
                RESOURCE_ALLOCATION,
                f"Maximum number of resources of type '{resource}' for {whose} has been exceeded.",
            )


def _domain_db_id(state: State, domain_id: str) -> int:
    return list(state.domains).index(domain_id) + 1


def _owner_domain_db_id(state: State, owner: Owner) -> int:
    if owner.project_id is not None:
        return _domain_db_id(state, state.projects[owner.project_id].domain_id)
    return _domain_db_id(state, state.accounts[str(owner.account_id)].domain_id)
