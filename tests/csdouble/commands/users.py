"""Users and their API keys: createUser, listUsers, getUserKeys, registerUserKeys.

CAPC finds a user of a failure domain's account that holds keys (listUsers with account, domainid and
listall, then getUserKeys per user) and signs every later request with those keys; the double then
acts as that user's account. A user without keys answers getUserKeys with an empty `userkeys`.
"""

from __future__ import annotations

import uuid
from typing import Any

from ..errors import UNKNOWN_COMMAND_TEXT, UNSUPPORTED_ACTION, ApiError, invalid_parameter, permission_denied
from ..listing import owner_scope, paged_list
from ..model import ROLE_ACCOUNT_TYPES, Account, User, cs_timestamp
from ..params import Context, same_name
from ..state import State, random_key


def _admin_only(ctx: Context) -> None:
    if ctx.caller.is_normal_user:
        raise ApiError(UNSUPPORTED_ACTION, UNKNOWN_COMMAND_TEXT)


def _can_manage(state: State, caller: Account, user: User) -> bool:
    account = state.accounts[user.account_id]
    if caller.is_root_admin or account.id == caller.id:
        return True
    return not caller.is_normal_user and state.is_subdomain(account.domain_id, caller.domain_id)


def user_view(state: State, user: User) -> dict[str, Any]:
    account = state.accounts[user.account_id]
    domain = state.domains[account.domain_id]
    view: dict[str, Any] = {
        "id": user.id, "username": user.username, "firstname": user.firstname, "lastname": user.lastname,
        "email": user.email, "created": cs_timestamp(), "state": user.state, "account": account.name,
        "accountid": account.id, "accounttype": ROLE_ACCOUNT_TYPES[account.roletype],
        "roletype": account.roletype, "domainid": domain.id, "domain": domain.name, "usersource": "native",
        "isdefault": False, "iscallerchilddomain": False,
    }  # fmt: skip
    if user.api_key:
        view["apikey"] = user.api_key
    return view


def create_user(ctx: Context) -> dict[str, Any]:
    _admin_only(ctx)
    state = ctx.state
    account_name, username = ctx.required("account"), ctx.required("username")
    for name in ("email", "firstname", "lastname", "password"):
        ctx.required(name)
    domain = ctx.entity("domainid", state.domains) or state.domains[ctx.caller.domain_id]
    account = state.account_named(account_name, domain.id)
    if account is None:
        raise invalid_parameter(f"Unable to find account {account_name} in domain id={domain.id}")
    if not ctx.caller.is_root_admin and not state.is_subdomain(domain.id, ctx.caller.domain_id):
        raise permission_denied(
            f"Account {ctx.caller.name} does not have permission to operate within domain id={domain.id}"
        )
    if any(same_name(u.username, username) and state.accounts[u.account_id].domain_id == domain.id
           for u in state.users.values()):  # fmt: skip
        raise invalid_parameter(f"The user {username} already exists in domain {domain.name}")
    user = User(
        str(uuid.uuid4()), username, account.id, firstname=ctx.required("firstname"),
        lastname=ctx.required("lastname"), email=ctx.required("email"),
    )  # fmt: skip
    state.users[user.id] = user
    return {"user": user_view(state, user)}


def list_users(ctx: Context) -> dict[str, Any]:
    state = ctx.state
    by_id = ctx.entity("id", state.users)
    scope = owner_scope(ctx, list_all=bool(ctx.flag("listall")) or by_id is not None)
    username = ctx.text("username")
    rows = [
        user_view(state, u) for u in state.users.values()
        if (scope.accounts is None or u.account_id in scope.accounts) and (by_id is None or u is by_id)
        and (username is None or same_name(u.username, username))
    ]  # fmt: skip
    return paged_list(ctx, "user", rows)


def _user(ctx: Context) -> User:
    user = ctx.entity("id", ctx.state.users, required=True)
    assert user is not None
    if not _can_manage(ctx.state, ctx.caller, user):
        raise permission_denied(
            f"Account {ctx.caller.name} does not have permission to operate with resource {user.id}"
        )
    return user


def get_user_keys(ctx: Context) -> dict[str, Any]:
    user = _user(ctx)
    keys = {"apikey": user.api_key, "secretkey": user.secret_key} if user.api_key else {}
    return {"userkeys": keys}


def register_user_keys(ctx: Context) -> dict[str, Any]:
    user = _user(ctx)
    user.api_key, user.secret_key = random_key(), random_key()
    return {"userkeys": {"apikey": user.api_key, "secretkey": user.secret_key}}


COMMANDS = {
    "createUser": (create_user, None),
    "listUsers": (list_users, None),
    "getUserKeys": (get_user_keys, None),
    "registerUserKeys": (register_user_keys, None),
}
