"""API response objects, shaped (lower-case keys) like CloudStack's *Response classes."""

from __future__ import annotations

import uuid
from typing import Any

from .downloads import status_text
from .limits import Holder, limit_fields
from .model import (
    ROLE_ACCOUNT_TYPES,
    Account,
    CatalogItem,
    Domain,
    Nic,
    Owner,
    Project,
    Tag,
    Template,
    TemplateZone,
    VirtualMachine,
    VmState,
    Volume,
    Zone,
)
from .state import State

_NAMESPACE = uuid.UUID("0b7e3c9a-2d41-4f4e-8a57-6c1f0e7d2b93")


def stable_uuid(kind: str, *parts: str) -> str:
    """A UUID derived from what identifies an object the double does not store (a NIC, a host)."""
    return str(uuid.uuid5(_NAMESPACE, ":".join((kind, *parts))))


def owner_fields(state: State, owner: Owner) -> dict[str, Any]:
    """ApiResponseHelper.populateOwner: account or project, plus the owning domain."""
    if owner.project_id is not None:
        project = state.projects[owner.project_id]
        domain = state.domains[project.domain_id]
        return {
            "projectid": project.id,
            "project": project.name,
            "domainid": domain.id,
            "domain": domain.name,
        }
    assert owner.account_id is not None
    account = state.accounts[owner.account_id]
    domain = state.domains[account.domain_id]
    return {"account": account.name, "domainid": domain.id, "domain": domain.name, "domainpath": domain.path}


def zone_view(zone: Zone) -> dict[str, Any]:
    return {
        "id": zone.id, "name": zone.name, "description": zone.description, "dns1": zone.dns1,
        "internaldns1": zone.internaldns1, "guestcidraddress": zone.guestcidraddress,
        "networktype": zone.networktype, "securitygroupsenabled": zone.securitygroupsenabled,
        "allocationstate": zone.allocationstate, "zonetoken": zone.id, "dhcpprovider": "VirtualRouter",
        "localstorageenabled": zone.localstorageenabled, "tags": [], "type": "Core", "hasannotations": False,
    }  # fmt: skip


def tag_view(state: State, tag: Tag) -> dict[str, Any]:
    view = {
        "key": tag.key,
        "value": tag.value,
        "resourcetype": tag.resource_type,
        "resourceid": tag.resource_id,
    }
    view.update(owner_fields(state, tag.owner))
    return view


def catalog_view(state: State, item: CatalogItem) -> dict[str, Any]:
    view = dict(item.fields)
    if item.owner is not None:
        view.update(owner_fields(state, item.owner))
    if item.zone_ids is not None and item.kind in ("serviceoffering", "diskoffering"):
        view["zoneid"] = ",".join(item.zone_ids)
        view["zone"] = ",".join(state.zones[z].name for z in item.zone_ids)
    if item.domain_ids is not None:
        view["domainid"] = ",".join(item.domain_ids)
        view["domain"] = ",".join(state.domains[d].name for d in item.domain_ids)
    return view


def template_row(
    state: State, template: Template, row: TemplateZone | None, caller: Account
) -> dict[str, Any]:
    """One (template, zone) row of listTemplates (TemplateJoinDaoImpl.newTemplateResponse); without a
    zone copy the zone, status and download fields are left out."""
    ready = row is not None and row.state.value == "Ready"
    ostype = state.ostypes.get(template.ostype_id)
    view: dict[str, Any] = {
        "id": template.id, "name": template.name, "displaytext": template.displaytext,
        "ispublic": template.ispublic, "created": row.created if row else template.created, "isready": ready,
        "passwordenabled": template.passwordenabled, "format": template.format,
        "isfeatured": template.isfeatured, "crossZones": template.crosszones,
        "ostypeid": template.ostype_id, "ostypename": ostype.description if ostype else "",
    }  # fmt: skip
    view.update(owner_fields(state, template.owner))
    if caller.is_root_admin or template.owner.account_id == caller.id or template.owner.project_id:
        if row is not None:
            view["status"] = status_text(row)
        if template.url:
            view["url"] = template.url
    if row is not None:
        zone = state.zones[row.zone_id]
        view.update({"zoneid": zone.id, "zonename": zone.name})
    if template.size > 0 and ready:
        view["size"] = template.size
    if template.physicalsize > 0 and ready:
        view["physicalsize"] = template.physicalsize
    view.update({
        "templatetype": "USER", "hypervisor": template.hypervisor, "isextractable": template.isextractable,
        "sshkeyenabled": template.sshkeyenabled, "isdynamicallyscalable": template.isdynamicallyscalable,
        "bootable": template.bootable, "bits": template.bits, "details": dict(template.details),
        "tags": [tag_view(state, t) for t in state.tags if t.resource_id == template.id],
        "hasannotations": False, "directdownload": template.directdownload, "deployasis": False,
        "requireshvm": template.requireshvm,
    })  # fmt: skip
    if row is not None:
        view["downloaddetails"] = [
            {
                "datastore": f"secondary-{state.zones[row.zone_id].name}",
                "downloadPercent": str(row.percent),
                "downloadState": _download_state(row),
            }
        ]
    if template.checksum:
        view["checksum"] = template.checksum
    if template.templatetag:
        view["templatetag"] = template.templatetag
    return view


def _download_state(row: TemplateZone) -> str:
    return {"Ready": "DOWNLOADED", "Downloading": "DOWNLOAD_IN_PROGRESS", "Error": "DOWNLOAD_ERROR"}.get(
        row.state.value, "NOT_DOWNLOADED"
    )


def domain_view(state: State, domain: Domain) -> dict[str, Any]:
    children = [d for d in state.domains.values() if d.parent_id == domain.id]
    view: dict[str, Any] = {
        "id": domain.id,
        "name": domain.name,
        "level": domain.path.count("/"),
        "haschild": bool(children),
        "path": domain.path,
        "state": "Active",
        "hasannotations": False,
        **limit_fields(state, Holder("domain", domain.id)),
    }
    if domain.parent_id is not None:
        view.update(
            {"parentdomainid": domain.parent_id, "parentdomainname": state.domains[domain.parent_id].name}
        )
    return view


def account_view(state: State, account: Account) -> dict[str, Any]:
    domain = state.domains[account.domain_id]
    return {
        "id": account.id, "name": account.name, "accounttype": ROLE_ACCOUNT_TYPES[account.roletype],
        "roletype": account.roletype, "rolename": {"DomainAdmin": "Domain Admin"}.get(account.roletype,
                                                                                        account.roletype),
        "domainid": domain.id, "domain": domain.name, "domainpath": domain.path, "state": account.state,
        "isdefault": account.name == "admin" and domain.parent_id is None, "user": [],
        **limit_fields(state, Holder("account", account.id)),
    }  # fmt: skip


def project_view(state: State, project: Project) -> dict[str, Any]:
    domain = state.domains[project.domain_id]
    owner = state.accounts[project.owner_account_id]
    return {
        "id": project.id,
        "name": project.name,
        "displaytext": project.displaytext,
        "domainid": domain.id,
        "domain": domain.name,
        "owner": [{"account": owner.name}],
        "state": "Active",
        "tags": [],
        **limit_fields(state, Holder("project", project.id)),
    }


def _nic_view(state: State, vm: VirtualMachine, nic: Nic) -> dict[str, Any]:
    network = state.catalog["network"].get(nic.network_id)
    fields = network.fields if network is not None else {}
    view = {
        "id": stable_uuid("nic", vm.id, nic.network_id), "networkid": nic.network_id,
        "networkname": fields.get("name", ""), "netmask": fields.get("netmask", ""),
        "gateway": fields.get("gateway", ""), "ipaddress": nic.ip_address, "isdefault": nic.is_default,
        "traffictype": "Guest", "type": fields.get("type", "Isolated"), "macaddress": nic.mac_address,
        "broadcasturi": "vlan://untagged", "isolationuri": "vlan://untagged", "deviceid": "0",
        "virtualmachineid": vm.id,
    }  # fmt: skip
    if fields.get("vpcid"):  # a VPC tier's NIC names its VPC (NicResponse vpcid, vpcname)
        view.update(vpcid=fields["vpcid"], vpcname=fields.get("vpcname", ""))
    return view


def vm_view(state: State, vm: VirtualMachine, caller: Account, metrics: bool = False) -> dict[str, Any]:
    """UserVmResponse (UserVmJoinDaoImpl.newUserVmResponse); with `metrics` also VmMetricsResponse's
    fields. Host and instance names are shown to root admins only."""
    zone = state.zones[vm.zone_id]
    template = state.templates.get(vm.template_id)
    offering = state.catalog["serviceoffering"].get(vm.service_offering_id)
    view: dict[str, Any] = {"id": vm.id, "name": vm.name, "displayname": vm.displayname}
    view.update(owner_fields(state, vm.owner))
    view.update({
        "created": vm.created, "state": vm.state.value, "haenable": False, "zoneid": zone.id,
        "zonename": zone.name, "templateid": vm.template_id,
        "templatename": template.name if template else "",
        "templatedisplaytext": template.displaytext if template else "",
        "passwordenabled": bool(template and template.passwordenabled),
        "serviceofferingid": vm.service_offering_id,
        "serviceofferingname": offering.name if offering else "", "cpunumber": vm.cpunumber,
        "cpuspeed": vm.cpuspeed, "memory": vm.memory, "guestosid": template.ostype_id if template else "",
        "rootdeviceid": 0, "rootdevicetype": "ROOT", "securitygroup": [],
        "nic": [_nic_view(state, vm, nic) for nic in vm.nics], "hypervisor": vm.hypervisor,
        "details": dict(vm.details), "tags": [], "isdynamicallyscalable": False,
        "ostypeid": template.ostype_id if template else "", "hasannotations": False,
        "affinitygroup": [_affinity_view(state, g) for g in vm.affinity_group_ids],
    })  # fmt: skip
    if vm.disk_offering_id is not None:
        disk = state.catalog["diskoffering"].get(vm.disk_offering_id)
        view.update({"diskofferingid": vm.disk_offering_id, "diskofferingname": disk.name if disk else ""})
    if vm.keypairs:
        view["keypairs"] = ",".join(vm.keypairs)
    if caller.is_root_admin:
        view["instancename"] = instance_name(state, vm)
        if vm.state in (VmState.RUNNING, VmState.STOPPING):
            view.update({"hostid": stable_uuid("host", zone.id), "hostname": f"{zone.name}-host-1"})
    if metrics:
        default = next((n for n in vm.nics if n.is_default), None)
        view.update({
            "ipaddress": default.ip_address if default else "",
            "cputotal": f"{vm.cpunumber * vm.cpuspeed / 1000:.2f} Ghz",
            "memorytotal": f"{vm.memory / 1024:.2f} GB", "networkread": "0.00 MB", "networkwrite": "0.00 MB",
            "diskread": "0.00 MB", "diskwrite": "0.00 MB", "diskiopstotal": 0,
        })  # fmt: skip
    return view


def instance_name(state: State, vm: VirtualMachine) -> str:
    """CloudStack's internal name, i-<account id>-<vm id>-VM."""
    owner = vm.owner.account_id
    account_db_id = state.account_db_id(owner) if owner is not None else 0
    return f"i-{account_db_id}-{vm.db_id}-VM"


def _affinity_view(state: State, group_id: str) -> dict[str, Any]:
    group = state.catalog["affinitygroup"].get(group_id)
    if group is None:
        return {"id": group_id}
    return {"id": group.id, "name": group.name, "type": group.fields.get("type", "")}


def volume_view(state: State, volume: Volume) -> dict[str, Any]:
    zone = state.zones[volume.zone_id]
    view: dict[str, Any] = {
        "id": volume.id, "name": volume.name, "zoneid": zone.id, "zonename": zone.name, "type": volume.type,
        "deviceid": volume.device_id, "size": volume.size, "created": volume.created, "state": "Ready",
        "storagetype": "shared", "destroyed": False, "isextractable": False, "hasannotations": False,
    }  # fmt: skip
    view.update(owner_fields(state, volume.owner))
    vm = state.vms.get(volume.vm_id or "")
    if vm is not None:
        view.update({
            "virtualmachineid": vm.id, "vmname": vm.name, "vmdisplayname": vm.displayname,
            "vmstate": vm.state.value, "hypervisor": vm.hypervisor,
        })  # fmt: skip
    if volume.disk_offering_id is not None:
        offering = state.catalog["diskoffering"].get(volume.disk_offering_id)
        view.update(
            {"diskofferingid": volume.disk_offering_id, "diskofferingname": offering.name if offering else ""}
        )
    return view
