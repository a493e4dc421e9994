"""Failure-domain tenancy resolved as CAPC resolves it, against the CloudStack double: the domain by its
exact ROOT path, the account in it, the first user of the account with API keys, and reads made as that
user (templates `executable` with the project id only), so duplicates count as CAPC counts them."""

from __future__ import annotations

from typing import Any

import pytest

from kubectl_capc.cloudstack.errors import AccountWithoutKeys, CloudStackError
from tests.adapters.test_image_cloudstack import UBUNTU_2204, calls, client_for
from tests.csdouble.seed import add_template
from tests.csdouble.server import CloudStackDouble

CAPC_DOMAIN = "427fe23e-7dd6-4b05-a497-081ace9310a5"
PROJECT = "a6c6aaac-f9f9-4199-ae6a-3dae12c44dec"
ZONE1 = "cc2ecd8a-5c9a-42b4-a5f4-3ca19adfbf45"
DEV_TEAM = {"account": "dev-team", "domain": "ROOT/capc"}


def template(double: CloudStackDouble, name: str, zones: Any, **extra: Any) -> str:
    return add_template(double.state, {"name": name, "ostype": UBUNTU_2204, "zones": zones, **extra}).id


@pytest.mark.parametrize("path", ["ROOT/capc", "capc", "root/capc"])
def test_the_domain_path_gets_root_in_front(cloudstack: CloudStackDouble, path: str) -> None:
    scope = client_for(cloudstack).owner_scope(account="dev-team", domain=path)
    assert (scope.account, scope.domain_id) == ("dev-team", CAPC_DOMAIN)
    assert scope.user is not None and scope.user.api_key != cloudstack.api_key
    assert "user dev-team-capc of account dev-team" in scope.user.source


@pytest.mark.parametrize("path", ["ROOT/CAPC", "ROOT/cap", "ROOT/capc/"])
def test_the_domain_path_matches_exactly(cloudstack: CloudStackDouble, path: str) -> None:
    with pytest.raises(CloudStackError, match=r"domain ROOT/.* of account 'dev-team' is not visible"):
        client_for(cloudstack).owner_scope(account="dev-team", domain=path)


def test_an_account_without_a_keyed_user_is_refused_naming_it(cloudstack: CloudStackDouble) -> None:
    with pytest.raises(AccountWithoutKeys) as caught:
        client_for(cloudstack).owner_scope(account="capc", domain="ROOT/capc")
    assert "account 'capc' in domain ROOT/capc has no user with API keys" in caught.value.message
    assert "registerUserKeys" in caught.value.hint
    assert [c["account"] for c in calls(cloudstack, "listUsers")] == ["capc"]


def test_an_unknown_account_is_not_found(cloudstack: CloudStackDouble) -> None:
    with pytest.raises(CloudStackError, match="account 'nobody' does not exist in domain ROOT/capc"):
        client_for(cloudstack).owner_scope(account="nobody", domain="ROOT/capc")


def test_templates_are_listed_as_the_user_so_downloading_duplicates_count(
    cloudstack: CloudStackDouble,
) -> None:
    template(cloudstack, "node-kube-v1.29.3", ["zone1"], ispublic=True)
    template(cloudstack, "node-kube-v1.29.3", {"zone1": {"percent": 30}}, owner=DEV_TEAM)
    template(cloudstack, "node-kube-v1.29.3", ["zone1"])  # the admin's own: dev-team cannot see it
    client = client_for(cloudstack)
    scope = client.owner_scope(**DEV_TEAM)
    rows = client.templates(name="node-kube-v1.29.3", zone_id=ZONE1, owner=scope)
    assert sorted(row.ready for row in rows) == [False, True]  # CAPC: "expected 1 Template ... got 2"
    [listed] = calls(cloudstack, "listTemplates")
    assert listed["templatefilter"] == "executable"
    assert not {"account", "domainid", "projectid"} & set(listed)


def test_the_project_is_looked_up_as_the_user(cloudstack: CloudStackDouble) -> None:
    client = client_for(cloudstack)
    scope = client.owner_scope(project="capc-clusters", **DEV_TEAM)
    assert (scope.project_id, scope.account) == (PROJECT, "dev-team")
    template(cloudstack, "proj-kube-v1.29.3", {"zone1": {"percent": 10}}, owner={"project": "capc-clusters"})
    cloudstack.state.calls.clear()
    rows = client.templates(name="proj-kube-v1.29.3", owner=scope)
    assert [row.ready for row in rows] == [False]
    [listed] = calls(cloudstack, "listTemplates")
    assert listed["projectid"] == PROJECT and "account" not in listed


def test_a_project_the_account_is_no_member_of_is_not_visible(cloudstack: CloudStackDouble) -> None:
    client = client_for(cloudstack)
    with cloudstack.state.lock:
        cloudstack.state.projects[PROJECT].member_account_ids.clear()
    assert client.owner_scope(project="capc-clusters").project_id == PROJECT  # the admin sees it
    with pytest.raises(CloudStackError, match="project 'capc-clusters' of account 'dev-team' is not visible"):
        client.owner_scope(project="capc-clusters", **DEV_TEAM)


def test_limits_are_read_as_the_acting_account_at_each_level(
    cloudstack: CloudStackDouble, cloudstack_api: Any
) -> None:
    from kubectl_capc.domain.checks.capacity import Level, Resource

    client = client_for(cloudstack)
    scope = client.owner_scope(project="capc-clusters", **DEV_TEAM)
    cloudstack_api.updateResourceLimit(resourcetype=8, max=6, account="dev-team", domainid=CAPC_DOMAIN)
    cloudstack.state.calls.clear()
    account, domain, project = client.limits(scope)
    assert (account.level, account.name) == (Level.ACCOUNT, "dev-team")
    assert (domain.level, domain.name) == (Level.DOMAIN, "ROOT/capc")
    assert (project.level, project.name) == (Level.PROJECT, "capc-clusters")
    cpu = account.counts[Resource.CPU]
    assert (cpu.limit, cpu.total, cpu.free) == (6, 0, 6)
    assert account.counts[Resource.VM].free == 20  # max.account.user.vms
    assert [c.command for c in cloudstack.state.calls] == ["listAccounts", "listDomains", "listProjects"]
    cloudstack_api.updateResourceLimit(resourcetype=8, max=-1, account="dev-team", domainid=CAPC_DOMAIN)
    [account, _] = client.limits(client.owner_scope(**DEV_TEAM))
    assert account.counts[Resource.CPU].free is None  # "Unlimited"


def test_offerings_are_listed_as_the_user_sees_them(cloudstack: CloudStackDouble) -> None:
    from tests.csdouble import load_seed
    from tests.csdouble.fixtures import EXAMPLE_SEED

    seed = load_seed(EXAMPLE_SEED)
    seed["domains"].append({"path": "ROOT/other"})
    seed["service_offerings"].append(
        {"name": "Other Only", "cpunumber": 8, "cpuspeed": 2000, "memory": 16384, "domains": ["ROOT/other"]}
    )
    seed["service_offerings"].append(
        {"name": "Team Only", "cpunumber": 2, "cpuspeed": 2000, "memory": 2048, "domains": ["ROOT/capc"]}
    )
    cloudstack.apply_seed(seed)
    client = client_for(cloudstack)
    scope = client.owner_scope(**DEV_TEAM)
    assert [e.name for e in client.service_offerings(name="Other Only")] == ["Other Only"]  # root admin
    assert client.service_offerings(name="Other Only", owner=scope) == ()
    [team] = client.service_offerings(name="Team Only", owner=scope)
    assert (team.cpus, team.memory_mib) == (2, 2048)
