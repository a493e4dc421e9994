"""listResourceLimits and updateResourceLimit (admins) for an account, project or domain.

`resourcetype` is the ResourceType ordinal (0-11), `resourcetypename` its name; limits show as `max`
(-1 = unlimited). Without a holder the caller's own account is meant.
"""

from __future__ import annotations

from typing import Any

from ..errors import UNKNOWN_COMMAND_TEXT, UNSUPPORTED_ACTION, ApiError, invalid_parameter, permission_denied
from ..limits import RESOURCE_TYPES, Holder, limit
from ..listing import paged_list
from ..params import Context
from ..state import State


def _holder(ctx: Context) -> Holder:
    state = ctx.state
    project = ctx.entity("projectid", state.projects)
    domain = ctx.entity("domainid", state.domains)
    account_name = ctx.text("account")
    if project is not None:
        if ctx.caller.is_normal_user and ctx.caller.id not in project.member_account_ids:
            raise permission_denied(f"Account {ctx.caller.name} can't access project id={project.id}")
        return Holder("project", project.id)
    if account_name is not None and domain is not None:
        account = state.account_named(account_name, domain.id)
        if account is None:
            raise invalid_parameter(f"Unable to find account {account_name} in domain id={domain.id}")
        if ctx.caller.is_normal_user and account.id != ctx.caller.id:
            raise permission_denied(
                f"Account {ctx.caller.name} does not have permission to access account {account.name}"
            )
        return Holder("account", account.id)
    if domain is not None:
        if not ctx.caller.is_root_admin and not state.is_subdomain(domain.id, ctx.caller.domain_id):
            raise permission_denied(
                f"Account {ctx.caller.name} does not have permission to access domain id={domain.id}"
            )
        return Holder("domain", domain.id)
    return Holder("account", ctx.caller.id)


def _types(ctx: Context, required: bool = False) -> list[int]:
    number = ctx.integer("resourcetype")
    name = ctx.text("resourcetypename")
    if number is None and name is None:
        if required:
            ctx.required("resourcetype")
        return list(range(len(RESOURCE_TYPES)))
    if number is not None:
        if not 0 <= number < len(RESOURCE_TYPES):
            raise invalid_parameter("Please specify valid resource type")
        return [number]
    if name not in RESOURCE_TYPES:
        raise invalid_parameter("Please specify valid resource type name")
    return [RESOURCE_TYPES.index(str(name))]


def _view(state: State, holder: Holder, ordinal: int) -> dict[str, Any]:
    resource = RESOURCE_TYPES[ordinal]
    view: dict[str, Any] = {}
    if holder.kind == "account":
        account = state.accounts[holder.id]
        domain = state.domains[account.domain_id]
        view.update({"accountid": account.id, "account": account.name})
    elif holder.kind == "project":
        project = state.projects[holder.id]
        domain = state.domains[project.domain_id]
        view.update({"projectid": project.id, "project": project.name})
    else:
        domain = state.domains[holder.id]
    view.update({
        "domainid": domain.id, "domain": domain.name, "domainpath": domain.path,
        "resourcetype": str(ordinal), "resourcetypename": resource, "max": limit(state, holder, resource),
    })  # fmt: skip
    return view


def list_resource_limits(ctx: Context) -> dict[str, Any]:
    holder = _holder(ctx)
    rows = [_view(ctx.state, holder, ordinal) for ordinal in _types(ctx)]
    return paged_list(ctx, "resourcelimit", rows)


def update_resource_limit(ctx: Context) -> dict[str, Any]:
    if ctx.caller.is_normal_user:
        raise ApiError(UNSUPPORTED_ACTION, UNKNOWN_COMMAND_TEXT)
    holder = _holder(ctx)
    [ordinal] = _types(ctx, required=True)
    maximum = ctx.integer("max")
    if holder.kind == "account" and holder.id == ctx.caller.id and not ctx.caller.is_root_admin:
        raise permission_denied("Only admin can update resource limits for its own account")
    value = -1 if maximum is None or maximum < 0 else maximum
    ctx.state.limits[(holder.kind, holder.id, RESOURCE_TYPES[ordinal])] = value
    return {"resourcelimit": _view(ctx.state, holder, ordinal)}


COMMANDS = {
    "listResourceLimits": (list_resource_limits, None),
    "updateResourceLimit": (update_resource_limit, None),
}
