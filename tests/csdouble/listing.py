"""What list commands share: paging (BaseListCmd), the list envelope, and who-owns-what visibility
(AccountManager.buildACLSearchParameters)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import invalid_parameter, param_error, permission_denied
from .model import Owner
from .params import Context

T = TypeVar("T")
MAX_PAGE_SIZE = 500  # CloudStack's default.page.size


def paginate(ctx: Context, items: Sequence[T]) -> tuple[list[T], int]:
    """One page of `items` and the total count, with BaseListCmd's parameter checks."""
    page = ctx.integer("page")
    pagesize = ctx.integer("pagesize")
    if pagesize is not None and page is None and pagesize != -1:
        raise param_error('"page" parameter is required when "pagesize" is specified')
    if pagesize is None and page is not None:
        raise param_error('"pagesize" parameter is required when "page" is specified')
    if pagesize is not None and pagesize > MAX_PAGE_SIZE:
        raise invalid_parameter(f"Page size can't exceed max allowed page size value: {MAX_PAGE_SIZE}")
    if pagesize == -1 and page is not None:
        raise invalid_parameter("Can't specify page parameter when pagesize is -1 (Unlimited)")
    if pagesize == -1:
        return list(items), len(items)
    size = MAX_PAGE_SIZE if pagesize is None else pagesize
    start = size * (page - 1) if page and page > 0 else 0
    return list(items[start : start + size]), len(items)


def list_body(key: str, items: list[dict[str, Any]], count: int) -> dict[str, Any]:
    """ListResponse as serialized: `count` only when non-zero, the list only when non-empty."""
    body: dict[str, Any] = {}
    if count:
        body["count"] = count
    if items:
        body[key] = items
    return body


def paged_list(ctx: Context, key: str, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    page, count = paginate(ctx, items)
    return list_body(key, page, count)


@dataclass
class Scope:
    """The owners a list call may see: `accounts`/`projects` None means any; `projects_mode` is
    skip (no project resources), only (project resources only) or any."""

    accounts: set[str] | None
    projects: set[str] | None
    projects_mode: str

    def kind_ok(self, owner: Owner) -> bool:
        if owner.project_id is not None:
            return self.projects_mode != "skip"
        return self.projects_mode != "only"

    def owns(self, owner: Owner) -> bool:
        if owner.project_id is not None:
            return self.projects_mode != "skip" and (
                self.projects is None or owner.project_id in self.projects
            )
        return self.projects_mode != "only" and (self.accounts is None or owner.account_id in self.accounts)


def owner_scope(ctx: Context, list_all: bool) -> Scope:
    """Resolve projectid / account+domainid / listall against the caller's role."""
    state, caller = ctx.state, ctx.caller
    project_ref = ctx.text("projectid")
    if project_ref == "-1":
        if caller.is_normal_user:
            mine = {p.id for p in state.projects.values() if caller.id in p.member_account_ids}
            return Scope(set(), mine, "only")
        return Scope(set(), None, "only")
    if project_ref is not None:
        project = ctx.entity("projectid", state.projects)
        assert project is not None
        if caller.is_normal_user and caller.id not in project.member_account_ids:
            raise permission_denied(f"Account {caller.name} can't access project id={project.id}")
        return Scope(set(), {project.id}, "any")
    account_name = ctx.text("account")
    domain = ctx.entity("domainid", state.domains)
    if account_name is not None and domain is not None:
        account = state.account_named(account_name, domain.id)
        if account is None:
            raise invalid_parameter(f"Unable to find account {account_name} in domain id={domain.id}")
        if caller.is_normal_user and account.id != caller.id:
            raise permission_denied(
                f"Account {caller.name} does not have permission to access account {account.name}"
            )
        return Scope({account.id}, set(), "skip")
    if list_all and not caller.is_normal_user:
        if caller.is_root_admin and domain is None:
            return Scope(None, set(), "skip")
        top = domain.id if domain is not None else caller.domain_id
        return Scope(
            {a.id for a in state.accounts.values() if state.is_subdomain(a.domain_id, top)}, set(), "skip"
        )
    return Scope({caller.id}, set(), "skip")
