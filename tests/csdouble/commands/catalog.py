"""Read-only catalogue commands: zones, OS types, hypervisors, offerings, networks, affinity groups,
SSH key pairs, domains, accounts and projects."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import invalid_parameter
from ..listing import Scope, owner_scope, paged_list
from ..model import CatalogItem
from ..params import Context, keyword_match, same_name
from ..views import account_view, catalog_view, domain_view, project_view, zone_view


def list_zones(ctx: Context) -> dict[str, Any]:
    state = ctx.state
    zone = ctx.entity("id", state.zones)
    name, keyword = ctx.text("name"), ctx.text("keyword")
    zones = []
    for candidate in state.zones.values():
        if zone is not None and candidate is not zone:
            continue
        if zone is None and name is not None and not same_name(candidate.name, name):
            continue
        if (
            zone is None
            and name is None
            and not keyword_match(keyword, candidate.name, candidate.description)
        ):
            continue
        if not ctx.caller.is_root_admin and candidate.allocationstate == "Disabled":
            continue
        if ctx.has("networktype") and candidate.networktype != ctx.text("networktype"):
            continue
        zones.append(zone_view(candidate))
    return paged_list(ctx, "zone", zones)


def list_os_types(ctx: Context) -> dict[str, Any]:
    ostype = ctx.entity("id", ctx.state.ostypes)
    description, keyword = ctx.text("description"), ctx.text("keyword")
    category = ctx.text("oscategoryid")
    rows = [
        {"id": o.id, "name": o.description, "description": o.description, "oscategoryid": o.oscategory_id,
         "oscategoryname": o.oscategory_name, "isuserdefined": False, "fordisplay": True}
        for o in ctx.state.ostypes.values()
        if (ostype is None or o is ostype) and keyword_match(description, o.description)
        and keyword_match(keyword, o.description) and category in (None, o.oscategory_id)
    ]  # fmt: skip
    return paged_list(ctx, "ostype", rows)


def list_hypervisors(ctx: Context) -> dict[str, Any]:
    zone = ctx.entity("zoneid", ctx.state.zones)
    zones = [zone] if zone is not None else list(ctx.state.zones.values())
    names: list[str] = []
    for candidate in zones:
        names.extend(h for h in candidate.hypervisors if h not in names)
    return paged_list(ctx, "hypervisor", [{"name": n} for n in names])


def _offerings(ctx: Context, kind: str, key: str) -> dict[str, Any]:
    state, caller = ctx.state, ctx.caller
    offering = ctx.entity("id", state.catalog[kind])
    zone = ctx.entity("zoneid", state.zones)
    name, keyword = ctx.text("name"), ctx.text("keyword")
    rows = []
    for item in state.catalog[kind].values():
        if offering is not None and item is not offering:
            continue
        if name is not None and not same_name(item.name, name):
            continue
        if not keyword_match(keyword, item.name, str(item.fields.get("displaytext", ""))):
            continue
        if zone is not None and item.zone_ids is not None and zone.id not in item.zone_ids:
            continue
        if (
            not caller.is_root_admin
            and item.domain_ids is not None
            and not any(state.is_subdomain(caller.domain_id, d) for d in item.domain_ids)
        ):
            continue
        rows.append(catalog_view(state, item))
    return paged_list(ctx, key, rows)


def list_service_offerings(ctx: Context) -> dict[str, Any]:
    if ctx.flag("issystem") and not ctx.caller.is_root_admin:
        raise invalid_parameter("Only ROOT admins can access system's offering")
    if ctx.flag("issystem"):
        return {}
    return _offerings(ctx, "serviceoffering", "serviceoffering")


def list_disk_offerings(ctx: Context) -> dict[str, Any]:
    return _offerings(ctx, "diskoffering", "diskoffering")


def _owned(ctx: Context, kind: str, key: str, extra: Iterable[tuple[str, str]] = ()) -> dict[str, Any]:
    """List an account/project-owned kind with owner scoping and id/name/keyword filters."""
    state = ctx.state
    item_ref = ctx.entity("id", state.catalog[kind])
    zone = ctx.entity("zoneid", state.zones) if kind in ("network", "vpc") else None
    scope = owner_scope(ctx, list_all=bool(ctx.flag("listall")) or item_ref is not None)
    name, keyword = ctx.text("name"), ctx.text("keyword")
    rows = []
    for item in state.catalog[kind].values():
        if item_ref is not None and item is not item_ref:
            continue
        if not _visible(item, scope):
            continue
        if name is not None and not same_name(item.name, name):
            continue
        if not keyword_match(keyword, item.name, str(item.fields.get("displaytext", ""))):
            continue
        if zone is not None and item.fields.get("zoneid") != zone.id:
            continue
        if any(
            ctx.has(param) and str(item.fields.get(field)).lower() != str(ctx.text(param)).lower()
            for param, field in extra
        ):
            continue
        rows.append(catalog_view(state, item))
    return paged_list(ctx, key, rows)


def _visible(item: CatalogItem, scope: Scope) -> bool:
    if item.shared or item.owner is None:
        return True
    return scope.kind_ok(item.owner) and scope.owns(item.owner)


def list_networks(ctx: Context) -> dict[str, Any]:
    return _owned(
        ctx,
        "network",
        "network",
        [
            ("type", "type"),
            ("traffictype", "traffictype"),
            ("canusefordeploy", "canusefordeploy"),
            ("vpcid", "vpcid"),
            ("acltype", "acltype"),
        ],
    )


def list_vpcs(ctx: Context) -> dict[str, Any]:
    return _owned(ctx, "vpc", "vpc", [("state", "state"), ("vpcofferingid", "vpcofferingid")])


def list_affinity_groups(ctx: Context) -> dict[str, Any]:
    return _owned(ctx, "affinitygroup", "affinitygroup", [("type", "type")])


def list_ssh_key_pairs(ctx: Context) -> dict[str, Any]:
    return _owned(ctx, "sshkeypair", "sshkeypair", [("fingerprint", "fingerprint")])


def list_domains(ctx: Context) -> dict[str, Any]:
    state, caller = ctx.state, ctx.caller
    domain = ctx.entity("id", state.domains)
    name, keyword, level = ctx.text("name"), ctx.text("keyword"), ctx.integer("level")
    rows = []
    for candidate in state.domains.values():
        if caller.is_normal_user and candidate.id != caller.domain_id:
            continue
        if not caller.is_root_admin and not state.is_subdomain(candidate.id, caller.domain_id):
            continue
        if domain is not None and candidate is not domain:
            continue
        if name is not None and not same_name(candidate.name, name):
            continue
        if not keyword_match(keyword, candidate.name) or (
            level is not None and candidate.path.count("/") != level
        ):
            continue
        rows.append(domain_view(state, candidate))
    return paged_list(ctx, "domain", rows)


def list_accounts(ctx: Context) -> dict[str, Any]:
    state = ctx.state
    account = ctx.entity("id", state.accounts)
    scope = owner_scope(ctx, list_all=bool(ctx.flag("listall")) or account is not None)
    name, keyword = ctx.text("name"), ctx.text("keyword")
    rows = [
        account_view(state, a) for a in state.accounts.values()
        if (account is None or a is account) and (scope.accounts is None or a.id in scope.accounts)
        and (name is None or same_name(a.name, name)) and keyword_match(keyword, a.name)
    ]  # fmt: skip
    return paged_list(ctx, "account", rows)


def list_projects(ctx: Context) -> dict[str, Any]:
    state, caller = ctx.state, ctx.caller
    project = ctx.entity("id", state.projects)
    list_all = bool(ctx.flag("listall")) and not caller.is_normal_user
    name, keyword = ctx.text("name"), ctx.text("keyword")
    rows = []
    for candidate in state.projects.values():
        if project is not None and candidate is not project:
            continue
        member = caller.id in candidate.member_account_ids
        in_domain = caller.is_root_admin or state.is_subdomain(candidate.domain_id, caller.domain_id)
        if not member and not (list_all and in_domain):
            continue
        if (name is not None and not same_name(candidate.name, name)) or not keyword_match(
            keyword, candidate.name
        ):
            continue
        rows.append(project_view(state, candidate))
    return paged_list(ctx, "project", rows)


COMMANDS = {
    "listZones": (list_zones, None),
    "listOsTypes": (list_os_types, None),
    "listHypervisors": (list_hypervisors, None),
    "listServiceOfferings": (list_service_offerings, None),
    "listDiskOfferings": (list_disk_offerings, None),
    "listNetworks": (list_networks, None),
    "listVPCs": (list_vpcs, None),
    "listAffinityGroups": (list_affinity_groups, None),
    "listSSHKeyPairs": (list_ssh_key_pairs, None),
    "listDomains": (list_domains, None),
    "listAccounts": (list_accounts, None),
    "listProjects": (list_projects, None),
}
