"""listTemplates with CloudStack's templatefilter semantics (QueryManagerImpl.searchForTemplatesInternal).

Facts the double reproduces:
- one row per (template, zone) pair; `count` counts those pairs;
- `id` short-circuits every other filter except `zoneid` (non-public templates need access);
- ready-only rows for featured, community, selfexecutable, sharedexecutable, for `isready=true`, and
  for executable only when an admin passes account+domainid (ListTemplatesCmd.listInReadyState):
  a plain executable listing does show templates that are still downloading;
- `all` is refused to normal users; without projectid, project templates are skipped;
- `tags` match when ANY of the given key/value pairs is on the template;
- names compare case-insensitively (MySQL collation); `keyword` wins over `name`.
"""

from __future__ import annotations

from typing import Any

from ..errors import illegal_argument, invalid_parameter, permission_denied
from ..listing import Scope, owner_scope, paged_list
from ..model import Account, Template, ZoneState, hypervisor_type
from ..params import Context, keyword_match, same_name
from ..state import State
from ..views import template_row

FILTERS = (
    "featured",
    "self",
    "selfexecutable",
    "sharedexecutable",
    "executable",
    "community",
    "all",
    "shared",
)
FILTER_ENUM = "com.cloud.template.VirtualMachineTemplate.TemplateFilter"


def check_template_access(state: State, caller: Account, template: Template) -> None:
    """AccountManager.checkAccess for a template the caller wants to use or change."""
    if caller.is_root_admin:
        return
    owner = template.owner
    if owner.project_id is not None:
        allowed = caller.id in state.projects[owner.project_id].member_account_ids or (
            not caller.is_normal_user
            and state.is_subdomain(state.projects[owner.project_id].domain_id, caller.domain_id)
        )
    elif caller.is_normal_user:
        allowed = owner.account_id == caller.id
    else:
        assert owner.account_id is not None
        allowed = state.is_subdomain(state.accounts[owner.account_id].domain_id, caller.domain_id)
    if not allowed:
        raise permission_denied(
            f"Account {caller.name} does not have permission to operate with resource {template.id}"
        )


def list_templates(ctx: Context) -> dict[str, Any]:
    state, caller = ctx.state, ctx.caller
    template_filter = ctx.required("templatefilter")
    by_id = ctx.entity("id", state.templates)
    zone = ctx.entity("zoneid", state.zones)
    ids = ctx.uuid_list("ids", state.templates)
    if template_filter not in FILTERS:
        raise illegal_argument(f"No enum constant {FILTER_ENUM}.{template_filter}")
    if template_filter == "all" and caller.is_normal_user:
        raise invalid_parameter("Filter all can be specified by admin only")
    scope = owner_scope(ctx, list_all=template_filter == "all")
    state.tick_downloads(tick=True)

    if by_id is not None:
        if not by_id.ispublic:
            check_template_access(state, caller, by_id)
        candidates = [by_id] if ctx.flag("showremoved") or not by_id.removed else []
        ready_only = False
    else:
        candidates = [t for t in state.templates.values() if _matches(ctx, t, template_filter, scope, ids)]
        ready_only = _ready_only(ctx, template_filter)
    rows = []
    for template in candidates:
        for row in state.zone_rows(template):
            if zone is not None and row.zone_id != zone.id:
                continue
            if ready_only and row.state is not ZoneState.READY:
                continue
            rows.append(template_row(state, template, row, caller))
    return paged_list(ctx, "template", rows)


def _ready_only(ctx: Context, template_filter: str) -> bool:
    if ctx.flag("isready"):
        return True
    account_specific = not ctx.caller.is_normal_user and ctx.has("account") and ctx.has("domainid")
    return template_filter in ("featured", "selfexecutable", "sharedexecutable", "community") or (
        template_filter == "executable" and account_specific
    )


def _matches(
    ctx: Context, template: Template, template_filter: str, scope: Scope, ids: list[str] | None
) -> bool:
    state = ctx.state
    if template.removed and not ctx.flag("showremoved"):
        return False
    if ids is not None and template.id not in ids:
        return False
    available = {h.lower() for z in state.zones.values() for h in z.hypervisors}
    if template.hypervisor.lower() not in available or not scope.kind_ok(template.owner):
        return False
    if not _filter_allows(ctx, template, template_filter, scope):
        return False
    wanted_tags = tag_filter(ctx)
    if wanted_tags and not any(
        t.resource_id == template.id and wanted_tags.get(t.key) == t.value
        for t in state.tags
        if t.key in wanted_tags
    ):
        return False
    keyword, name = ctx.text("keyword"), ctx.text("name")
    if keyword is not None:
        if not keyword_match(keyword, template.name):
            return False
    elif name is not None and not same_name(template.name, name):
        return False
    wanted_hypervisor = hypervisor_type(ctx.text("hypervisor") or "")
    return wanted_hypervisor is None or template.hypervisor.lower() == wanted_hypervisor.lower()


def tag_filter(ctx: Context) -> dict[str, str]:
    """BaseListTaggedResourcesCmd.getTags: a key -> value map (a repeated key keeps one value)."""
    tags: dict[str, str] = {}
    for group in ctx.groups("tags"):
        if group.get("value") is None:
            raise invalid_parameter(f"No value is passed in for key {group.get('key')}")
        tags[group.get("key", "")] = group["value"]
    return tags


def _filter_allows(ctx: Context, template: Template, template_filter: str, scope: Scope) -> bool:
    caller = ctx.caller
    if template_filter in ("featured", "community"):
        return template.ispublic and template.isfeatured == (template_filter == "featured")
    if template_filter in ("self", "selfexecutable"):
        return scope.owns(template.owner)
    if template_filter in ("shared", "sharedexecutable"):
        return False  # launch permissions granted by other accounts are not modelled
    if template_filter == "executable":
        return template.ispublic or scope.owns(template.owner)
    if caller.is_root_admin:
        return True
    owner_domain = (
        ctx.state.projects[template.owner.project_id].domain_id
        if template.owner.project_id is not None
        else ctx.state.accounts[str(template.owner.account_id)].domain_id
    )
    return template.ispublic or ctx.state.is_subdomain(owner_domain, caller.domain_id)


COMMANDS = {"listTemplates": (list_templates, None)}
