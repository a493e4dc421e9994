"""registerTemplate (synchronous: returns the records, downloads continue per zone) and
getUploadParamsForTemplate (hands out a signed POST URL for the upload endpoint)."""

from __future__ import annotations

import base64
import ipaddress
import json
import secrets
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

from .. import downloads
from ..errors import (
    INTERNAL_ERROR,
    USER_ERROR_MESSAGE,
    ApiError,
    illegal_argument,
    invalid_parameter,
    param_error,
    permission_denied,
)
from ..model import (
    HYPERVISOR_TYPES,
    IMAGE_FORMATS,
    Owner,
    Template,
    TemplateZone,
    UploadTicket,
    Zone,
    ZoneState,
    cs_timestamp,
    hypervisor_type,
)
from ..params import Context
from ..signing import format_expires, upload_signature
from ..views import template_row

_COMPRESSIONS = ("", ".zip", ".bz2", ".gz")
# UriUtils.SUPPORTED_EXTENSIONS_BY_FORMAT (metalink-capable formats also accept .metalink).
_EXTENSIONS = {
    "vhd": (("vhd",), False), "vhdx": (("vhdx",), False), "qcow2": (("qcow2", "img"), True),
    "ova": (("ova",), True), "tar": (("tar",), False), "raw": (("img", "raw"), False),
    "vmdk": (("vmdk",), False), "iso": (("iso",), True),
}  # fmt: skip
UPLOAD_FORMATS = ("QCOW2", "OVA", "VHD")
UPLOAD_VALIDITY = timedelta(hours=1)


def _extensions(base: tuple[str, ...], metalink: bool) -> set[str]:
    found = {f".{b}{c}" for b in base for c in _COMPRESSIONS}
    return found | {".metalink"} if metalink else found


def check_url_format(fmt: str, path: str) -> None:
    """UriUtils.checkFormat: the URL path must end with an extension of the format."""
    lowered = path.lower()
    if fmt.lower() not in _EXTENSIONS:
        raise ApiError(INTERNAL_ERROR, USER_ERROR_MESSAGE)  # CloudStack dereferences a missing map entry
    if any(lowered.endswith(e) for e in _extensions(*_EXTENSIONS[fmt.lower()])):
        return
    if not any(lowered.endswith(e) for spec in _EXTENSIONS.values() for e in _extensions(*spec)):
        raise illegal_argument(f"Please specify a valid {fmt.lower()}")
    raise illegal_argument(
        f"Please specify a valid URL. URL:{path} is an invalid for the format {fmt.lower()}"
    )


def validate_url(fmt: str, url: str, allow_loopback: bool, skip_ipv6_check: bool = False) -> None:
    """UriUtils.validateUrl without name resolution: host names count as resolvable, except localhost."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise illegal_argument(f"Invalid URL: {url}") from None
    if parts.scheme.lower() not in ("http", "https", "file"):
        raise illegal_argument(f"Unsupported scheme for url: {url}")
    address = _address_of(host)
    if address is not None:
        loopback = address.is_loopback
        if (
            (loopback and not allow_loopback)
            or address.is_link_local
            or address.is_unspecified
            or (address.is_multicast)
        ):
            raise illegal_argument("Illegal host specified in url")
        if address.version == 6 and not skip_ipv6_check:
            raise illegal_argument(f"IPV6 addresses not supported ({address})")
    check_url_format(fmt, parts.path)


def _address_of(host: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if host is None or host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return ipaddress.ip_address("127.0.0.1")  # Java resolves a missing host to the loopback address
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def resolve_owner(ctx: Context) -> Owner:
    """BaseCmd.getEntityOwnerId via finalyzeAccountId(account, domainid, projectid)."""
    state, caller = ctx.state, ctx.caller
    project = ctx.entity("projectid", state.projects)
    domain = ctx.entity("domainid", state.domains)
    account_name = ctx.text("account")
    if project is not None:
        if not caller.is_root_admin and caller.id not in project.member_account_ids:
            raise permission_denied(f"Account {caller.name} can't access project id={project.id}")
        return Owner(project_id=project.id)
    if account_name is not None and domain is not None:
        account = state.account_named(account_name, domain.id)
        if account is None:
            raise invalid_parameter(f"Unable to find account {account_name} in domain id={domain.id}")
        if account.id != caller.id and (
            caller.is_normal_user or not state.is_subdomain(domain.id, caller.domain_id)
        ):
            raise permission_denied(
                f"Account {caller.name} does not have permission to operate within domain id={domain.id}"
            )
        return Owner(account_id=account.id)
    return Owner(account_id=caller.id)


def _owner_is_root_admin(ctx: Context, owner: Owner) -> bool:
    return owner.account_id is not None and ctx.state.accounts[owner.account_id].is_root_admin


def _checked_hypervisor(name: str) -> str:
    found = hypervisor_type(name)
    if found is None:
        raise invalid_parameter(
            f"Hypervisor Type: {name} is invalid. Supported Hypervisor types are: "
            + ", ".join(HYPERVISOR_TYPES)
        )
    return found


def checked_format(fmt: str, allowed: tuple[str, ...] = IMAGE_FORMATS) -> str:
    if fmt.upper() not in allowed:
        raise illegal_argument(
            f"Image format: {fmt} is incorrect. Supported formats are " + ", ".join(allowed)
        )
    return fmt.upper()


def _checked_zone(ctx: Context, zone: Zone) -> Zone:
    if zone.allocationstate == "Disabled" and not ctx.caller.is_root_admin:
        raise permission_denied(f"Cannot perform this operation, Zone {zone.name} is currently disabled")
    return zone


def _new_template(
    ctx: Context, *, name: str, fmt: str, hypervisor: str, owner: Owner, ostype_id: str
) -> Template:
    is_admin_owner = _owner_is_root_admin(ctx, owner)
    template = Template(
        id=str(uuid.uuid4()), name=name, displaytext=ctx.text("displaytext") or name, format=fmt,
        hypervisor=hypervisor, ostype_id=ostype_id, owner=owner, created=cs_timestamp(),
        ispublic=bool(ctx.flag("ispublic")), isfeatured=bool(ctx.flag("isfeatured")) and is_admin_owner,
        isextractable=bool(ctx.flag("isextractable")), passwordenabled=bool(ctx.flag("passwordenabled")),
        sshkeyenabled=bool(ctx.flag("sshkeyenabled")),
        isdynamicallyscalable=bool(ctx.flag("isdynamicallyscalable")),
        requireshvm=ctx.flag("requireshvm") is not False, bits=ctx.integer("bits") or 64,
        checksum=ctx.text("checksum"), templatetag=ctx.text("templatetag"),
        directdownload=bool(ctx.flag("directdownload")),
    )  # fmt: skip
    for group in ctx.groups("details"):
        template.details.update(group)
    return template


def _validate_parameters(
    ctx: Context, zone_ref: str | None, zone_refs: list[str] | None, hypervisor: str, has_ostype: bool
) -> None:
    """RegisterTemplateCmd.validateParameters."""
    if zone_ref is not None and zone_refs:
        raise param_error("Both zoneid and zoneids cannot be specified at the same time")
    if zone_ref is None and not zone_refs:
        raise param_error("Either zoneid or zoneids is required. Both cannot be null.")
    if zone_refs and len(zone_refs) > 1 and "-1" in zone_refs:
        raise param_error("Parameter zoneids cannot combine all zones (-1) option with other zones")
    if ctx.flag("directdownload") and hypervisor.lower() != "kvm":
        raise param_error("Parameter directdownload is only allowed for KVM templates")
    deploy_as_is = hypervisor.lower() == "vmware" and bool(ctx.flag("deployasis"))
    if not has_ostype and not deploy_as_is:
        raise param_error("Please provide a guest OS type")


def register_template(ctx: Context) -> dict[str, Any]:
    state, caller = ctx.state, ctx.caller
    fmt, hypervisor = ctx.required("format"), ctx.required("hypervisor")
    name, url = ctx.required("name"), ctx.required("url")
    zone_ref = ctx.text("zoneid")
    zone = None if zone_ref in (None, "-1") else ctx.entity("zoneid", state.zones)
    zone_refs = ctx.uuid_list("zoneids", state.zones)
    ostype = ctx.entity("ostypeid", state.ostypes)
    ctx.integer("bits")  # parameter types are checked before the command runs
    direct = bool(ctx.flag("directdownload"))
    _validate_parameters(ctx, zone_ref, zone_refs, hypervisor, has_ostype=ostype is not None)
    owner = resolve_owner(ctx)
    hypervisor = _checked_hypervisor(hypervisor)
    all_zones = zone_ref == "-1" or zone_refs == ["-1"]
    if all_zones and not _owner_is_root_admin(ctx, owner):
        raise invalid_parameter(
            "Template registered for 'All zones' can only be owned a Root Admin account. "
            "Please select specific zone(s)."
        )
    if "file://" in url.lower():
        raise invalid_parameter("File:// type urls are currently unsupported")
    fmt = checked_format(fmt)
    if all_zones:
        targets = list(state.zones.values())
    else:
        targets = [
            _checked_zone(ctx, z) for z in ([zone] if zone else [state.zones[r] for r in zone_refs or []])
        ]
    validate_url(fmt, url, state.allow_loopback_urls, skip_ipv6_check=direct)
    template = _new_template(
        ctx, name=name, fmt=fmt, hypervisor=hypervisor, owner=owner, ostype_id=ostype.id if ostype else ""
    )
    template.url, template.crosszones = url, all_zones
    for target in targets:
        if target.allocationstate == "Disabled":
            continue  # CloudStack skips disabled zones silently
        row = TemplateZone(zone_id=target.id, state=ZoneState.DOWNLOADING, created=template.created)
        template.zones[target.id] = row
        downloads.start(row, state.settings.download, state.download_fault_for(template, target.id))
    state.templates[template.id] = template
    rows = [template_row(state, template, row, caller) for row in state.zone_rows(template)]
    return {"count": len(rows), "template": rows} if rows else {}


def get_upload_params_for_template(ctx: Context) -> dict[str, Any]:
    state = ctx.state
    fmt, hypervisor = ctx.required("format"), ctx.required("hypervisor")
    name = ctx.required("name")
    zone = ctx.entity("zoneid", state.zones, required=True)
    ostype = ctx.entity("ostypeid", state.ostypes)
    assert zone is not None
    if ostype is None and not (hypervisor.lower() == "vmware" and ctx.flag("deployasis")):
        raise param_error("Please provide a guest OS type")
    owner = resolve_owner(ctx)
    hypervisor = _checked_hypervisor(hypervisor)
    fmt = checked_format(fmt, UPLOAD_FORMATS)
    _checked_zone(ctx, zone)
    template = _new_template(
        ctx, name=name, fmt=fmt, hypervisor=hypervisor, owner=owner, ostype_id=ostype.id if ostype else ""
    )
    template.zones[zone.id] = TemplateZone(
        zone_id=zone.id, state=ZoneState.NOT_UPLOADED, created=template.created
    )
    state.templates[template.id] = template
    ticket = _ticket(state.upload_base_url, state.upload_key, template.id, zone.id, fmt)
    state.tickets[template.id] = ticket
    return {
        "getuploadparams": {
            "id": template.id,
            "postURL": ticket.post_url,
            "metadata": ticket.metadata,
            "expires": ticket.expires,
            "signature": ticket.signature,
        }
    }


def _ticket(base_url: str, key: str, template_id: str, zone_id: str, fmt: str) -> UploadTicket:
    post_url = f"{base_url}/upload/{template_id}"
    payload = {"id": template_id, "zone": zone_id, "format": fmt, "nonce": secrets.token_hex(8)}
    metadata = base64.b64encode(json.dumps(payload).encode()).decode()
    expires = format_expires(datetime.now(timezone.utc) + UPLOAD_VALIDITY)
    return UploadTicket(
        template_id, zone_id, post_url, metadata, expires, upload_signature(metadata, post_url, expires, key)
    )


COMMANDS = {
    "registerTemplate": (register_template, None),
    "getUploadParamsForTemplate": (get_upload_params_for_template, "postuploadtemplateresponse"),
}
