"""Virtual machines as CAPC drives them: deployVirtualMachine, list(VirtualMachines|VirtualMachinesMetrics),
start/stop/destroyVirtualMachine (async jobs), listVolumes and listCapabilities.

What the double reproduces from UserVmManagerImpl and QueryManagerImpl:
- deployVirtualMachine checks parameters, access, the template's presence in the zone and (see limits)
  resource limits before answering; those failures are synchronous errors. The VM record exists from
  then on (state Starting while the job runs); a failure while starting (no capacity: the `deploys`
  fault) fails the job with 533 and leaves the VM in Error;
- names are host names (RFC 1123 label, not starting with a digit), unique per network among VMs
  that are not expunged;
- listVirtualMachines matches `name` as SQL LIKE %name% (cloudstack-go then looks for the exact
  name); Destroyed VMs are listed to admins only (allow.user.view.destroyed.vm is off); an expunged VM
  shows as Expunging for `expunge_polls` listings and then is gone, though its id still resolves;
- destroyVirtualMachine with expunge=true is for admins only while allow.user.expunge.recover.vm is
  off, which listCapabilities reports as allowuserexpungerecovervm.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from typing import Any

from ..errors import ApiError, cloud_runtime, invalid_parameter, permission_denied
from ..limits import check_deploy_limits
from ..listing import Scope, owner_scope, paged_list
from ..model import (
    Account,
    CatalogItem,
    Nic,
    Owner,
    VirtualMachine,
    VmState,
    Volume,
    ZoneState,
    cs_timestamp,
)
from ..params import Context, keyword_match
from ..state import State
from ..views import instance_name, vm_view, volume_view
from .jobs import submit
from .templates_list import check_template_access
from .templates_register import resolve_owner

GIB = 1024**3
_HOSTNAME = re.compile(r"^(?![0-9])[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$")
INVALID_NAME_TEXT = (
    "Invalid name. Vm name can contain ASCII letters 'a' through 'z', the digits '0' through '9', and "
    "the hyphen ('-'), must be between 1 and 63 characters long, and can't start or end with \"-\" and "
    "can't start with digit"
)
CUSTOM_OFFERING_TEXT = (
    "Need to specify custom parameter values cpu, cpu speed and memory when using custom offering"
)
EXPUNGE_DENIED_TEXT = (
    "Parameter expunge can be passed by Admin only. Or when the allow.user.expunge.recover.vm key is set."
)
NO_VM_TEXT = "Unable to find a virtual machine with specified vmId"
CLOUDSTACK_VERSION = "4.20.1.0"


def capacity_error_text(state: State, vm: VirtualMachine) -> str:
    """InsufficientServerCapacityException's message as the failed job reports it."""
    return (
        f'Unable to create a deployment for VM instance {{"id":{vm.db_id},'
        f'"instanceName":"{instance_name(state, vm)}","state":"Starting","type":"User","uuid":"{vm.id}"}}'
    )


# ----- access ------------------------------------------------------------------------------------


def owner_domain_id(state: State, owner: Owner) -> str:
    if owner.project_id is not None:
        return state.projects[owner.project_id].domain_id
    return state.accounts[str(owner.account_id)].domain_id


def can_access(state: State, caller: Account, owner: Owner) -> bool:
    """AccountManager.checkAccess for an owned resource: own account or project, or an admin above it."""
    if caller.is_root_admin:
        return True
    if owner.project_id is not None and caller.id in state.projects[owner.project_id].member_account_ids:
        return True
    if caller.is_normal_user:
        return owner.account_id == caller.id
    return state.is_subdomain(owner_domain_id(state, owner), caller.domain_id)


def _vm(ctx: Context) -> VirtualMachine:
    vm = ctx.entity("id", ctx.state.vms, required=True)
    assert vm is not None
    if not can_access(ctx.state, ctx.caller, vm.owner):
        raise permission_denied(
            f"Account {ctx.caller.name} does not have permission to operate with resource {vm.id}"
        )
    return vm


# ----- deployVirtualMachine ----------------------------------------------------------------------


def _offering_shape(ctx: Context, offering: CatalogItem) -> tuple[int, int, int]:
    """(cpunumber, cpuspeed, memory MiB), from the offering or, when customized, from details."""
    fields = offering.fields
    if not fields.get("iscustomized"):
        return (
            int(fields.get("cpunumber", 1)),
            int(fields.get("cpuspeed", 1000)),
            int(fields.get("memory", 512)),
        )
    details = {k.lower(): v for g in ctx.groups("details") for k, v in g.items()}
    try:
        return int(details["cpunumber"]), int(details["cpuspeed"]), int(details["memory"])
    except (KeyError, ValueError):
        raise invalid_parameter(CUSTOM_OFFERING_TEXT) from None


def _networks(ctx: Context, owner: Owner, zone_id: str) -> list[tuple[CatalogItem, str | None]]:
    """The networks to plug in, in order, each with a requested IP (iptonetworklist) or None."""
    state = ctx.state
    table = state.catalog["network"]
    wanted: list[tuple[str, str | None]] = [(n, None) for n in ctx.uuid_list("networkids", table) or []]
    for group in ctx.groups("iptonetworklist"):
        network_id = group.get("networkid")
        if network_id is None or network_id not in table:
            raise ctx.unknown_uuid("iptonetworklist", str(network_id))
        wanted.append((network_id, group.get("ip")))
    if not wanted:
        mine = [n for n in table.values() if n.owner == owner and n.fields.get("zoneid") == zone_id]
        if not mine:
            raise invalid_parameter(f"Unable to find a network to deploy the vm in zone id={zone_id}")
        wanted = [(mine[0].id, None)]
    found = []
    for network_id, ip in wanted:
        network = table[network_id]
        if network.fields.get("zoneid") != zone_id:
            raise invalid_parameter(f"Network id={network_id} doesn't belong to zone {zone_id}")
        if not network.shared and network.owner != owner:
            raise permission_denied(
                f"Account {ctx.caller.name} does not have permission to operate with resource {network_id}"
            )
        found.append((network, ip))
    return found


def _used_ips(state: State, network_id: str) -> set[str]:
    return {
        nic.ip_address
        for vm in state.vms.values()
        if not vm.removed
        for nic in vm.nics
        if nic.network_id == network_id
    }


def _allocate_ip(state: State, network: CatalogItem, requested: str | None) -> str:
    cidr = network.fields.get("cidr") or "10.0.0.0/24"
    subnet = ipaddress.ip_network(str(cidr), strict=False)
    used = _used_ips(state, network.id) | {str(network.fields.get("gateway", ""))}
    if requested is not None:
        if ipaddress.ip_address(requested) not in subnet:
            raise invalid_parameter(f"Invalid ip address {requested} for network {network.name}")
        if requested in used:
            raise invalid_parameter(f"The IP address {requested} is already in use in network {network.name}")
        return requested
    for host in subnet.hosts():
        if str(host) not in used:
            return str(host)
    raise ApiError(533, f"Unable to allocate an IP address in network {network.name}")


def _check_name(state: State, name: str, networks: list[tuple[CatalogItem, str | None]]) -> None:
    if not _HOSTNAME.match(name):
        raise invalid_parameter(INVALID_NAME_TEXT)
    for network, _ in networks:
        for vm in state.vms.values():
            if vm.removed or vm.name.lower() != name.lower():
                continue
            if any(nic.network_id == network.id for nic in vm.nics):
                raise invalid_parameter(
                    f"The vm with hostName {name} already exists in the network domain: "
                    f"{network.fields.get('networkdomain', 'cs1cloud.internal')}; network={network.name}"
                )


def _keypairs(ctx: Context, owner: Owner) -> list[str]:
    names = [n for n in [ctx.text("keypair"), *(ctx.csv("keypairs") or [])] if n]
    for name in names:
        if not any(k.name == name and k.owner == owner for k in ctx.state.catalog["sshkeypair"].values()):
            raise invalid_parameter(f"Unable to find key pair by name : {name}")
    return names


def _affinity_groups(ctx: Context, owner: Owner) -> list[str]:
    ids = ctx.uuid_list("affinitygroupids", ctx.state.catalog["affinitygroup"]) or []
    for group_id in ids:
        group = ctx.state.catalog["affinitygroup"][group_id]
        if group.owner != owner:
            raise permission_denied(
                f"Affinity group {group.name} does not belong to the VM's account, or is not shared"
            )
    return ids


def deploy_virtual_machine(ctx: Context) -> dict[str, Any]:
    state, caller = ctx.state, ctx.caller
    offering = ctx.entity("serviceofferingid", state.catalog["serviceoffering"], required=True)
    template = ctx.entity("templateid", state.templates, required=True)
    zone = ctx.entity("zoneid", state.zones, required=True)
    disk_offering = ctx.entity("diskofferingid", state.catalog["diskoffering"])
    size, root_size = ctx.integer("size"), ctx.integer("rootdisksize")
    assert offering is not None and template is not None and zone is not None
    owner = resolve_owner(ctx)
    if zone.allocationstate == "Disabled" and not caller.is_root_admin:
        raise permission_denied(f"Cannot perform this operation, Zone is currently disabled: {zone.id}")
    if template.removed:
        raise invalid_parameter(f"Unable to use template {template.id}")
    if not template.ispublic:
        check_template_access(state, caller, template)
    cpunumber, cpuspeed, memory = _offering_shape(ctx, offering)
    networks = _networks(ctx, owner, zone.id)
    name = ctx.text("name") or f"VM-{uuid.uuid4()}"
    _check_name(state, name, networks)
    keypairs = _keypairs(ctx, owner)
    affinity = _affinity_groups(ctx, owner)
    data_size = None
    if disk_offering is not None:
        if disk_offering.fields.get("iscustomized") and not size:
            raise invalid_parameter("This disk offering requires a custom size specified")
        data_size = (size or int(disk_offering.fields.get("disksize", 0))) * GIB
    copy = template.zones.get(zone.id)
    if copy is None or copy.state is not ZoneState.READY:
        raise cloud_runtime(
            f"Template {template.name} has not been completely downloaded to zone {state.zone_db_id(zone.id)}"
        )
    root_bytes = root_size * GIB if root_size else max(template.size, GIB)
    check_deploy_limits(state, owner, cpunumber, memory, root_bytes + (data_size or 0))

    created = cs_timestamp()
    vm = VirtualMachine(
        id=str(uuid.uuid4()), db_id=state.next_db_id(), name=name,
        displayname=ctx.text("displayname") or name,
        owner=owner, zone_id=zone.id, template_id=template.id, service_offering_id=offering.id,
        cpunumber=cpunumber, cpuspeed=cpuspeed, memory=memory, nics=[], created=created,
        state=VmState.STARTING, hypervisor=template.hypervisor,
        disk_offering_id=disk_offering.id if disk_offering else None, keypairs=keypairs,
        userdata=ctx.text("userdata"), affinity_group_ids=affinity,
        details={k: v for g in ctx.groups("details") for k, v in g.items()},
    )  # fmt: skip
    for index, (network, ip) in enumerate(networks):
        address = _allocate_ip(state, network, ip)
        mac = f"02:00:00:{vm.db_id >> 8 & 255:02x}:{vm.db_id & 255:02x}:{index:02x}"
        vm.nics.append(Nic(network.id, address, mac, index == 0))
    state.vms[vm.id] = vm
    _add_volume(state, vm, "ROOT", root_bytes, None)
    if disk_offering is not None and data_size is not None:
        _add_volume(state, vm, "DATADISK", data_size, disk_offering.id)
    start = ctx.flag("startvm") is not False
    if not start:
        vm.state = VmState.STOPPED

    def run() -> dict[str, Any]:
        if start:
            _start(state, vm)
        return {"virtualmachine": vm_view(state, vm, caller)}

    return {"id": vm.id, **submit(ctx, "vm.DeployVMCmd", vm.id, run, instance_type="VirtualMachine")}


def _add_volume(state: State, vm: VirtualMachine, kind: str, size: int, offering_id: str | None) -> None:
    volume = Volume(
        id=str(uuid.uuid4()), name=f"{kind}-{vm.db_id}", type=kind, vm_id=vm.id, owner=vm.owner,
        zone_id=vm.zone_id, size=size, created=vm.created, disk_offering_id=offering_id,
        device_id=0 if kind == "ROOT" else 1 + sum(1 for v in state.volumes.values() if v.vm_id == vm.id),
    )  # fmt: skip
    state.volumes[volume.id] = volume


def _start(state: State, vm: VirtualMachine) -> None:
    """Bring a VM up, or fail the job as a deployment with no capacity does (VM left in Error)."""
    vm.state = VmState.STARTING
    fault = state.faults.take_deploy_fault(vm.zone_id, vm.name)
    if fault is not None:
        vm.state = VmState.ERROR
        raise ApiError(fault.errorcode, fault.errortext or capacity_error_text(state, vm))
    vm.state = VmState.RUNNING


# ----- start, stop, destroy ----------------------------------------------------------------------


def start_virtual_machine(ctx: Context) -> dict[str, Any]:
    state, vm = ctx.state, _vm(ctx)

    def run() -> dict[str, Any]:
        if vm.removed or vm.state in (VmState.DESTROYED, VmState.EXPUNGING):
            raise invalid_parameter(NO_VM_TEXT)
        if vm.state is VmState.RUNNING:
            raise invalid_parameter(f"The virtual machine {vm.id} ({vm.displayname}) is already running")
        if vm.state is not VmState.STOPPED:
            raise invalid_parameter(f"Unable to start VM instance {vm.id} in state {vm.state.value}")
        _start(state, vm)
        return {"virtualmachine": vm_view(state, vm, ctx.caller)}

    return submit(ctx, "vm.StartVMCmd", vm.id, run, instance_type="VirtualMachine")


def stop_virtual_machine(ctx: Context) -> dict[str, Any]:
    state, vm = ctx.state, _vm(ctx)

    def run() -> dict[str, Any]:
        if vm.removed or vm.state in (VmState.DESTROYED, VmState.EXPUNGING):
            raise invalid_parameter(NO_VM_TEXT)
        if vm.state in (VmState.RUNNING, VmState.STARTING, VmState.STOPPING):
            vm.state = VmState.STOPPED
        elif vm.state is not VmState.STOPPED:
            raise invalid_parameter(f"Unable to stop VM instance {vm.id} in state {vm.state.value}")
        return {"virtualmachine": vm_view(state, vm, ctx.caller)}

    return submit(ctx, "vm.StopVMCmd", vm.id, run, instance_type="VirtualMachine")


def destroy_virtual_machine(ctx: Context) -> dict[str, Any]:
    state, caller = ctx.state, ctx.caller
    vm = _vm(ctx)
    expunge = bool(ctx.flag("expunge"))
    if expunge and caller.is_normal_user and not state.settings.allow_user_expunge_recover_vm:
        raise permission_denied(EXPUNGE_DENIED_TEXT)
    volume_ids = ctx.uuid_list("volumeids", state.volumes) or []

    def run() -> dict[str, Any]:
        if vm.removed or vm.state is VmState.EXPUNGING:
            raise invalid_parameter(NO_VM_TEXT)
        for volume_id in volume_ids:
            state.volumes[volume_id].removed = True
        if expunge:
            vm.state, vm.expunge_polls = VmState.EXPUNGING, state.settings.expunge_polls
        else:
            vm.state = VmState.DESTROYED
        return {"virtualmachine": vm_view(state, vm, caller)}

    return submit(ctx, "vm.DestroyVMCmd", vm.id, run, instance_type="VirtualMachine")


def expunge(state: State, vm: VirtualMachine) -> None:
    vm.removed = True
    for volume in state.volumes.values():
        if volume.vm_id == vm.id:
            volume.removed = True


def tick_expunging(state: State) -> None:
    """One VM listing passes: Expunging VMs whose last showing has passed are gone."""
    for vm in state.vms.values():
        if vm.state is VmState.EXPUNGING and not vm.removed:
            if vm.expunge_polls <= 0:
                expunge(state, vm)
            else:
                vm.expunge_polls -= 1


# ----- listings ----------------------------------------------------------------------------------


def _vm_rows(ctx: Context, metrics: bool) -> dict[str, Any]:
    state, caller = ctx.state, ctx.caller
    by_id = ctx.entity("id", state.vms)
    ids = ctx.uuid_list("ids", state.vms)
    zone = ctx.entity("zoneid", state.zones)
    template = ctx.entity("templateid", state.templates)
    network = ctx.entity("networkid", state.catalog["network"])
    scope = owner_scope(ctx, list_all=bool(ctx.flag("listall")) or by_id is not None)
    name, keyword, wanted_state = ctx.text("name"), ctx.text("keyword"), ctx.text("state")
    tick_expunging(state)
    see_destroyed = not caller.is_normal_user or state.settings.allow_user_view_destroyed_vm
    rows = []
    for vm in state.vms.values():
        if vm.removed or not _in_scope(scope, vm.owner):
            continue
        if (by_id is not None and vm is not by_id) or (ids is not None and vm.id not in ids):
            continue
        if vm.state is VmState.DESTROYED and not see_destroyed:
            continue
        if wanted_state is not None and not _state_matches(vm, wanted_state):
            continue
        if name is not None and name.lower() not in vm.name.lower():
            continue
        if not keyword_match(keyword, vm.name, vm.displayname, vm.state.value):
            continue
        if zone is not None and vm.zone_id != zone.id:
            continue
        if template is not None and vm.template_id != template.id:
            continue
        if network is not None and not any(n.network_id == network.id for n in vm.nics):
            continue
        rows.append(vm_view(state, vm, caller, metrics=metrics))
    return paged_list(ctx, "virtualmachine", rows)


def _in_scope(scope: Scope, owner: Owner) -> bool:
    return scope.kind_ok(owner) and scope.owns(owner)


def _state_matches(vm: VirtualMachine, wanted: str) -> bool:
    if wanted.lower() == "present":
        return vm.state not in (VmState.DESTROYED, VmState.EXPUNGING)
    return vm.state.value.lower() == wanted.lower()


def list_virtual_machines(ctx: Context) -> dict[str, Any]:
    return _vm_rows(ctx, metrics=False)


def list_virtual_machines_metrics(ctx: Context) -> dict[str, Any]:
    return _vm_rows(ctx, metrics=True)


def list_volumes(ctx: Context) -> dict[str, Any]:
    state = ctx.state
    by_id = ctx.entity("id", state.volumes)
    vm = ctx.entity("virtualmachineid", state.vms)
    zone = ctx.entity("zoneid", state.zones)
    scope = owner_scope(ctx, list_all=bool(ctx.flag("listall")) or by_id is not None)
    kind, name = ctx.text("type"), ctx.text("name")
    rows = [
        volume_view(state, v) for v in state.volumes.values()
        if not v.removed and _in_scope(scope, v.owner) and (by_id is None or v is by_id)
        and (vm is None or v.vm_id == vm.id) and (zone is None or v.zone_id == zone.id)
        and (kind is None or v.type.lower() == kind.lower()) and (name is None or v.name == name)
    ]  # fmt: skip
    return paged_list(ctx, "volume", rows)


def list_capabilities(ctx: Context) -> dict[str, Any]:
    settings = ctx.state.settings
    return {
        "capability": {
            "cloudstackversion": CLOUDSTACK_VERSION, "securitygroupsenabled": False,
            "userpublictemplateenabled": True, "supportELB": "false", "projectinviterequired": False,
            "allowusercreateprojects": True, "customdiskofferingminsize": 1,
            "customdiskofferingmaxsize": 1024, "regionsecondaryenabled": False,
            "kvmsnapshotenabled": False, "allowuserviewdestroyedvm": settings.allow_user_view_destroyed_vm,
            "allowuserexpungerecovervm": settings.allow_user_expunge_recover_vm,
            "allowuserviewalldomainaccounts": False, "kubernetesserviceenabled": False,
            "kubernetesclusterexperimentalfeaturesenabled": False, "defaultuipagesize": 20,
        }
    }  # fmt: skip


COMMANDS = {
    "deployVirtualMachine": (deploy_virtual_machine, None),
    "startVirtualMachine": (start_virtual_machine, None),
    "stopVirtualMachine": (stop_virtual_machine, None),
    "destroyVirtualMachine": (destroy_virtual_machine, None),
    "listVirtualMachines": (list_virtual_machines, None),
    "listVirtualMachinesMetrics": (list_virtual_machines_metrics, None),
    "listVolumes": (list_volumes, None),
    "listCapabilities": (list_capabilities, None),
}
