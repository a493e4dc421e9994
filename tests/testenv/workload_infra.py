"""CloudStackMachines for the Machines of a workload cluster, cloned from their templates as CAPI does.

CAPI's MachineSet and KubeadmControlPlane controllers create each Machine's infrastructure machine by
cloning the owner's CloudStackMachineTemplate `spec.template` (with the cloned-from annotations and an
owner reference to the Machine: `tests.testenv.rollout_machines.infra_machine`, which the rollout
simulator also creates for the Machines it makes; one it made first gets its VM here); CAPC then fills
in the VM: `spec.instanceID`, `spec.providerID`,
`status.instanceState`. Here the VM is deployed in the CloudStack double through the `cs` library with
the bed's keys (deployVirtualMachine in the zone and network of the Machine's failure domain, as CAPC
does), its id and state go to the CloudStackMachine and the Machine's spec.providerID, so Machine,
CloudStackMachine, VM and Node agree; a deploy CloudStack refuses is logged and leaves the
CloudStackMachine not ready (instanceState Error when the VM record exists) and the Machine without a
Node, as a machine whose VM never started never joins; a VM CloudStack left in Error gets no Node
either. When the Machine goes, its VM is destroyed (destroyVirtualMachine, expunged) and its
CloudStackMachine deleted. Where the failure domain
cannot be resolved the VM id is derived from the Machine (`workload_nodes.vm_id`).
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from tests.testenv.rollout_machines import INFRA_GROUP, INFRA_VERSION, infra_machine
from tests.testenv.workload_nodes import Machine, vm_id

log = logging.getLogger("tests.testenv.workload")


def template_name(capi: str, owner: dict[str, Any]) -> str | None:
    """The CloudStackMachineTemplate a KubeadmControlPlane or MachineDeployment points at."""
    spec = owner.get("spec") or {}
    if owner["kind"] == "KubeadmControlPlane":
        template = spec.get("machineTemplate") or {}
        ref = (template.get("spec") or {}).get("infrastructureRef") or template.get("infrastructureRef") or {}
    else:
        ref = ((spec.get("template") or {}).get("spec") or {}).get("infrastructureRef") or {}
    name = ref.get("name")
    return str(name) if ref.get("kind") == "CloudStackMachineTemplate" and name else None


def cloudstack_machine(machine: Machine, template: dict[str, Any]) -> dict[str, Any]:
    """The CloudStackMachine cloned from `template` for `machine`, with the VM CAPC gives it."""
    body = infra_machine(machine, template)
    instance = vm_id(machine)
    body["spec"].update({"instanceID": instance, "providerID": f"cloudstack:///{instance}"})
    return body


def instance_status(state: str) -> dict[str, Any]:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"ready": state == "Running", "instanceState": state, "instanceStateLastUpdated": now}


def _one(answer: dict[str, Any], key: str, what: str) -> dict[str, Any]:
    items = answer.get(key) or []
    if not items:
        raise LookupError(f"CloudStack has no {what}")
    return dict(items[0])


def vm_options(cs: Any, spec: dict[str, Any], zone_id: str) -> dict[str, Any]:
    """The deployVirtualMachine parameters CAPC adds from a CloudStackMachine's spec: the disk offering
    (by name in the zone, or id) with its custom size, the SSH key pair, and the affinity group ids."""
    options: dict[str, Any] = {}
    disk = spec.get("diskOffering") or {}
    disk_id = disk.get("id")
    if disk.get("name"):
        disk_id = _one(
            cs.listDiskOfferings(name=disk["name"], zoneid=zone_id), "diskoffering", f"disk offering {disk}"
        )["id"]
    if disk_id:
        options["diskofferingid"] = disk_id
    if int(disk.get("customSizeInGB") or 0) > 0:
        options["size"] = int(disk["customSizeInGB"])
    if spec.get("sshKey"):
        options["keypair"] = spec["sshKey"]
    if spec.get("affinityGroupIDs"):
        options["affinitygroupids"] = ",".join(spec["affinityGroupIDs"])
    return options


def deploy_vm(cs: Any, machine: Machine, csm: dict[str, Any], domain: dict[str, Any]) -> tuple[str, str]:
    """Deploy the VM of `csm` in the failure domain `domain`, as CAPC does: (VM id, state)."""
    from cs import CloudStackApiException

    zone = domain.get("zone") or {}
    zone_id = (
        zone.get("id") or _one(cs.listZones(name=zone.get("name")), "zone", f"zone {zone.get('name')}")["id"]
    )
    network = zone.get("network") or {}
    network_id = (
        network.get("id")
        or _one(
            cs.listNetworks(name=network.get("name"), zoneid=zone_id, listall=True),
            "network",
            f"network {network}",
        )["id"]
    )
    offering, template = csm["spec"].get("offering") or {}, csm["spec"].get("template") or {}
    offering_id = (
        offering.get("id")
        or _one(
            cs.listServiceOfferings(name=offering.get("name")),
            "serviceoffering",
            f"offering {offering.get('name')}",
        )["id"]
    )
    template_id = template.get("id") or _one(
        cs.listTemplates(templatefilter="all", name=template.get("name"), zoneid=zone_id),
        "template", f"template {template.get('name')} in zone {zone_id}",
    )["id"]  # fmt: skip
    name = machine["metadata"]["name"]
    try:
        job = cs.deployVirtualMachine(
            serviceofferingid=offering_id, templateid=template_id, zoneid=zone_id, networkids=network_id,
            name=name, displayname=name, fetch_result=True, **vm_options(cs, csm["spec"], zone_id),
        )  # fmt: skip
    except CloudStackApiException:
        vms = cs.listVirtualMachines(name=name, zoneid=zone_id, listall=True).get("virtualmachine") or []
        exact = [vm for vm in vms if vm.get("name") == name]
        if exact:
            return str(exact[0]["id"]), str(exact[0].get("state", "Error"))
        raise
    vm = job.get("virtualmachine") or job
    return str(vm["id"]), str(vm.get("state", "Running"))


class InfraKeeper:
    """Creates the CloudStackMachine of each Machine that has none (once per Machine)."""

    def __init__(self, mgmt: Any, capi: str, cs: Any = None) -> None:
        self.mgmt, self.capi, self.cs = mgmt, capi, cs
        self._done: set[str] = set()  # Machine uids whose CloudStackMachine exists
        self.failed: set[str] = set()  # Machine uids whose VM CloudStack refused: they never get a Node
        self.errored: set[str] = set()  # Machine uids whose VM is in Error: it never boots, so no Node

    def ensure(self, machine: Machine) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        meta = machine["metadata"]
        ref = (machine.get("spec") or {}).get("infrastructureRef") or {}
        if (
            meta["uid"] in self._done
            or ref.get("kind") != "CloudStackMachine"
            or meta.get("deletionTimestamp")
        ):
            return
        custom = client.CustomObjectsApi(self.mgmt)
        template = self._template(custom, machine)
        if template is None:
            return
        body = cloudstack_machine(machine, template)
        state: str | None = "Running"
        domain = self._failure_domain(custom, machine)
        if domain is not None and self.cs is not None:
            try:
                instance, state = deploy_vm(self.cs, machine, body, domain)
            except Exception as exc:  # refused by CloudStack: the CloudStackMachine stays not ready
                log.warning(
                    "Machine %s/%s: deployVirtualMachine failed: %s", meta["namespace"], meta["name"], exc
                )
                state = None
                self.failed.add(meta["uid"])
                for key in ("instanceID", "providerID"):
                    body["spec"].pop(key, None)
            else:
                if state != "Running":
                    self.errored.add(meta["uid"])
                body["spec"].update({"instanceID": instance, "providerID": f"cloudstack:///{instance}"})
                custom.patch_namespaced_custom_object(
                    "cluster.x-k8s.io", self.capi, meta["namespace"], "machines", meta["name"],
                    {"spec": {"providerID": body["spec"]["providerID"]}},
                )  # fmt: skip
                machine["spec"]["providerID"] = body["spec"]["providerID"]
        try:
            custom.create_namespaced_custom_object(
                INFRA_GROUP, INFRA_VERSION, meta["namespace"], "cloudstackmachines", body
            )
        except ApiException as exc:
            if exc.status != 409:
                raise
            # CAPI's side (the rollout simulator) cloned it already: CAPC fills in the VM.
            vm = {key: body["spec"][key] for key in ("instanceID", "providerID") if key in body["spec"]}
            if vm:
                custom.patch_namespaced_custom_object(
                    INFRA_GROUP, INFRA_VERSION, meta["namespace"], "cloudstackmachines",
                    body["metadata"]["name"], {"spec": vm},
                )  # fmt: skip
        if state is not None:
            custom.patch_namespaced_custom_object_status(
                INFRA_GROUP, INFRA_VERSION, meta["namespace"], "cloudstackmachines", body["metadata"]["name"],
                {"status": instance_status(state)},
            )  # fmt: skip
        self._done.add(meta["uid"])

    def release(self, machine: Machine) -> None:
        """A Machine is going: destroy its VM (expunged, as CAPC does) and delete its CloudStackMachine."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        provider_id = str((machine.get("spec") or {}).get("providerID") or "")
        if self.cs is not None and machine["metadata"]["uid"] not in self.failed and provider_id:
            self.cs.destroyVirtualMachine(
                id=provider_id.removeprefix("cloudstack:///"), expunge=True, fetch_result=True
            )
        ref = (machine.get("spec") or {}).get("infrastructureRef") or {}
        if ref.get("kind") == "CloudStackMachine":
            try:
                client.CustomObjectsApi(self.mgmt).delete_namespaced_custom_object(
                    INFRA_GROUP,
                    INFRA_VERSION,
                    machine["metadata"]["namespace"],
                    "cloudstackmachines",
                    ref["name"],
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise

    def _failure_domain(self, custom: Any, machine: Machine) -> dict[str, Any] | None:
        """The Machine's failure domain from the CloudStackCluster of its cluster (same name, as the
        cluster templates make it), or None when there is none to deploy in."""
        from kubernetes.client.exceptions import ApiException

        wanted, cluster_name = machine["spec"].get("failureDomain"), machine["spec"]["clusterName"]
        try:
            cluster = custom.get_namespaced_custom_object(
                INFRA_GROUP,
                INFRA_VERSION,
                machine["metadata"]["namespace"],
                "cloudstackclusters",
                cluster_name,
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        for domain in (cluster.get("spec") or {}).get("failureDomains") or []:
            if wanted is None or domain.get("name") == wanted:
                return dict(domain)
        return None

    def _template(self, custom: Any, machine: Machine) -> dict[str, Any] | None:
        labels = machine["metadata"].get("labels") or {}
        namespace = machine["metadata"]["namespace"]
        if owner_name := labels.get("cluster.x-k8s.io/control-plane-name"):
            owner = custom.get_namespaced_custom_object(
                "controlplane.cluster.x-k8s.io", self.capi, namespace, "kubeadmcontrolplanes", owner_name
            )
        elif owner_name := labels.get("cluster.x-k8s.io/deployment-name"):
            owner = custom.get_namespaced_custom_object(
                "cluster.x-k8s.io", self.capi, namespace, "machinedeployments", owner_name
            )
        else:
            return None
        name = template_name(self.capi, owner)
        if name is None:
            return None
        template: dict[str, Any] = custom.get_namespaced_custom_object(
            INFRA_GROUP, INFRA_VERSION, namespace, "cloudstackmachinetemplates", name
        )
        return template
