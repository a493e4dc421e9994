"""Which Machine a rollout's progress line names as being replaced, and with which phase."""

from __future__ import annotations

from kubectl_capc.domain.model import Machine, MachineRole
from kubectl_capc.domain.progress import MachinePhase
from kubectl_capc.kube.write import replacing_machine


def machine(
    name: str, version: str, phase: str, *, owner: str = "c1-md-0", deleting: bool = False
) -> Machine:
    node = "node-" + name if phase == "Running" else ""
    return Machine("ns", name, MachineRole.WORKER, owner, version, "", "fd1", phase, node, None, deleting)


def test_the_newest_machine_at_the_new_version_that_is_not_ready_is_the_one_being_replaced() -> None:
    machines = [
        machine("c1-md-0-a", "v1.28.5", "Running"),
        machine("c1-md-0-b", "v1.29.3", "Running"),  # already replaced
        machine("c1-md-0-c", "v1.29.3", "Provisioning"),
        machine("c1-md-1-d", "v1.29.3", "Pending", owner="c1-md-1"),  # another owner's
    ]
    assert replacing_machine(machines, "c1-md-0", "v1.29.3") == MachinePhase("c1-md-0-c", "Provisioning")
    assert replacing_machine(machines, "c1-md-1", "1.29.3") == MachinePhase("c1-md-1-d", "Pending")


def test_between_two_replacements_the_old_machine_being_deleted_is_named() -> None:
    machines = [
        machine("c1-md-0-a", "v1.28.5", "Deleting", deleting=True),
        machine("c1-md-0-b", "v1.29.3", "Running"),
    ]
    assert replacing_machine(machines, "c1-md-0", "v1.29.3") == MachinePhase("c1-md-0-a", "Deleting")


def test_nothing_is_named_when_no_machine_is_on_its_way() -> None:
    machines = [machine("c1-md-0-a", "v1.29.3", "Running"), machine("c1-md-0-b", "v1.28.5", "Running")]
    assert replacing_machine(machines, "c1-md-0", "v1.29.3") is None
