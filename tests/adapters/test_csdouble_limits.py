"""Resource limits as CAPC reads them (vm/cpu/memory `*limit`, `*total`, `*available` of listAccounts,
listDomains and listProjects, "Unlimited" for -1) and deployVirtualMachine refused past a limit."""

from __future__ import annotations

from typing import Any

import pytest
from cs import CloudStackApiException

from tests.adapters.test_csdouble_vms import CAPC_DOMAIN, deploy_params, dev_net, user_scene
from tests.csdouble import CloudStackDouble

ROOT_DOMAIN = "d2605363-cbfc-4683-9fca-d0227484066c"
PROJECT = "a6c6aaac-f9f9-4199-ae6a-3dae12c44dec"


def act_as(double: CloudStackDouble, account: str) -> None:
    """Make the double's key pair act as `account` (keys stay, so existing clients follow)."""
    double.state.credentials.account_id = next(
        a.id for a in double.state.accounts.values() if a.name == account
    )


def dev_vm(name: str, double: CloudStackDouble) -> dict[str, Any]:
    return deploy_params(name, networkids=[dev_net(double)], keypair=None, affinitygroupids=None)


def limits_of(row: dict[str, Any], prefix: str) -> tuple[Any, Any, Any]:
    return row[f"{prefix}limit"], row[f"{prefix}total"], row[f"{prefix}available"]


def test_root_admin_is_unlimited_and_counts(cloudstack_api: Any) -> None:
    [admin] = cloudstack_api.listAccounts()["account"]
    assert limits_of(admin, "vm") == ("Unlimited", 0, "Unlimited")
    cloudstack_api.deployVirtualMachine(**deploy_params(), fetch_result=True)
    [admin] = cloudstack_api.listAccounts()["account"]
    assert limits_of(admin, "vm") == ("Unlimited", 1, "Unlimited")
    assert limits_of(admin, "cpu") == ("Unlimited", 2, "Unlimited")
    assert limits_of(admin, "memory") == ("Unlimited", 4096, "Unlimited")
    assert limits_of(admin, "primarystorage") == ("Unlimited", 20, "Unlimited")
    assert limits_of(admin, "volume") == ("Unlimited", 1, "Unlimited")
    root = cloudstack_api.listDomains(id=ROOT_DOMAIN)["domain"][0]
    assert limits_of(root, "vm") == ("Unlimited", 1, "Unlimited")


def test_defaults_for_accounts_domains_projects(cloudstack_api: Any) -> None:
    dev = cloudstack_api.listAccounts(name="dev-team", listall=True)["account"][0]
    assert limits_of(dev, "vm") == ("20", 0, "20")
    assert limits_of(dev, "cpu") == ("40", 0, "40")
    capc = cloudstack_api.listDomains(id=CAPC_DOMAIN)["domain"][0]
    assert limits_of(capc, "vm") == ("40", 0, "40")
    project = cloudstack_api.listProjects(id=PROJECT, listall=True)["project"][0]
    assert limits_of(project, "memory") == ("40960", 0, "40960")


def test_list_and_update_resource_limits(cloudstack_api: Any) -> None:
    everything = cloudstack_api.listResourceLimits(account="dev-team", domainid=CAPC_DOMAIN)["resourcelimit"]
    assert [(r["resourcetype"], r["resourcetypename"]) for r in everything][:3] == [
        ("0", "user_vm"), ("1", "public_ip"), ("2", "volume"),
    ]  # fmt: skip
    updated = cloudstack_api.updateResourceLimit(
        account="dev-team", domainid=CAPC_DOMAIN, resourcetype=9, max=2048
    )
    assert updated["resourcelimit"]["max"] == 2048
    [memory] = cloudstack_api.listResourceLimits(
        account="dev-team", domainid=CAPC_DOMAIN, resourcetypename="memory"
    )["resourcelimit"]
    assert (memory["account"], memory["resourcetype"], memory["max"]) == ("dev-team", "9", 2048)
    assert cloudstack_api.listResourceLimits(resourcetype=0)["resourcelimit"][0]["max"] == -1
    with pytest.raises(CloudStackApiException) as caught:
        cloudstack_api.listResourceLimits(resourcetype=99)
    assert caught.value.error["errorcode"] == 431


def test_deploy_refused_past_the_account_vm_limit(cloudstack: CloudStackDouble) -> None:
    user = user_scene(cloudstack)
    act_as(cloudstack, "admin")
    user.updateResourceLimit(account="dev-team", domainid=CAPC_DOMAIN, resourcetype=0, max=1)
    act_as(cloudstack, "dev-team")
    user.deployVirtualMachine(**dev_vm("dev-1", cloudstack), fetch_result=True)
    [dev] = user.listAccounts()["account"]
    assert limits_of(dev, "vm") == ("1", 1, "0")
    with pytest.raises(CloudStackApiException) as caught:
        user.deployVirtualMachine(**dev_vm("dev-2", cloudstack))
    assert caught.value.error["errorcode"] == 535
    assert caught.value.error["errortext"] == (
        "Maximum number of resources of type 'user_vm' for account name=dev-team in domain id=2 "
        "has been exceeded."
    )
    assert [v["name"] for v in user.listVirtualMachines()["virtualmachine"]] == ["dev-1"]


def test_deploy_refused_past_the_domain_cpu_limit(cloudstack: CloudStackDouble) -> None:
    user = user_scene(cloudstack)
    act_as(cloudstack, "admin")
    user.updateResourceLimit(domainid=CAPC_DOMAIN, resourcetype=8, max=3)
    act_as(cloudstack, "dev-team")
    user.deployVirtualMachine(**dev_vm("dev-1", cloudstack), fetch_result=True)
    [capc] = user.listDomains()["domain"]
    assert limits_of(capc, "cpu") == ("3", 2, "1")
    with pytest.raises(CloudStackApiException) as caught:
        user.deployVirtualMachine(**dev_vm("dev-2", cloudstack))
    assert caught.value.error["errortext"] == (
        "Maximum number of resources of type 'cpu' for domain id=2 has been exceeded."
    )
    # A destroyed VM no longer counts.
    [vm] = user.listVirtualMachines()["virtualmachine"]
    user.destroyVirtualMachine(id=vm["id"], fetch_result=True)
    assert user.deployVirtualMachine(**dev_vm("dev-2", cloudstack), fetch_result=True)["virtualmachine"]


def test_users_cannot_update_limits(cloudstack: CloudStackDouble) -> None:
    user = user_scene(cloudstack)
    with pytest.raises(CloudStackApiException) as caught:
        user.updateResourceLimit(resourcetype=0, max=100)
    assert caught.value.error["errorcode"] == 432
