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
    machines = [  # oldest first; their names' random suffixes say nothing of that order
        machine("c1-md-0-q", "v1.28.5", "Running"),
        machine("c1-md-0-x", "v1.29.3", "Running"),  # already replaced
        machine("c1-md-0-z", "v1.29.3", "Provisioned"),  # surged earlier, still joining
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


def test_machines_are_listed_again_only_when_an_owner_s_counts_change() -> None:
    from dataclasses import replace

    from kubectl_capc.domain.plan import WaitRollout
    from kubectl_capc.domain.progress import OwnerProgress
    from kubectl_capc.kube.write import _Phases

    class Writer:
        lists = 0

        def list_objects(self, kind: str, *, label_selector: str | None = None) -> dict[str, object]:
            self.lists += 1
            return {"items": []}

    writer = Writer()
    phases = _Phases(writer, WaitRollout("MachineDeployment", ("c1-md-0",), "v1.29.3"))  # type: ignore[arg-type]
    first = (OwnerProgress("MachineDeployment", "c1-md-0", "v1.29.3", 3, 1, 3, 3, True, False),)
    phases.add(first, {}, refresh=True)
    phases.add(first, {}, refresh=True)  # the owner changed, its counts did not (say, a condition)
    phases.add(first, {}, refresh=False)  # a bookmark
    assert writer.lists == 1
    phases.add((replace(first[0], up_to_date=2),), {}, refresh=True)
    assert writer.lists == 2


def test_machine_objects_are_ordered_by_creation_then_name() -> None:
    from kubectl_capc.kube.write import machines_oldest_first

    def raw(name: str, created: str) -> dict[str, object]:
        return {
            "apiVersion": "cluster.x-k8s.io/v1beta2",
            "kind": "Machine",
            "metadata": {"name": name, "namespace": "ns", "creationTimestamp": created,
                         "labels": {"cluster.x-k8s.io/deployment-name": "c1-md-0"}},
            "spec": {"clusterName": "c1", "version": "v1.29.3"},
        }  # fmt: skip

    items = [
        raw("c1-md-0-a", "2026-12-07T10:00:09Z"),
        raw("c1-md-0-z", "2026-12-07T10:00:01Z"),
        raw("c1-md-0-m", "2026-12-07T10:00:05Z"),
        raw("c1-md-0-b", "2026-12-07T10:00:05Z"),  # the same second: by name
    ]
    ordered = [m.name for m in machines_oldest_first(items)]
    assert ordered == ["c1-md-0-z", "c1-md-0-b", "c1-md-0-m", "c1-md-0-a"]
