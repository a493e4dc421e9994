"""Seed files: a YAML description of a cloud, loaded into State.

Entities reference each other by name (zones also by id); ids default to stable UUIDs derived from
names so the same seed always produces the same ids. Sections (all optional; see
examples/cloudstack-seed.yaml):

- credentials: {account, domain, api_key?, secret_key?} - whose keys the API uses (random keys if absent)
- settings: {poll_steps, job_polls, download_seconds, expunge_polls, allow_user_expunge_recover_vm,
  allow_user_view_destroyed_vm}
- domains [{path: ROOT/x}], accounts [{name, domain, roletype: Admin|DomainAdmin|User,
  users: [{username, keys?: true (random keys), api_key?, secret_key?, id?}]}],
  projects [{name, domain, owner, members}]
- zones [{name, hypervisors, allocationstate, networktype}], ostypes [{description, category}]
- service_offerings, disk_offerings [{name, ..., zones?, domains?}]; networks [{name, zone, type, ...}];
  affinity_groups, ssh_keypairs [{name, ..., owner?}] - extra keys pass through to the API objects
- templates [{name, hypervisor, format, ostype, owner?, ispublic, isfeatured, tags: {k: v},
  zones: [zone] | {zone: ready | downloading | not_uploaded | {percent: N} | {error: text}}, ...}]
- virtual_machines [{name, zone, template, service_offering, networks: [name], owner?, displayname?,
  state: Running|Stopped|Error|Destroyed, disk_offering?, rootdisksize? (GiB), id?}]
- faults: {latency: [{seconds, commands?, times?}], errors: [{command, times, errorcode?, errortext?}],
  downloads: [{zone, mode: stall|error, at_percent, message?, template?}],
  deploys: [{zone?, name? (prefix), times?, errorcode?, errortext?}], key_expired}

An `owner` is {account, domain} or {project}; without one, the credentials' account owns the resource.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from . import downloads
from .faults import parse_faults
from .model import (
    Account,
    CatalogItem,
    Domain,
    Nic,
    OsType,
    Owner,
    Project,
    Tag,
    Template,
    TemplateZone,
    User,
    VirtualMachine,
    VmState,
    Volume,
    Zone,
    ZoneState,
    cs_timestamp,
)
from .state import State, random_key

_NAMESPACE = uuid.UUID("3f0c1a52-6a4e-4c8e-9b7d-2a1f5c0e9d41")
NETWORK_IN_VPC_OFFERING = "DefaultIsolatedNetworkOfferingForVpcNetworks"
SEED_SECTIONS = {
    "credentials", "settings", "domains", "accounts", "projects", "zones", "ostypes",
    "service_offerings", "disk_offerings", "vpcs", "networks", "affinity_groups", "ssh_keypairs",
    "templates", "virtual_machines", "faults",
}  # fmt: skip
TEMPLATE_FLAGS = (
    "ispublic", "isfeatured", "isextractable", "passwordenabled", "sshkeyenabled", "isdynamicallyscalable",
    "requireshvm", "bootable", "bits", "checksum", "url", "templatetag", "directdownload", "crosszones",
    "size", "physicalsize", "created",
)  # fmt: skip
TEMPLATE_KEYS = {
    "id",
    "name",
    "displaytext",
    "hypervisor",
    "format",
    "ostype",
    "owner",
    "tags",
    "details",
    "zones",
}


class SeedError(ValueError):
    """The seed refers to something that does not exist or has an unknown shape."""


def stable_id(kind: str, *names: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, ":".join((kind, *names))))


def load_seed(path: str | Path) -> dict[str, Any]:
    """Read a seed YAML file into a plain dict (validated when applied)."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise SeedError(f"{path}: a seed must be a mapping")
    return data


def apply_seed(state: State, seed: Mapping[str, Any] | None, keep_credentials: bool = False) -> None:
    """Replace the cloud in `state` with the one `seed` describes."""
    seed = seed or {}
    unknown = set(seed) - SEED_SECTIONS
    if unknown:
        raise SeedError(f"unknown seed sections: {sorted(unknown)}")
    with state.lock:
        state.clear()
        _settings(state, seed.get("settings") or {})
        _domains(state, seed.get("domains") or [])
        _accounts(state, seed.get("accounts") or [])
        _credentials(state, seed.get("credentials") or {}, keep_credentials)
        _projects(state, seed.get("projects") or [])
        for spec in seed.get("zones") or []:
            _zone(state, spec)
        for spec in seed.get("ostypes") or []:
            _ostype(state, spec)
        for spec in seed.get("service_offerings") or []:
            _catalog(state, "serviceoffering", spec, _service_offering_fields(spec))
        for spec in seed.get("disk_offerings") or []:
            _catalog(state, "diskoffering", spec, _disk_offering_fields(spec))
        for spec in seed.get("vpcs") or []:
            _catalog(state, "vpc", spec, _vpc_fields(state, spec))
        for spec in seed.get("networks") or []:
            _catalog(state, "network", spec, _network_fields(state, spec))
        for spec in seed.get("affinity_groups") or []:
            _catalog(state, "affinitygroup", spec, _affinity_group_fields(spec))
        for spec in seed.get("ssh_keypairs") or []:
            _catalog(state, "sshkeypair", spec, _keypair_fields(spec))
        for spec in seed.get("templates") or []:
            add_template(state, spec)
        for spec in seed.get("virtual_machines") or []:
            add_vm(state, spec)
        state.faults = parse_faults(seed.get("faults") or {}, _zone_resolver(state))


def _zone_resolver(state: State) -> Any:
    def resolve(ref: str) -> str:
        try:
            return state.zone_id(ref)
        except ValueError as exc:
            raise SeedError(str(exc)) from exc

    return resolve


def _settings(state: State, spec: Mapping[str, Any]) -> None:
    state.settings.job_polls = int(spec.get("job_polls", state.settings.job_polls))
    policy = state.settings.download
    policy.poll_steps = int(spec.get("poll_steps", policy.poll_steps))
    seconds = spec.get("download_seconds", policy.seconds)
    policy.seconds = None if seconds is None else float(seconds)
    state.settings.expunge_polls = int(spec.get("expunge_polls", state.settings.expunge_polls))
    for flag in ("allow_user_expunge_recover_vm", "allow_user_view_destroyed_vm"):
        setattr(state.settings, flag, bool(spec.get(flag, getattr(state.settings, flag))))


def _domains(state: State, specs: list[Mapping[str, Any]]) -> None:
    paths = ["ROOT"] + [str(s["path"]) for s in specs if str(s["path"]).upper() != "ROOT"]
    ids = {str(s["path"]).upper(): s.get("id") for s in specs}
    for path in paths:
        parent_path, _, name = path.rpartition("/")
        parent = state.domain_by_path(parent_path) if parent_path else None
        if parent_path and parent is None:
            raise SeedError(f"domain {path!r}: parent {parent_path!r} is not declared before it")
        domain_id = str(ids.get(path.upper()) or stable_id("domain", path))
        state.domains[domain_id] = Domain(domain_id, name, path, parent.id if parent else None)


def _domain_id(state: State, path: str | None) -> str:
    domain = state.domain_by_path(path or "ROOT")
    if domain is None:
        raise SeedError(f"unknown domain {path!r}")
    return domain.id


def _accounts(state: State, specs: list[Mapping[str, Any]]) -> None:
    for spec in specs:
        domain_id = _domain_id(state, spec.get("domain"))
        roletype = str(spec.get("roletype", "User"))
        if roletype not in ("Admin", "DomainAdmin", "User"):
            raise SeedError(f"account {spec['name']!r}: roletype must be Admin, DomainAdmin or User")
        account_id = str(spec.get("id") or stable_id("account", str(spec["name"]), domain_id))
        state.accounts[account_id] = Account(
            account_id, str(spec["name"]), domain_id, roletype, str(spec.get("state", "enabled"))
        )
        for user_spec in spec.get("users") or []:
            _user(state, account_id, user_spec)


def _user(state: State, account_id: str, spec: Mapping[str, Any]) -> None:
    """A user; `keys: true` gives it random keys, api_key/secret_key pin them, neither leaves it keyless."""
    name = str(spec["username"])
    user = User(str(spec.get("id") or stable_id("user", name, account_id)), name, account_id)
    if spec.get("keys") or "api_key" in spec:
        user.api_key = str(spec.get("api_key") or random_key())
        user.secret_key = str(spec.get("secret_key") or random_key())
    state.users[user.id] = user


def _credentials(state: State, spec: Mapping[str, Any], keep: bool) -> None:
    domain_id = _domain_id(state, spec.get("domain"))
    name = str(spec.get("account", "admin"))
    account = state.account_named(name, domain_id)
    if account is None:
        account = Account(stable_id("account", name, domain_id), name, domain_id, "Admin")
        state.accounts[account.id] = account
    creds = state.credentials
    creds.account_id = account.id
    if "api_key" in spec or not keep:
        creds.api_key = str(spec.get("api_key") or random_key())
    if "secret_key" in spec or not keep:
        creds.secret_key = str(spec.get("secret_key") or random_key())


def _projects(state: State, specs: list[Mapping[str, Any]]) -> None:
    for spec in specs:
        domain_id = _domain_id(state, spec.get("domain"))
        members = [_account_id(state, str(n), domain_id) for n in [spec["owner"], *spec.get("members", [])]]
        project_id = str(spec.get("id") or stable_id("project", str(spec["name"])))
        state.projects[project_id] = Project(
            project_id,
            str(spec["name"]),
            str(spec.get("displaytext", spec["name"])),
            domain_id,
            members[0],
            members,
        )


def _account_id(state: State, name: str, domain_id: str) -> str:
    account = state.account_named(name, domain_id)
    if account is None:
        raise SeedError(f"unknown account {name!r} in domain {state.domains[domain_id].path}")
    return account.id


def owner_from_spec(state: State, spec: Mapping[str, Any] | None) -> Owner:
    """`{account, domain}` or `{project}`; absent means the account the API keys belong to."""
    if not spec:
        return Owner(account_id=state.credentials.account_id)
    if "project" in spec:
        project = state.project_named(str(spec["project"]))
        if project is None:
            raise SeedError(f"unknown project {spec['project']!r}")
        return Owner(project_id=project.id)
    return Owner(account_id=_account_id(state, str(spec["account"]), _domain_id(state, spec.get("domain"))))


def _zone(state: State, spec: Mapping[str, Any]) -> None:
    zone_id = str(spec.get("id") or stable_id("zone", str(spec["name"])))
    extra = {
        k: spec[k]
        for k in (
            "description",
            "dns1",
            "internaldns1",
            "guestcidraddress",
            "networktype",
            "allocationstate",
            "localstorageenabled",
            "securitygroupsenabled",
        )
        if k in spec
    }
    state.zones[zone_id] = Zone(
        zone_id, str(spec["name"]), [str(h) for h in spec.get("hypervisors", ["KVM"])], **extra
    )


def _ostype(state: State, spec: Mapping[str, Any]) -> None:
    category = str(spec.get("category", "Other"))
    ostype_id = str(spec.get("id") or stable_id("ostype", str(spec["description"])))
    state.ostypes[ostype_id] = OsType(
        ostype_id,
        str(spec["description"]),
        str(spec.get("category_id") or stable_id("oscategory", category)),
        category,
    )


def _zone_refs(state: State, refs: list[str] | None) -> list[str] | None:
    if refs is None:
        return None
    return [_zone_resolver(state)(str(ref)) for ref in refs]


def _catalog(state: State, kind: str, spec: Mapping[str, Any], fields: dict[str, Any]) -> None:
    fields.setdefault("id", str(spec.get("id") or stable_id(kind, str(spec["name"]))))
    fields.setdefault("name", str(spec["name"]))
    owned = kind in ("network", "affinitygroup", "sshkeypair", "vpc")
    zone_refs = spec.get("zones") if "zones" in spec else ([spec["zone"]] if "zone" in spec else None)
    shared = kind == "network" and fields.get("acltype") == "Domain"
    item = CatalogItem(
        kind=kind,
        fields=fields,
        owner=owner_from_spec(state, spec.get("owner")) if owned and not shared else None,
        zone_ids=_zone_refs(state, zone_refs),
        domain_ids=[_domain_id(state, d) for d in spec["domains"]] if "domains" in spec else None,
        shared=shared,
    )
    state.catalog[kind][item.id] = item


_RESERVED = {"id", "name", "zones", "zone", "domains", "owner"}


def _extra(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in _RESERVED}


def _service_offering_fields(spec: Mapping[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "name": str(spec["name"]), "displaytext": str(spec.get("displaytext", spec["name"])),
        "created": cs_timestamp(), "storagetype": "shared", "provisioningtype": "thin", "offerha": False,
        "limitcpuuse": False, "isvolatile": False, "issystem": False, "defaultuse": False,
        "iscustomized": False, "dynamicscalingenabled": True, "diskofferingstrictness": False,
        "hasannotations": False, "cacheMode": "none",
    }  # fmt: skip
    fields.update(_extra(spec))
    return fields


def _disk_offering_fields(spec: Mapping[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "name": str(spec["name"]), "displaytext": str(spec.get("displaytext", spec["name"])),
        "created": cs_timestamp(), "iscustomized": False, "storagetype": "shared", "provisioningtype": "thin",
        "displayoffering": True, "cacheMode": "none", "encrypt": False, "disksizestrictness": False,
        "hasannotations": False,
    }  # fmt: skip
    fields.update(_extra(spec))
    return fields


def _seeded_zone(state: State, what: str, spec: Mapping[str, Any]) -> Zone:
    """The zone a network or VPC of the seed is in; an unknown one is a seed error."""
    zone = state.zone(str(spec["zone"]))
    if zone is None:
        raise SeedError(f"{what} {spec['name']!r}: unknown zone {spec['zone']!r}")
    return zone


def _network_fields(state: State, spec: Mapping[str, Any]) -> dict[str, Any]:
    zone = _seeded_zone(state, "network", spec)
    offering = str(spec.get("networkofferingname", "DefaultIsolatedNetworkOfferingWithSourceNatService"))
    network_type = str(spec.get("type", "Isolated"))
    fields: dict[str, Any] = {
        "name": str(spec["name"]), "displaytext": str(spec.get("displaytext", spec["name"])),
        "zoneid": zone.id, "zonename": zone.name, "type": network_type,
        "acltype": "Domain" if network_type == "Shared" else "Account", "traffictype": "Guest",
        "broadcastdomaintype": "Vlan", "state": "Implemented",
        "networkofferingid": stable_id("netoffering", offering),
        "networkofferingname": offering, "networkofferingdisplaytext": offering,
        "networkofferingavailability": "Optional", "networkofferingconservemode": True, "issystem": False,
        "canusefordeploy": True, "ispersistent": False, "restartrequired": False, "specifyipranges": False,
        "redundantrouter": False, "tags": [], "service": [], "dns1": zone.dns1,
    }  # fmt: skip
    fields.update(_extra(spec))
    vpc_name = fields.pop("vpc", None)
    if vpc_name is not None:
        vpc = _catalog_named(state, "vpc", str(vpc_name))
        fields.update(vpcid=vpc.id, vpcname=vpc.name, networkofferingname=NETWORK_IN_VPC_OFFERING)
        fields["networkofferingid"] = stable_id("netoffering", NETWORK_IN_VPC_OFFERING)
    return fields


def _vpc_fields(state: State, spec: Mapping[str, Any]) -> dict[str, Any]:
    zone = _seeded_zone(state, "VPC", spec)
    offering = "Default VPC offering"
    fields: dict[str, Any] = {
        "name": str(spec["name"]), "displaytext": str(spec.get("displaytext", spec["name"])),
        "zoneid": zone.id, "zonename": zone.name, "cidr": str(spec.get("cidr", "10.100.0.0/16")),
        "state": "Enabled", "vpcofferingid": stable_id("vpcoffering", offering), "vpcofferingname": offering,
        "restartrequired": False, "redundantvpcrouter": False, "regionlevelvpc": False,
        "distributedvpcrouter": False, "fordisplay": True, "created": cs_timestamp(),
    }  # fmt: skip
    fields.update(_extra(spec))
    return fields


def _affinity_group_fields(spec: Mapping[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "name": str(spec["name"]),
        "type": "host anti-affinity",
        "description": "",
        "virtualmachineIds": [],
    }
    fields.update(_extra(spec))
    return fields


def _keypair_fields(spec: Mapping[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {"name": str(spec["name"]), "fingerprint": str(spec.get("fingerprint", ""))}
    fields.update(_extra(spec))
    return fields


def add_template(state: State, spec: Mapping[str, Any]) -> Template:
    """Add one template in seed format (also used by the admin endpoint)."""
    unknown = set(spec) - TEMPLATE_KEYS - set(TEMPLATE_FLAGS)
    if unknown:
        raise SeedError(f"template {spec.get('name')!r}: unknown keys {sorted(unknown)}")
    with state.lock:
        owner = owner_from_spec(state, spec.get("owner"))
        ostype = _ostype_ref(state, str(spec.get("ostype", "")))
        template_id = str(spec.get("id") or uuid.uuid4())
        template = Template(
            id=template_id, name=str(spec["name"]), displaytext=str(spec.get("displaytext", spec["name"])),
            format=str(spec.get("format", "QCOW2")).upper(), hypervisor=str(spec.get("hypervisor", "KVM")),
            ostype_id=ostype, owner=owner, created=cs_timestamp(), details=dict(spec.get("details") or {}),
        )  # fmt: skip
        for flag in TEMPLATE_FLAGS:
            if flag in spec:
                setattr(template, flag, spec[flag])
        for zone_ref, zone_spec in _zone_specs(spec.get("zones")).items():
            zone_id = _zone_resolver(state)(zone_ref)
            template.zones[zone_id] = _zone_row(state, template, zone_id, zone_spec)
        state.templates[template_id] = template
        for key, value in (spec.get("tags") or {}).items():
            state.tags.append(Tag(str(key), str(value), "Template", template_id, owner))
        return template


def _ostype_ref(state: State, ref: str) -> str:
    if ref in state.ostypes:
        return ref
    for ostype in state.ostypes.values():
        if ostype.description == ref:
            return ostype.id
    raise SeedError(f"unknown OS type {ref!r}")


def _zone_specs(zones: Any) -> dict[str, Any]:
    if zones is None:
        return {}
    if isinstance(zones, list):
        return {str(z): "ready" for z in zones}
    return {str(k): v for k, v in dict(zones).items()}


def _zone_row(state: State, template: Template, zone_id: str, spec: Any) -> TemplateZone:
    """`ready`, `downloading`, `not_uploaded`, `{percent: N}` or `{error: text}`."""
    row = TemplateZone(zone_id=zone_id, state=ZoneState.READY, created=template.created, percent=100)
    if spec == "ready":
        return row
    if spec == "not_uploaded":
        row.state, row.percent = ZoneState.NOT_UPLOADED, 0
        return row
    if spec == "downloading" or (isinstance(spec, Mapping) and "percent" in spec):
        downloads.start(row, state.settings.download, state.download_fault_for(template, zone_id))
        if isinstance(spec, Mapping):
            row.percent = int(spec["percent"])
        return row
    if isinstance(spec, Mapping) and "error" in spec:
        row.state, row.percent, row.error = ZoneState.ERROR, 0, str(spec["error"])
        return row
    raise SeedError(f"template {template.name!r}: unknown zone state {spec!r}")


VM_KEYS = {
    "id", "name", "displayname", "zone", "template", "service_offering", "networks", "owner", "state",
    "disk_offering", "rootdisksize",
}  # fmt: skip
VM_STATES = {"Running": VmState.RUNNING, "Stopped": VmState.STOPPED, "Error": VmState.ERROR,
             "Destroyed": VmState.DESTROYED}  # fmt: skip
GIB = 1024**3


def _catalog_named(state: State, kind: str, name: str) -> CatalogItem:
    found = next((i for i in state.catalog[kind].values() if name in (i.name, i.id)), None)
    if found is None:
        raise SeedError(f"unknown {kind} {name!r}")
    return found


def add_vm(state: State, spec: Mapping[str, Any]) -> VirtualMachine:
    """Add one VM (with its root volume, and a data volume for a disk offering) in seed format."""
    unknown = set(spec) - VM_KEYS
    if unknown:
        raise SeedError(f"virtual machine {spec.get('name')!r}: unknown keys {sorted(unknown)}")
    if spec.get("state", "Running") not in VM_STATES:
        raise SeedError(f"virtual machine {spec['name']!r}: state must be one of {sorted(VM_STATES)}")
    zone_id = _zone_resolver(state)(str(spec["zone"]))
    template = next(
        (t for t in state.templates.values() if str(spec["template"]) in (t.id, t.name) and not t.removed),
        None,
    )
    if template is None:
        raise SeedError(f"virtual machine {spec['name']!r}: unknown template {spec['template']!r}")
    offering = _catalog_named(state, "serviceoffering", str(spec["service_offering"]))
    networks = [_catalog_named(state, "network", str(n)) for n in spec.get("networks") or []]
    owner = owner_from_spec(state, spec.get("owner"))
    vm = VirtualMachine(
        id=str(spec.get("id") or stable_id("vm", str(spec["name"]), zone_id)), db_id=state.next_db_id(),
        name=str(spec["name"]), displayname=str(spec.get("displayname", spec["name"])), owner=owner,
        zone_id=zone_id, template_id=template.id, service_offering_id=offering.id,
        cpunumber=int(offering.fields.get("cpunumber", 1)),
        cpuspeed=int(offering.fields.get("cpuspeed", 1000)), memory=int(offering.fields.get("memory", 512)),
        nics=[], created=cs_timestamp(),
        state=VM_STATES[str(spec.get("state", "Running"))], hypervisor=template.hypervisor,
    )  # fmt: skip
    for index, network in enumerate(networks):
        host = ipaddress.ip_network(str(network.fields.get("cidr", "10.0.0.0/24")), strict=False)
        address = str(host.network_address + 10 + vm.db_id)
        vm.nics.append(Nic(network.id, address, f"02:00:01:00:{vm.db_id & 255:02x}:{index:02x}", index == 0))
    state.vms[vm.id] = vm
    root = int(spec["rootdisksize"]) * GIB if "rootdisksize" in spec else max(template.size, GIB)
    root_id = stable_id("volume", vm.id, "ROOT")
    state.volumes[root_id] = Volume(
        root_id, f"ROOT-{vm.db_id}", "ROOT", vm.id, owner, zone_id, root, vm.created
    )
    if "disk_offering" in spec:
        disk = _catalog_named(state, "diskoffering", str(spec["disk_offering"]))
        vm.disk_offering_id = disk.id
        volume_id = stable_id("volume", vm.id, "DATADISK")
        state.volumes[volume_id] = Volume(
            volume_id, f"DATA-{vm.db_id}", "DATADISK", vm.id, owner, zone_id,
            int(disk.fields.get("disksize", 0)) * GIB, vm.created, disk.id, 1,
        )  # fmt: skip
    return vm
