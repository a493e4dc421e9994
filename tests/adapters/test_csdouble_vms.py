"""Virtual machines in the CloudStack double, driven with the `cs` library the way CAPC drives them:
deployVirtualMachine with the failure domain's zone, network, offering and template, then
listVirtualMachinesMetrics by id, destroyVirtualMachine with expunge after listCapabilities."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cs import CloudStack, CloudStackApiException

from tests.csdouble import CloudStackDouble, load_seed
from tests.csdouble.commands.vms import EXPUNGE_DENIED_TEXT, INVALID_NAME_TEXT, NO_VM_TEXT
from tests.csdouble.faults import DeployFault
from tests.csdouble.fixtures import EXAMPLE_SEED
from tests.csdouble.seed import SeedError, add_template

MEDIUM = "38036fab-e798-48d6-8e9d-0197ed9b631f"
CUSTOM = "ef148087-7392-432d-948d-4734777447df"
KUBE_129 = "d0279183-f7fa-4fa3-9d34-fff7cd1f9c2d"
ZONE1 = "cc2ecd8a-5c9a-42b4-a5f4-3ca19adfbf45"
NET_ZONE1 = "7fe74c78-2e48-4807-99f5-48a91fd662f3"
NET_ZONE2 = "538945cc-3b5c-4b20-8617-62a498396691"
ANTI_AFFINITY = "1f90c25e-ebfc-4079-8121-6936a14224e3"
MEDIUM_DISK = "230f3bc2-b819-4ed3-b3ed-3250d79cf829"
CAPC_DOMAIN = "427fe23e-7dd6-4b05-a497-081ace9310a5"
GIB = 1024**3


def deploy_params(name: str = "capc-md-0-abcde", **extra: Any) -> dict[str, Any]:
    """What CAPC's DeployVM sends for a machine in zone1 (offering, template, network, names, user data)."""
    params: dict[str, Any] = {
        "serviceofferingid": MEDIUM, "templateid": KUBE_129, "zoneid": ZONE1, "networkids": [NET_ZONE1],
        "name": name, "displayname": name, "keypair": "capc-key", "affinitygroupids": [ANTI_AFFINITY],
        "userdata": base64.b64encode(b"#cloud-config\n").decode(), "details": {"rootDiskController": "scsi"},
    }  # fmt: skip
    params.update(extra)
    return params


def error_of(call: Any, **params: Any) -> dict[str, Any]:
    with pytest.raises(CloudStackApiException) as caught:
        call(**params)
    return dict(caught.value.error)


def job_outcome(api: Any, jobid: str) -> dict[str, Any]:
    """queryAsyncJobResult until the job is no longer pending."""
    for _ in range(10):
        result = dict(api.queryAsyncJobResult(jobid=jobid))
        if result["jobstatus"] != 0:
            return result
    raise AssertionError(f"job {jobid} still pending")


def user_scene(double: CloudStackDouble) -> Any:
    """Reload the example scene with the keys of dev-team (a User in ROOT/capc) owning one network."""
    seed = load_seed(EXAMPLE_SEED)
    seed["credentials"] = {"account": "dev-team", "domain": "ROOT/capc"}
    seed["networks"].append(
        {"name": "dev-net", "zone": "zone1", "cidr": "10.9.0.0/24", "gateway": "10.9.0.1",
         "owner": {"account": "dev-team", "domain": "ROOT/capc"}}
    )  # fmt: skip
    double.apply_seed(seed)
    return CloudStack(double.endpoint, double.api_key, double.secret_key, poll_interval=0.01, job_timeout=10)


def dev_net(double: CloudStackDouble) -> str:
    return next(n.id for n in double.state.catalog["network"].values() if n.name == "dev-net")


def test_deploy_is_a_job_and_the_vm_starts(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    answer = cloudstack_api.deployVirtualMachine(**deploy_params())
    assert set(answer) == {"id", "jobid"}
    pending = cloudstack_api.listVirtualMachinesMetrics(id=answer["id"])["virtualmachine"][0]
    assert pending["state"] == "Starting"

    result = cloudstack_api.queryAsyncJobResult(jobid=answer["jobid"])
    assert result["jobstatus"] == 0  # one pending answer first (job_polls: 1)
    done = cloudstack_api.queryAsyncJobResult(jobid=answer["jobid"])
    assert done["jobstatus"] == 1 and done["jobinstancetype"] == "VirtualMachine"
    vm = done["jobresult"]["virtualmachine"]
    assert vm["id"] == answer["id"] and vm["state"] == "Running"
    assert (vm["name"], vm["displayname"], vm["zonename"]) == ("capc-md-0-abcde", "capc-md-0-abcde", "zone1")
    assert (vm["cpunumber"], vm["cpuspeed"], vm["memory"]) == (2, 2000, 4096)
    assert vm["keypairs"] == "capc-key" and vm["details"] == {"rootDiskController": "scsi"}
    assert [g["id"] for g in vm["affinitygroup"]] == [ANTI_AFFINITY]
    [nic] = vm["nic"]
    assert nic["networkid"] == NET_ZONE1 and nic["ipaddress"] == "10.1.1.2" and nic["isdefault"] is True
    assert vm["instancename"].startswith("i-") and vm["instancename"].endswith("-VM")

    metric = cloudstack_api.listVirtualMachinesMetrics(id=answer["id"])["virtualmachine"][0]
    assert metric["ipaddress"] == "10.1.1.2" and metric["state"] == "Running"
    root = cloudstack_api.listVolumes(virtualmachineid=answer["id"], type="ROOT")["volume"]
    assert [(v["type"], v["size"]) for v in root] == [("ROOT", 21474836480)]
    assert cloudstack_api.listVolumes(virtualmachineid=answer["id"], type="DATADISK") == {}


def test_data_disk_and_root_disk_size(cloudstack_api: Any) -> None:
    vm = cloudstack_api.deployVirtualMachine(
        **deploy_params(diskofferingid=MEDIUM_DISK, rootdisksize=40), fetch_result=True
    )["virtualmachine"]
    volumes = cloudstack_api.listVolumes(virtualmachineid=vm["id"])["volume"]
    assert sorted((v["type"], v["size"]) for v in volumes) == [("DATADISK", 20 * GIB), ("ROOT", 40 * GIB)]
    assert vm["diskofferingid"] == MEDIUM_DISK


def test_deploy_fault_leaves_the_vm_in_error(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    cloudstack.state.faults.deploys.append(DeployFault(zone_id=ZONE1, name="capc-md-0", times=1))
    answer = cloudstack_api.deployVirtualMachine(**deploy_params())
    outcome = job_outcome(cloudstack_api, answer["jobid"])
    assert (outcome["jobstatus"], outcome["jobresultcode"]) == (2, 533)
    failure = outcome["jobresult"]
    assert failure["errorcode"] == 533
    assert failure["errortext"].startswith('Unable to create a deployment for VM instance {"id":')
    assert f'"uuid":"{answer["id"]}"' in failure["errortext"]
    [vm] = cloudstack_api.listVirtualMachines(name="capc-md-0-abcde")["virtualmachine"]
    assert vm["id"] == answer["id"] and vm["state"] == "Error"
    # The fault was used up: the next machine deploys.
    second = cloudstack_api.deployVirtualMachine(**deploy_params("capc-md-0-fghij"), fetch_result=True)
    assert second["virtualmachine"]["state"] == "Running"


def test_deploy_fault_from_the_seed(tmp_path: Any) -> None:
    seed = load_seed(EXAMPLE_SEED)
    seed["faults"] = {"deploys": [{"zone": "zone1", "errortext": "no host has room"}]}
    with CloudStackDouble(seed, data_dir=tmp_path) as double:
        api = CloudStack(double.endpoint, double.api_key, double.secret_key, poll_interval=0.01)
        with pytest.raises(CloudStackApiException) as caught:
            api.deployVirtualMachine(**deploy_params(), fetch_result=True)
        assert caught.value.error == {"errorcode": 533, "errortext": "no host has room"}


@pytest.mark.parametrize(
    ("change", "code", "text"),
    [
        ({"name": "1-starts-with-a-digit"}, 431, INVALID_NAME_TEXT),
        ({"name": "ends-with-dash-"}, 431, INVALID_NAME_TEXT),
        ({"serviceofferingid": CUSTOM}, 431, "Need to specify custom parameter values cpu, cpu speed and "
         "memory when using custom offering"),
        ({"networkids": [NET_ZONE2]}, 431, f"Network id={NET_ZONE2} doesn't belong to zone {ZONE1}"),
        ({"keypair": "no-such-key"}, 431, "Unable to find key pair by name : no-such-key"),
    ],
    ids=["digit-name", "dash-name", "custom-offering", "network-zone", "keypair"],
)  # fmt: skip
def test_deploy_validation(cloudstack_api: Any, change: dict[str, Any], code: int, text: str) -> None:
    error = error_of(cloudstack_api.deployVirtualMachine, **deploy_params(**change))
    assert (error["errorcode"], error["errortext"]) == (code, text)
    assert cloudstack_api.listVirtualMachines(listall=True) == {}


def test_unknown_ids_are_parameter_errors(cloudstack_api: Any) -> None:
    error = error_of(cloudstack_api.deployVirtualMachine, **deploy_params(templateid=ZONE1))
    assert error["errorcode"] == 431
    assert f"Invalid parameter templateid value={ZONE1}" in error["errortext"]


def test_custom_offering_takes_details(cloudstack_api: Any) -> None:
    details = {"cpuNumber": "3", "cpuSpeed": "1500", "memory": "3072"}
    vm = cloudstack_api.deployVirtualMachine(
        **deploy_params(serviceofferingid=CUSTOM, details=details), fetch_result=True
    )["virtualmachine"]
    assert (vm["cpunumber"], vm["cpuspeed"], vm["memory"]) == (3, 1500, 3072)


def test_template_not_downloaded_in_the_zone(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    ostype = next(iter(cloudstack.state.ostypes))
    template = add_template(
        cloudstack.state, {"name": "half-there", "ostype": ostype, "zones": {"zone1": {"percent": 40}}}
    )
    error = error_of(cloudstack_api.deployVirtualMachine, **deploy_params(templateid=template.id))
    assert error == {
        "uuidList": [], "errorcode": 530, "cserrorcode": 4250,
        "errortext": "Template half-there has not been completely downloaded to zone 1",
    }  # fmt: skip


def test_names_are_unique_per_network(cloudstack_api: Any) -> None:
    cloudstack_api.deployVirtualMachine(**deploy_params(), fetch_result=True)
    error = error_of(cloudstack_api.deployVirtualMachine, **deploy_params())
    assert error["errorcode"] == 431
    assert error["errortext"].startswith("The vm with hostName capc-md-0-abcde already exists in the network")


def test_list_filters_and_name_like(cloudstack_api: Any) -> None:
    for name in ("capc-cp-1", "capc-cp-10", "capc-md-1"):
        cloudstack_api.deployVirtualMachine(**deploy_params(name), fetch_result=True)
    names = sorted(v["name"] for v in cloudstack_api.listVirtualMachines(name="capc-cp-1")["virtualmachine"])
    assert names == ["capc-cp-1", "capc-cp-10"]  # LIKE %name%, cloudstack-go picks the exact one
    assert cloudstack_api.listVirtualMachines(zoneid=ZONE1, state="Running")["count"] == 3
    assert cloudstack_api.listVirtualMachines(networkid=NET_ZONE2) == {}
    assert cloudstack_api.listVirtualMachines(templateid=KUBE_129, name="capc-md")["count"] == 1


def test_users_see_their_own_vms_only(cloudstack: CloudStackDouble) -> None:
    user = user_scene(cloudstack)
    net = dev_net(cloudstack)
    mine = user.deployVirtualMachine(
        **deploy_params("dev-vm", networkids=[net], keypair=None, affinitygroupids=None), fetch_result=True
    )["virtualmachine"]
    assert (mine["account"], mine["domain"]) == ("dev-team", "capc") and "instancename" not in mine
    assert [v["id"] for v in user.listVirtualMachines(listall=True)["virtualmachine"]] == [mine["id"]]
    # The admin account's network is not the user's to use.
    error = error_of(
        user.deployVirtualMachine, **deploy_params("dev-vm-2", keypair=None, affinitygroupids=None)
    )
    assert error["errorcode"] == 531
    # A User may not act for another account.
    error = error_of(user.deployVirtualMachine,
                     **deploy_params("dev-vm-3", networkids=[net], keypair=None, affinitygroupids=None,
                                     account="capc", domainid=CAPC_DOMAIN))  # fmt: skip
    assert error["errorcode"] == 531


def test_admin_sees_other_accounts_with_listall(cloudstack: CloudStackDouble) -> None:
    user = user_scene(cloudstack)
    user.deployVirtualMachine(
        **deploy_params("dev-vm", networkids=[dev_net(cloudstack)], keypair=None, affinitygroupids=None),
        fetch_result=True,
    )
    # The same cloud, now with the keys acting as the root admin.
    cloudstack.state.credentials.account_id = next(
        a.id for a in cloudstack.state.accounts.values() if a.name == "admin"
    )
    admin = CloudStack(cloudstack.endpoint, cloudstack.api_key, cloudstack.secret_key)
    assert admin.listVirtualMachines() == {}
    listed = admin.listVirtualMachines(listall=True)["virtualmachine"]
    assert [(v["name"], v["account"]) for v in listed] == [("dev-vm", "dev-team")]
    by_account = admin.listVirtualMachines(account="dev-team", domainid=CAPC_DOMAIN)["virtualmachine"]
    assert [v["name"] for v in by_account] == ["dev-vm"]


def test_destroy_with_expunge_as_capc_does(cloudstack_api: Any) -> None:
    vm = cloudstack_api.deployVirtualMachine(**deploy_params(), fetch_result=True)["virtualmachine"]
    assert cloudstack_api.listCapabilities()["capability"]["allowuserexpungerecovervm"] is False
    gone = cloudstack_api.destroyVirtualMachine(id=vm["id"], expunge=True, fetch_result=True)
    assert gone["virtualmachine"]["state"] == "Expunging"
    assert [v["state"] for v in cloudstack_api.listVirtualMachinesMetrics(id=vm["id"])["virtualmachine"]] == [
        "Expunging"
    ]
    assert cloudstack_api.listVirtualMachinesMetrics(id=vm["id"]) == {}
    assert cloudstack_api.listVolumes(virtualmachineid=vm["id"]) == {}
    with pytest.raises(CloudStackApiException) as caught:
        cloudstack_api.destroyVirtualMachine(id=vm["id"], expunge=True, fetch_result=True)
    assert caught.value.error == {"errorcode": 431, "errortext": NO_VM_TEXT}


def test_users_may_not_expunge_and_do_not_see_destroyed_vms(cloudstack: CloudStackDouble) -> None:
    user = user_scene(cloudstack)
    vm = user.deployVirtualMachine(
        **deploy_params("dev-vm", networkids=[dev_net(cloudstack)], keypair=None, affinitygroupids=None),
        fetch_result=True,
    )["virtualmachine"]
    error = error_of(user.destroyVirtualMachine, id=vm["id"], expunge=True)
    assert (error["errorcode"], error["errortext"]) == (531, EXPUNGE_DENIED_TEXT)
    destroyed = user.destroyVirtualMachine(id=vm["id"], fetch_result=True)["virtualmachine"]
    assert destroyed["state"] == "Destroyed"
    assert user.listVirtualMachines(id=vm["id"]) == {}
    assert cloudstack.state.vms[vm["id"]].state.value == "Destroyed"


def test_stop_and_start(cloudstack_api: Any) -> None:
    vm = cloudstack_api.deployVirtualMachine(**deploy_params(), fetch_result=True)["virtualmachine"]
    stopped = cloudstack_api.stopVirtualMachine(id=vm["id"], fetch_result=True)["virtualmachine"]
    assert stopped["state"] == "Stopped"
    assert cloudstack_api.stopVirtualMachine(id=vm["id"], fetch_result=True)["virtualmachine"]["state"] == (
        "Stopped"
    )
    started = cloudstack_api.startVirtualMachine(id=vm["id"], fetch_result=True)["virtualmachine"]
    assert started["state"] == "Running"
    with pytest.raises(CloudStackApiException) as caught:
        cloudstack_api.startVirtualMachine(id=vm["id"], fetch_result=True)
    assert caught.value.error["errortext"].endswith("is already running")


def test_startvm_false_leaves_it_stopped(cloudstack_api: Any) -> None:
    vm = cloudstack_api.deployVirtualMachine(**deploy_params(startvm=False), fetch_result=True)
    assert vm["virtualmachine"]["state"] == "Stopped"


def test_seeded_vms(tmp_path: Any) -> None:
    seed = load_seed(EXAMPLE_SEED)
    seed["virtual_machines"] = [
        {"name": "cp-1", "zone": "zone1", "template": "ubuntu-2204-kube-v1.28.5",
         "service_offering": "Medium Instance", "networks": ["capc-net-zone1"]},
        {"name": "md-1", "zone": "zone1", "template": "ubuntu-2204-kube-v1.28.5",
         "service_offering": "Medium Instance", "networks": ["capc-net-zone1"], "state": "Error",
         "disk_offering": "Small"},
    ]  # fmt: skip
    with CloudStackDouble(seed, data_dir=tmp_path) as double:
        api = CloudStack(double.endpoint, double.api_key, double.secret_key)
        vms = {v["name"]: v for v in api.listVirtualMachines()["virtualmachine"]}
        assert {n: v["state"] for n, v in vms.items()} == {"cp-1": "Running", "md-1": "Error"}
        data = api.listVolumes(virtualmachineid=vms["md-1"]["id"], type="DATADISK")["volume"]
        assert [v["size"] for v in data] == [5 * GIB]
    seed["virtual_machines"][0]["state"] = "Sleeping"
    with pytest.raises(SeedError, match="state must be one of"):
        CloudStackDouble(seed, data_dir=tmp_path)
