"""CAPC's six stock clusterctl flavours, rendered from the pinned CAPC release and applied with kubectl as
they ship, upgrade end to end on the workload bed: every MachineDeployment rolled, every Machine at the
target, and every new VM deployed in CloudStack with what its flavour asks for (disk offering, key pair,
VPC tier).

The only changes to a flavour are the ones a real install makes on the way in: `clusterctl generate`'s
variable substitution, and on the v1beta2 profile the conversion CAPI's webhook does for objects
written at v1beta1. The Machines are created as CAPI's controllers would create them (the bed runs none).
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from typing import Any

import pytest
import yaml

from tests.support.fixtures_capc import (
    Zone,
    capi_machines,
    create_objects,
    render_flavor,
    stock_values,
    to_v1beta2,
)
from tests.support.upgrade_support import cli, get, version_and_template
from tests.support.workload_support import (
    VERSION,
    list_machines,
    ready_nodes,
    until,
    workload_client,
)
from tests.testenv.bed import TestBed
from tests.testenv.workload import bed_cloudstack

TARGET = "v1.29.3"
VPC = "capc-vpc"
VPC_TIER = "capc-vpc-tier1"
SSH_PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk0ZqWJ1pbS4JpQ7w3S3vP2lB7nJc3bq6lS1N5n5Q9o capc"

# Each flavour with the values it needs beyond the default ones (stock_values), and what every VM of
# the cluster is deployed with beyond the default (`deployment`).
FLAVOURS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "cluster-template.yaml": ({}, {}),
    "cluster-template-with-kube-vip.yaml": ({}, {}),
    "cluster-template-with-disk-offering.yaml": (
        {"CLOUDSTACK_DISK_OFFERING_NAME": "Medium"},
        {"diskofferingname": "Medium"},
    ),
    "cluster-template-managed-ssh.yaml": ({}, {"keypairs": "capc-key"}),
    "cluster-template-ssh-material.yaml": ({"OS_USERID": "capc", "SSH_KEY_MATERIAL": SSH_PUBLIC_KEY}, {}),
    "cluster-template-with-existing-vpc-network.yaml": (
        {"CLOUDSTACK_VPC_NAME": VPC, "CLOUDSTACK_NETWORK_NAME": VPC_TIER},
        {"vpc": VPC},
    ),
}


def rendered(flavour: str, capi: str, values: Mapping[str, str]) -> list[dict[str, Any]]:
    """The flavour as `clusterctl generate cluster` writes it, converted as the profile's CAPI stores it."""
    objects = render_flavor(flavour, values)
    return [to_v1beta2(obj) for obj in objects] if capi == "v1beta2" else objects


def kubectl_apply(bed: TestBed, namespace: str, objects: list[dict[str, Any]]) -> None:
    applied = subprocess.run(
        [str(bed.kubectl), "--kubeconfig", str(bed.kubeconfig), "apply", "-n", namespace, "-f", "-"],
        input=yaml.safe_dump_all(objects),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert applied.returncode == 0, applied.stderr


def deployment(vm: Mapping[str, Any]) -> dict[str, Any]:
    """What of a VM a flavour decides: its disk offering, key pair, network and VPC, by name."""
    return {
        "diskofferingname": vm.get("diskofferingname"),
        "keypairs": vm.get("keypairs"),
        "network": vm["nic"][0]["networkname"],
        "vpc": vm["nic"][0].get("vpcname"),
    }


def vms_of(bed: TestBed, machines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The CloudStack VMs of `machines` (by their providerID), as the double lists them."""
    ids = {str(m["spec"].get("providerID", "")).rpartition("/")[2] for m in machines}
    listed = bed_cloudstack(bed.dir).listVirtualMachines(listall=True).get("virtualmachine") or []
    return [vm for vm in listed if vm["id"] in ids]


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_a_stock_flavour_upgrades_with_every_machine_deployment_rolled(
    wbed: TestBed, wnamespace: str, flavour: str
) -> None:
    extra, deployed_with = FLAVOURS[flavour]
    # CloudStack refuses a second VM of the same name in a network, and the bed names Machines after
    # their cluster: a cluster name per flavour keeps each test's VMs apart from the last one's.
    name = f"s{sorted(FLAVOURS).index(flavour)}"
    zone = Zone("zone1", extra.get("CLOUDSTACK_NETWORK_NAME", "capc-net-zone1"))
    values = stock_values(name, zone, version=VERSION, extra=extra)
    objects = rendered(flavour, wbed.capi, values)
    kubectl_apply(wbed, wnamespace, objects)
    owners = [o for o in objects if o["kind"] in ("KubeadmControlPlane", "MachineDeployment")]
    stored = [get(wbed, wnamespace, o["kind"], o["metadata"]["name"]) for o in owners]
    create_objects(wbed.api_client(), capi_machines(stored, name, wnamespace, (zone,), capi=wbed.capi))
    workload = workload_client(wbed, wnamespace, name)
    ready_nodes(workload, 3)

    done = cli(wbed, "image-upgrade", name, "-n", wnamespace, "--to", TARGET, "--yes", timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"cluster {wnamespace}/{name} is at {TARGET}" in done.stderr

    assert version_and_template(get(wbed, wnamespace, "MachineDeployment", f"{name}-md-0")) == (
        TARGET,
        f"{name}-md-0-{TARGET.replace('.', '-')}",
    )

    def only_new_machines() -> list[dict[str, Any]] | None:
        machines = list_machines(wbed, wnamespace)
        if {m["spec"]["version"] for m in machines} != {TARGET}:
            return None
        return [m for m in machines if not m["metadata"].get("deletionTimestamp")]

    running = until("only Machines at the target left", only_new_machines)
    assert len(running) == 3
    vms = vms_of(wbed, running)
    assert len(vms) == 3
    wanted = {"diskofferingname": None, "keypairs": None, "network": zone.network, "vpc": None}
    wanted.update(deployed_with)
    for vm in vms:
        assert vm["templatename"] == f"ubuntu-2204-kube-{TARGET}"
        assert deployment(vm) == wanted, vm["name"]
