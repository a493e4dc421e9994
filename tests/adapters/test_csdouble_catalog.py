"""The example scene a CAPC cluster needs, as the double lists it, and who sees which resource."""

from __future__ import annotations

from typing import Any

import pytest
from cs import CloudStack, CloudStackApiException

from tests.csdouble import CloudStackDouble, load_seed
from tests.csdouble.fixtures import EXAMPLE_SEED


def user_client(double: CloudStackDouble, account: str = "dev-team", domain: str = "ROOT/capc") -> Any:
    seed = load_seed(EXAMPLE_SEED)
    seed["credentials"] = {"account": account, "domain": domain}
    double.apply_seed(seed)
    return CloudStack(double.endpoint, double.api_key, double.secret_key, poll_interval=0.01)


def only(listing: dict[str, Any], key: str) -> dict[str, Any]:
    assert listing["count"] == 1, listing
    return dict(listing[key][0])


def test_two_enabled_kvm_zones(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    zones = cloudstack_api.listZones(fetch_list=True)
    assert [(z["name"], z["allocationstate"], z["networktype"]) for z in zones] == [
        ("zone1", "Enabled", "Advanced"),
        ("zone2", "Enabled", "Advanced"),
    ]
    for zone in zones:
        assert cloudstack_api.listHypervisors(zoneid=zone["id"]) == {
            "count": 1,
            "hypervisor": [{"name": "KVM"}],
        }


def test_disabled_zones_are_hidden_from_non_admins(cloudstack: CloudStackDouble) -> None:
    api = user_client(cloudstack)
    cloudstack.state.zones[cloudstack.state.zone_id("zone2")].allocationstate = "Disabled"
    assert [z["name"] for z in api.listZones()["zone"]] == ["zone1"]


def test_offerings_by_name_and_zone(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    zone1 = cloudstack.state.zone_id("zone1")
    large = only(cloudstack_api.listServiceOfferings(name="Large Instance", zoneid=zone1), "serviceoffering")
    assert (large["cpunumber"], large["cpuspeed"], large["memory"], large["iscustomized"]) == (
        4,
        2000,
        8192,
        False,
    )
    custom = only(cloudstack_api.listServiceOfferings(name="Custom Instance"), "serviceoffering")
    assert custom["iscustomized"] is True and "cpunumber" not in custom
    disk = only(cloudstack_api.listDiskOfferings(name="Medium"), "diskoffering")
    assert (disk["disksize"], disk["iscustomized"]) == (20, False)
    assert only(cloudstack_api.listDiskOfferings(name="Custom"), "diskoffering")["iscustomized"] is True
    assert cloudstack_api.listServiceOfferings(keyword="Instance")["count"] == 4


def test_zone_scoped_offering(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    seed = load_seed(EXAMPLE_SEED)
    seed["service_offerings"].append(
        {"name": "GPU Instance", "cpunumber": 8, "cpuspeed": 2400, "memory": 32768, "zones": ["zone2"]}
    )
    cloudstack.apply_seed(seed)
    for zone_name, count in (("zone1", 0), ("zone2", 1)):
        found = cloudstack_api.listServiceOfferings(
            name="GPU Instance", zoneid=cloudstack.state.zone_id(zone_name)
        )
        assert found.get("count", 0) == count
    assert (
        only(cloudstack_api.listServiceOfferings(name="GPU Instance"), "serviceoffering")["zone"] == "zone2"
    )


def test_networks_per_zone(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    zone1, zone2 = cloudstack.state.zone_id("zone1"), cloudstack.state.zone_id("zone2")
    net = only(cloudstack_api.listNetworks(name="capc-net-zone1", zoneid=zone1), "network")
    assert (net["type"], net["zonename"], net["cidr"], net["account"]) == (
        "Isolated",
        "zone1",
        "10.1.1.0/24",
        "admin",
    )
    assert cloudstack_api.listNetworks(name="capc-net-zone1", zoneid=zone2) == {}
    assert {n["name"] for n in cloudstack_api.listNetworks(zoneid=zone1)["network"]} == {
        "capc-net-zone1",
        "capc-vpc-tier1",
        "Shared1",
    }


def test_a_vpc_and_its_tier(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    zone1, zone2 = cloudstack.state.zone_id("zone1"), cloudstack.state.zone_id("zone2")
    vpc = only(cloudstack_api.listVPCs(name="capc-vpc", zoneid=zone1), "vpc")
    assert (vpc["zonename"], vpc["cidr"], vpc["vpcofferingname"], vpc["account"]) == (
        "zone1",
        "10.100.0.0/16",
        "Default VPC offering",
        "admin",
    )
    assert cloudstack_api.listVPCs(zoneid=zone2) == {}
    tier = only(cloudstack_api.listNetworks(vpcid=vpc["id"]), "network")
    assert (tier["name"], tier["vpcname"], tier["networkofferingname"]) == (
        "capc-vpc-tier1",
        "capc-vpc",
        "DefaultIsolatedNetworkOfferingForVpcNetworks",
    )


def test_affinity_groups_and_ssh_keys(cloudstack_api: Any) -> None:
    group = only(cloudstack_api.listAffinityGroups(name="capc-control-plane-anti-affinity"), "affinitygroup")
    assert group["type"] == "host anti-affinity" and group["virtualmachineIds"] == []
    assert cloudstack_api.listAffinityGroups(type="host affinity")["count"] == 1
    key = only(cloudstack_api.listSSHKeyPairs(name="capc-key"), "sshkeypair")
    assert key["fingerprint"] == "6d:2f:89:55:ae:b0:6a:05:cc:6b:e5:23:e3:54:61:d4"
    assert "privatekey" not in key


def test_account_owned_resources_follow_the_caller(cloudstack: CloudStackDouble) -> None:
    api = user_client(cloudstack)
    assert [n["name"] for n in api.listNetworks()["network"]] == ["Shared1"]
    assert api.listSSHKeyPairs() == {}
    assert api.listAffinityGroups(listall=True) == {}  # listall does not widen a normal user's view


def test_listall_widens_an_admins_view(cloudstack: CloudStackDouble) -> None:
    seed = load_seed(EXAMPLE_SEED)
    seed["ssh_keypairs"].append(
        {"name": "dev-key", "fingerprint": "aa:bb", "owner": {"account": "dev-team", "domain": "ROOT/capc"}}
    )
    cloudstack.apply_seed(seed)
    api = CloudStack(cloudstack.endpoint, cloudstack.api_key, cloudstack.secret_key)
    assert [k["name"] for k in api.listSSHKeyPairs()["sshkeypair"]] == ["capc-key"]
    assert {k["name"] for k in api.listSSHKeyPairs(listall=True)["sshkeypair"]} == {"capc-key", "dev-key"}
    domain = cloudstack.state.domain_by_path("ROOT/capc")
    assert domain is not None
    mine = api.listSSHKeyPairs(account="dev-team", domainid=domain.id)["sshkeypair"]
    assert [(k["name"], k["account"], k["domain"]) for k in mine] == [("dev-key", "dev-team", "capc")]


def test_domains_accounts_projects(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    assert [d["path"] for d in cloudstack_api.listDomains()["domain"]] == ["ROOT", "ROOT/capc"]
    accounts = cloudstack_api.listAccounts(listall=True)["account"]
    assert {(a["name"], a["roletype"], a["accounttype"]) for a in accounts} == {
        ("admin", "Admin", 1),
        ("capc", "DomainAdmin", 2),
        ("dev-team", "User", 0),
    }
    assert [a["name"] for a in cloudstack_api.listAccounts()["account"]] == ["admin"]
    project = only(cloudstack_api.listProjects(name="capc-clusters", listall=True), "project")
    assert project["owner"] == [{"account": "capc"}] and project["domain"] == "capc"
    user = user_client(cloudstack)
    assert [p["name"] for p in user.listProjects()["project"]] == ["capc-clusters"]
    assert [d["path"] for d in user.listDomains()["domain"]] == ["ROOT/capc"]


def test_os_types(cloudstack_api: Any) -> None:
    found = cloudstack_api.listOsTypes(keyword="ubuntu")["ostype"]
    assert [o["description"] for o in found] == ["Ubuntu 22.04 LTS", "Ubuntu 24.04 LTS"]
    assert {o["oscategoryname"] for o in found} == {"Ubuntu"}


def test_system_offerings_are_for_root_admins(cloudstack: CloudStackDouble) -> None:
    with pytest.raises(CloudStackApiException) as caught:
        user_client(cloudstack).listServiceOfferings(issystem=True)
    assert caught.value.error["errortext"] == "Only ROOT admins can access system's offering"


def test_seed_pins_credentials(tmp_path: Any) -> None:
    seed = load_seed(EXAMPLE_SEED)
    seed["credentials"].update(api_key="pinned-key", secret_key="pinned-secret")
    with CloudStackDouble(seed, data_dir=tmp_path) as double:
        assert (double.api_key, double.secret_key) == ("pinned-key", "pinned-secret")
        assert CloudStack(double.endpoint, "pinned-key", "pinned-secret").listZones()["count"] == 2
    with (
        CloudStackDouble(load_seed(EXAMPLE_SEED), data_dir=tmp_path) as first,
        CloudStackDouble(load_seed(EXAMPLE_SEED), data_dir=tmp_path) as second,
    ):
        assert first.api_key != second.api_key and len(first.secret_key) >= 64
