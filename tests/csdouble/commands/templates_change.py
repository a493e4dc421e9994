"""updateTemplate (sync), deleteTemplate and copyTemplate (async jobs).

A copy downloads into each destination zone like a registration does (progress per job poll and per
listTemplates poll, download faults of that zone apply); the job finishes when every copy is ready
and fails with the zone's download error. The copies begin when the job is submitted, as CloudStack's
do: a client that stops following the job (Ctrl-C) still finds them listed, in progress or done.

As in CloudStack, async commands only check parameters and access before answering with a job id;
everything else happens inside the job and surfaces as a job failure.
"""

from __future__ import annotations

from typing import Any

from .. import downloads
from ..errors import INTERNAL_ERROR, ApiError, invalid_parameter, param_error
from ..model import Template, TemplateZone, Zone, ZoneState, cs_timestamp
from ..params import Context
from ..state import State
from ..views import template_row
from .jobs import submit
from .templates_list import check_template_access
from .templates_register import checked_format

_UPDATABLE_FLAGS = ("passwordenabled", "sshkeyenabled", "isdynamicallyscalable", "requireshvm", "bootable")


def _template(ctx: Context, name: str = "id") -> Template:
    template = ctx.entity(name, ctx.state.templates, required=True)
    assert template is not None
    check_template_access(ctx.state, ctx.caller, template)
    return template


def update_template(ctx: Context) -> dict[str, Any]:
    state = ctx.state
    template = _template(ctx)
    ostype = ctx.entity("ostypeid", state.ostypes)
    if template.removed:
        raise invalid_parameter(f"unable to find template/iso with id {template.id}")
    if ctx.has("format"):
        template.format = checked_format(ctx.required("format"))
    template.name = ctx.text("name") or template.name
    template.displaytext = ctx.text("displaytext") or template.displaytext
    template.templatetag = ctx.text("templatetag") or template.templatetag
    if ostype is not None:
        template.ostype_id = ostype.id
    for flag in _UPDATABLE_FLAGS:
        value = ctx.flag(flag)
        if value is not None:
            setattr(template, flag, value)
    if ctx.flag("cleanupdetails"):
        template.details.clear()
    for group in ctx.groups("details"):
        template.details.update(group)
    rows = state.zone_rows(template)
    return {"template": template_row(state, template, rows[0] if rows else None, ctx.caller)}


def delete_template(ctx: Context) -> dict[str, Any]:
    state = ctx.state
    template = _template(ctx)
    zone = ctx.entity("zoneid", state.zones)

    def run() -> dict[str, Any]:
        if template.removed:
            raise invalid_parameter(f"unable to find template with id {template.id}")
        if zone is not None:
            template.zones.pop(zone.id, None)
        if zone is None or not template.zones:
            template.removed = True
            state.tags[:] = [t for t in state.tags if t.resource_id != template.id]
        return {"success": True}

    return submit(ctx, "template.DeleteTemplateCmd", template.id, run)


def copy_template(ctx: Context) -> dict[str, Any]:
    state = ctx.state
    template = _template(ctx)
    dest = ctx.entity("destzoneid", state.zones)
    dest_refs = ctx.uuid_list("destzoneids", state.zones)
    source = ctx.entity("sourcezoneid", state.zones)
    copying: set[str] = set()  # zones whose copy this job started: their failure is the job's

    def run() -> dict[str, Any] | None:
        if dest is not None and dest_refs:
            raise param_error("Both destzoneid and destzoneids cannot be specified at the same time")
        targets = [dest] if dest is not None else [state.zones[z] for z in dest_refs or []]
        if not targets:
            raise param_error("Either destzoneid or destzoneids parameters have to be specified.")
        _check_source(template, source)
        for target in targets:
            _copy_step(state, template, target, copying)
        if any(template.zones[t.id].state is not ZoneState.READY for t in targets):
            return None  # the job waits for the copies, as CloudStack's does
        first = template.zones[targets[0].id]
        return {"template": template_row(state, template, first, ctx.caller)}

    return submit(ctx, "template.CopyTemplateCmd", template.id, run, begins_at_once=True)


def _copy_step(state: State, template: Template, target: Zone, copying: set[str]) -> None:
    """Start the copy into `target`, or move it on by one job poll; a failed copy fails the job, also
    when a listing saw it fail between two polls (the job does not start it again)."""
    fault = state.download_fault_for(template, target.id)
    row = template.zones.get(target.id)
    if row is not None and row.state is ZoneState.ERROR and target.id in copying:
        raise ApiError(INTERNAL_ERROR, f"Failed to copy Template to zone {target.name}: {row.error}")
    copying.add(target.id)
    if row is None or row.state not in (ZoneState.READY, ZoneState.DOWNLOADING):
        row = TemplateZone(target.id, ZoneState.DOWNLOADING, cs_timestamp())
        template.zones[target.id] = row
        downloads.start(row, state.settings.download, fault)
    else:
        downloads.advance(row, state.settings.download, fault, tick=True)
    if row.state is ZoneState.ERROR:
        raise ApiError(INTERNAL_ERROR, f"Failed to copy Template to zone {target.name}: {row.error}")


def _check_source(template: Template, source: Zone | None) -> None:
    if template.removed:
        raise invalid_parameter(f"Unable to find template with id {template.id}")
    rows = [template.zones.get(source.id)] if source is not None else list(template.zones.values())
    if not any(row is not None and row.state is ZoneState.READY for row in rows):
        where = f"zone {source.name}" if source is not None else "any zone"
        raise invalid_parameter(f"Template {template.name} is not ready in {where}, nothing to copy")


COMMANDS = {
    "updateTemplate": (update_template, None),
    "deleteTemplate": (delete_template, None),
    "copyTemplate": (copy_template, None),
}
