"""Users with API keys: found the way CAPC finds them (listUsers, then getUserKeys), and requests
signed with a user's keys act as that user's account."""

from __future__ import annotations

from typing import Any

import pytest
from cs import CloudStack, CloudStackApiException

from tests.csdouble import CloudStackDouble, load_seed
from tests.csdouble.fixtures import EXAMPLE_SEED
from tests.csdouble.seed import add_template

CAPC_DOMAIN = "427fe23e-7dd6-4b05-a497-081ace9310a5"


@pytest.fixture
def tenant(cloudstack: CloudStackDouble) -> CloudStackDouble:
    """The example scene where dev-team has a user without keys and one with keys."""
    seed = load_seed(EXAMPLE_SEED)
    for account in seed["accounts"]:
        if account["name"] == "dev-team":
            account["users"] = [{"username": "dev-nokeys"}, {"username": "dev-bot", "keys": True}]
    cloudstack.apply_seed(seed)
    return cloudstack


def as_user(double: CloudStackDouble, keys: dict[str, str]) -> Any:
    return CloudStack(double.endpoint, keys["apikey"], keys["secretkey"], poll_interval=0.01)


def capc_user_keys(admin: Any, account: str, domain_id: str) -> dict[str, str] | None:
    """CAPC's NewClientInDomainAndAccount: the first user of the account whose getUserKeys has keys."""
    for user in admin.listUsers(account=account, domainid=domain_id, listall=True).get("user", []):
        keys = admin.getUserKeys(id=user["id"])["userkeys"]
        if keys.get("apikey") and keys.get("secretkey"):
            return dict(keys)
    return None


def test_capc_finds_the_user_with_keys(tenant: CloudStackDouble, cloudstack_api: Any) -> None:
    users = cloudstack_api.listUsers(account="dev-team", domainid=CAPC_DOMAIN, listall=True)["user"]
    assert [(u["username"], u["account"], u["roletype"]) for u in users] == [
        ("dev-nokeys", "dev-team", "User"),
        ("dev-bot", "dev-team", "User"),
    ]
    assert cloudstack_api.getUserKeys(id=users[0]["id"]) == {"userkeys": {}}
    keys = capc_user_keys(cloudstack_api, "dev-team", CAPC_DOMAIN)
    assert keys is not None
    user = as_user(tenant, keys)
    assert [a["name"] for a in user.listAccounts()["account"]] == ["dev-team"]
    assert [n["name"] for n in user.listNetworks()["network"]] == ["Shared1"]


def test_an_account_without_keyed_users(tenant: CloudStackDouble, cloudstack_api: Any) -> None:
    assert capc_user_keys(cloudstack_api, "capc", CAPC_DOMAIN) is None


def test_templates_as_the_user(tenant: CloudStackDouble, cloudstack_api: Any) -> None:
    ostype = next(iter(tenant.state.ostypes))
    add_template(tenant.state, {"name": "admin-private", "ostype": ostype, "zones": ["zone1"]})
    mine = add_template(
        tenant.state,
        {"name": "dev-own", "ostype": ostype, "zones": {"zone1": {"percent": 20}},
         "owner": {"account": "dev-team", "domain": "ROOT/capc"}},
    )  # fmt: skip
    keys = capc_user_keys(cloudstack_api, "dev-team", CAPC_DOMAIN)
    assert keys is not None
    names = {t["name"] for t in as_user(tenant, keys).listTemplates(templatefilter="executable")["template"]}
    assert "admin-private" not in names and "dev-own" in names  # own template listed while downloading
    assert mine.id in {t["id"] for t in cloudstack_api.listTemplates(templatefilter="all")["template"]}


def test_registered_keys_sign_and_old_ones_stop(tenant: CloudStackDouble, cloudstack_api: Any) -> None:
    [user] = cloudstack_api.listUsers(username="dev-nokeys", listall=True)["user"]
    keys = cloudstack_api.registerUserKeys(id=user["id"])["userkeys"]
    assert as_user(tenant, keys).listAccounts()["account"][0]["name"] == "dev-team"
    newer = cloudstack_api.registerUserKeys(id=user["id"])["userkeys"]
    with pytest.raises(CloudStackApiException) as caught:
        as_user(tenant, keys).listAccounts()
    assert caught.value.error["errorcode"] == 401
    assert as_user(tenant, newer).listZones()["count"] == 2


def test_create_user_is_for_admins(tenant: CloudStackDouble, cloudstack_api: Any) -> None:
    created = cloudstack_api.createUser(
        account="capc", domainid=CAPC_DOMAIN, username="capc-bot", email="bot@example.com",
        firstname="capc", lastname="bot", password="secret",
    )["user"]  # fmt: skip
    assert (created["account"], created["domain"], created["roletype"]) == ("capc", "capc", "DomainAdmin")
    keys = cloudstack_api.registerUserKeys(id=created["id"])["userkeys"]
    assert capc_user_keys(cloudstack_api, "capc", CAPC_DOMAIN) == keys
    user_keys = capc_user_keys(cloudstack_api, "dev-team", CAPC_DOMAIN)
    assert user_keys is not None
    with pytest.raises(CloudStackApiException) as caught:
        as_user(tenant, user_keys).createUser(
            account="dev-team", username="x", email="x@example.com", firstname="x", lastname="x", password="p"
        )
    assert caught.value.error["errorcode"] == 432
    # A User sees its own account's users only, and cannot read another user's keys.
    other = as_user(tenant, user_keys)
    assert {u["username"] for u in other.listUsers(listall=True)["user"]} == {"dev-nokeys", "dev-bot"}
    with pytest.raises(CloudStackApiException) as denied:
        other.getUserKeys(id=created["id"])
    assert denied.value.error["errorcode"] == 531
