"""The workload bed deploys a Machine's VM with what CAPC sends from its CloudStackMachine (disk offering
with a custom size, SSH key pair, affinity group ids), checked against the CloudStack double."""

from __future__ import annotations

from typing import Any

import pytest
from cs import CloudStackApiException

from tests.testenv.workload_infra import deploy_vm

ANTI_AFFINITY_GROUP = "1f90c25e-ebfc-4079-8121-6936a14224e3"  # examples/cloudstack-seed.yaml
FAILURE_DOMAIN = {"zone": {"name": "zone1", "network": {"name": "capc-net-zone1"}}}


def machine(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}}


def cloudstack_machine(**spec: Any) -> dict[str, Any]:
    base = {"offering": {"name": "Medium Instance"}, "template": {"name": "ubuntu-2204-kube-v1.28.5"}}
    return {"spec": {**base, **spec}}


def test_the_vm_gets_the_disk_offering_key_pair_and_affinity_groups_of_its_spec(cloudstack_api: Any) -> None:
    csm = cloudstack_machine(
        diskOffering={"name": "Custom", "customSizeInGB": 30},
        sshKey="capc-key",
        affinityGroupIDs=[ANTI_AFFINITY_GROUP],
    )
    vm_id, state = deploy_vm(cloudstack_api, machine("w-1"), csm, FAILURE_DOMAIN)
    assert state == "Running"
    (vm,) = cloudstack_api.listVirtualMachines(id=vm_id)["virtualmachine"]
    assert (vm["diskofferingname"], vm["keypairs"]) == ("Custom", "capc-key")
    assert [group["id"] for group in vm["affinitygroup"]] == [ANTI_AFFINITY_GROUP]
    (disk,) = cloudstack_api.listVolumes(virtualmachineid=vm_id, type="DATADISK")["volume"]
    assert disk["size"] == 30 * 1024**3


def test_a_custom_disk_offering_without_a_size_is_refused_as_cloudstack_does(cloudstack_api: Any) -> None:
    csm = cloudstack_machine(diskOffering={"name": "Custom"})
    with pytest.raises(CloudStackApiException, match="requires a custom size"):
        deploy_vm(cloudstack_api, machine("w-2"), csm, FAILURE_DOMAIN)
