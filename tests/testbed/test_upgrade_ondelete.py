"""`image-upgrade` of a cluster whose MachineDeployment has the OnDelete strategy, in both CAPI profiles.

The rollout simulator plays CAPI: after the patch it keeps the deployment's Machines at the old version
and replaces one only once it is deleted. By default the run patches the deployment, waits for nothing
there and ends successfully naming the old Machines; `--on-delete=replace` deletes them one at a time
and ends with every Machine new; a dry run deletes nothing.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from kubectl_capc.domain.records import HISTORY
from tests.support.fixtures_capc import create_objects, render_cluster
from tests.support.upgrade_support import (
    TWO_ZONES,
    cli,
    custom,
    get,
    patch,
    version_and_template,
    wait_settled,
)
from tests.testenv.bed import TestBed
from tests.testenv.rollout_machines import infra_machine

MD = "c1-md-0"


def create_on_delete_cluster(bed: TestBed, namespace: str, *, with_machines: bool = False) -> None:
    """The two-zone cluster (1 control-plane machine, two MachineDeployments of 2), c1-md-0 OnDelete.

    `with_machines`: its Machines exist from the start, each with the CloudStackMachine CAPI cloned
    from its owner's template (otherwise the simulator makes the old ones once the deployment changes).
    """
    objects = render_cluster(
        "c1", namespace, capi=bed.capi, md_count=2, zones=TWO_ZONES, control_plane_replicas=1,
        with_machines=with_machines,
    )  # fmt: skip
    md = next(o for o in objects if o["kind"] == "MachineDeployment" and o["metadata"]["name"] == MD)
    if bed.capi == "v1beta2":
        md["spec"]["rollout"] = {"strategy": {"type": "OnDelete"}}
    else:
        md["spec"]["strategy"] = {"type": "OnDelete"}
    create_objects(bed.api_client(), objects)
    if with_machines:
        for machine in custom(bed).list_namespaced_custom_object(
            "cluster.x-k8s.io", bed.capi, namespace, "machines"
        )["items"]:
            labels = machine["metadata"]["labels"]
            owner = labels.get("cluster.x-k8s.io/deployment-name") or "c1-control-plane"
            template = get(bed, namespace, "CloudStackMachineTemplate", owner)
            custom(bed).create_namespaced_custom_object(
                "infrastructure.cluster.x-k8s.io", "v1beta3", namespace, "cloudstackmachines",
                infra_machine(machine, template),
            )  # fmt: skip
    wait_settled(bed, namespace)


def machines_of(bed: TestBed, namespace: str, deployment: str) -> list[dict[str, Any]]:
    items = custom(bed).list_namespaced_custom_object(
        "cluster.x-k8s.io",
        bed.capi,
        namespace,
        "machines",
        label_selector=f"cluster.x-k8s.io/deployment-name={deployment}",
    )["items"]
    return sorted(items, key=lambda m: m["metadata"]["name"])


def versions(machines: list[dict[str, Any]]) -> list[str]:
    return sorted(m["spec"]["version"] for m in machines)


def machine_requests(bed: TestBed, namespace: str, since: int) -> list[tuple[str, str]]:
    """(verb, Machine name) of every create and delete of a c1-md-0 Machine after line `since` of the
    audit log, in order (the simulator creates, the plugin deletes)."""
    found = []
    for index, line in enumerate(bed.audit_log.open()):
        if index < since:
            continue
        event = json.loads(line)
        ref = event.get("objectRef") or {}
        if (
            event.get("stage") != "ResponseComplete"
            or ref.get("namespace") != namespace
            or ref.get("resource") != "machines"
            or ref.get("subresource")
            or event["verb"] not in ("create", "delete")
            or (event.get("responseStatus") or {}).get("code", 200) >= 300
        ):
            continue
        name = ref.get("name") or ""
        if event["verb"] == "create" or name.startswith(MD):
            found.append((event["verb"], name))
    return found


def audit_mark(bed: TestBed) -> int:
    return sum(1 for _ in bed.audit_log.open())


def upgrade(bed: TestBed, namespace: str, *args: str) -> tuple[int, str, str]:
    done = cli(bed, "image-upgrade", "c1", "-n", namespace, "--to", "v1.29.3", *args)
    return done.returncode, done.stdout, done.stderr


def test_by_default_the_run_succeeds_and_names_the_old_machines(testenv: TestBed, namespace: str) -> None:
    create_on_delete_cluster(testenv, namespace)
    code, out, err = upgrade(testenv, namespace, "--yes")
    assert code == 0, err
    assert f"rollout strategy: {MD} OnDelete; c1-md-1 RollingUpdate (maxSurge 1, maxUnavailable 0)" in out
    assert "RollOnDelete" in out and "not waited for" in out

    md = get(testenv, namespace, "MachineDeployment", MD)
    assert version_and_template(md) == ("v1.29.3", f"{MD}-v1-29-3")
    old = machines_of(testenv, namespace, MD)
    assert versions(old) == ["v1.28.5", "v1.28.5"], "CAPI replaces nothing by itself"
    assert f"cluster {namespace}/c1 is at v1.29.3" in err
    assert f"MachineDeployment/{MD} (OnDelete) still has Machines at v1.28.5" in err
    for machine in old:
        assert machine["metadata"]["name"] in err
    assert f"kubectl delete machine -n {namespace}" in err and "--on-delete=replace" in err
    assert versions(machines_of(testenv, namespace, "c1-md-1")) == ["v1.29.3", "v1.29.3"]
    (entry,) = json.loads(md["metadata"]["annotations"][HISTORY])
    assert entry["onDelete"] == "leave"

    described = cli(testenv, "describe", "c1", "-n", namespace)
    assert described.returncode == 0, described.stderr
    assert "strategy" in described.stdout and "OnDelete" in described.stdout
    assert old[0]["metadata"]["name"] in described.stdout

    again = upgrade(testenv, namespace, "--yes")
    assert again[0] == 0 and "nothing to do" in again[2] and old[0]["metadata"]["name"] in again[2]


def test_rollback_patches_the_on_delete_deployment_back_without_waiting_for_it(
    testenv: TestBed, namespace: str
) -> None:
    from tests.support.upgrade_support import ensure_cloudstack_template, wait_for

    ensure_cloudstack_template(testenv, "ubuntu-2204-kube-v1.28.9")
    create_on_delete_cluster(testenv, namespace)
    # A patch release (a minor one cannot go back); leave: c1-md-0's Machines stay at v1.28.5.
    done = cli(testenv, "image-upgrade", "c1", "-n", namespace, "--to", "v1.28.9", "--yes")
    assert done.returncode == 0, done.stderr
    newer = replace_by_hand(testenv, namespace, wait_for)  # now one runs v1.28.9

    back = cli(testenv, "rollback", "c1", "-n", namespace, "--yes", "--timeout", "3m")

    assert back.returncode == 0, back.stderr
    said = back.stdout + back.stderr
    assert f"MachineDeployment/{MD} has the OnDelete strategy: it is patched and not waited for" in said
    assert f"{newer} keep running their version" in said
    assert f"would leave Machines {newer} of MachineDeployment/{MD}" in said  # the control plane stays
    for name in (MD, "c1-md-1"):
        assert version_and_template(get(testenv, namespace, "MachineDeployment", name)) == ("v1.28.5", name)
    kcp = get(testenv, namespace, "KubeadmControlPlane", "c1-control-plane")
    assert version_and_template(kcp)[0] == "v1.28.9"

    newer = replace_by_hand(testenv, namespace, wait_for)  # its replacement is back at v1.28.5
    again = cli(testenv, "rollback", "c1", "-n", namespace, "--yes", "--timeout", "3m")
    assert again.returncode == 0, again.stderr
    kcp = get(testenv, namespace, "KubeadmControlPlane", "c1-control-plane")
    assert version_and_template(kcp) == ("v1.28.5", "c1-control-plane")
    assert versions(machines_of(testenv, namespace, MD)) == ["v1.28.5", "v1.28.5"]


def replace_by_hand(bed: TestBed, namespace: str, wait_for: Any) -> str:
    """`kubectl delete machine` of a c1-md-0 Machine not at the deployment's version, as an operator rolls
    an OnDelete deployment; returns its replacement's name once it runs that version."""
    md = get(bed, namespace, "MachineDeployment", MD)
    wanted = md["spec"]["template"]["spec"]["version"]
    before = machines_of(bed, namespace, MD)
    gone = next(m["metadata"]["name"] for m in before if m["spec"]["version"] != wanted)
    custom(bed).delete_namespaced_custom_object("cluster.x-k8s.io", bed.capi, namespace, "machines", gone)

    def replaced() -> str | None:
        now = machines_of(bed, namespace, MD)
        names = {m["metadata"]["name"] for m in now}
        fresh = [m for m in now if m["metadata"]["name"] not in {b["metadata"]["name"] for b in before}]
        if gone in names or len(fresh) != 1 or fresh[0]["spec"]["version"] != wanted:
            return None
        running = (fresh[0].get("status") or {}).get("phase") == "Running"
        return str(fresh[0]["metadata"]["name"]) if running else None

    result: str = wait_for(f"a replacement of {gone}", replaced, timeout=120)
    return result


def test_replace_rolls_the_machines_one_at_a_time(testenv: TestBed, namespace: str) -> None:
    create_on_delete_cluster(testenv, namespace)
    mark = audit_mark(testenv)
    code, out, err = upgrade(testenv, namespace, "--yes", "--on-delete=replace")
    assert code == 0, err
    assert "one at a time" in out
    assert f"cluster {namespace}/c1 is at v1.29.3" in err and "still has Machines" not in err

    machines = machines_of(testenv, namespace, MD)
    assert versions(machines) == ["v1.29.3", "v1.29.3"]
    assert all(m["status"]["phase"] == "Running" for m in machines)
    requests = machine_requests(testenv, namespace, mark)
    deletes = [name for verb, name in requests if verb == "delete"]
    assert len(deletes) == 2 and len(set(deletes)) == 2, requests
    # Each old Machine goes only once the previous one's replacement exists: delete, create, delete, create.
    first = requests.index(("delete", deletes[0]))
    assert [verb for verb, _ in requests[first : first + 4]] == ["delete", "create", "delete", "create"]
    entry = json.loads(get(testenv, namespace, "MachineDeployment", MD)["metadata"]["annotations"][HISTORY])[
        0
    ]
    assert entry["onDelete"] == "replace"


def test_replace_after_leave_only_deletes_machines_still_old(testenv: TestBed, namespace: str) -> None:
    create_on_delete_cluster(testenv, namespace)
    assert upgrade(testenv, namespace, "--yes")[0] == 0
    old = {m["metadata"]["name"] for m in machines_of(testenv, namespace, MD)}
    custom(testenv).delete_namespaced_custom_object(
        "cluster.x-k8s.io", testenv.capi, namespace, "machines", sorted(old)[0]
    )  # someone rolls one by hand
    mark = audit_mark(testenv)

    code, _, err = upgrade(testenv, namespace, "--yes", "--on-delete=replace")
    assert code == 0, err
    deleted = [name for verb, name in machine_requests(testenv, namespace, mark) if verb == "delete"]
    assert deleted == [sorted(old)[1]], "the Machine deleted by hand and its replacement are left alone"
    assert versions(machines_of(testenv, namespace, MD)) == ["v1.29.3", "v1.29.3"]


def test_dry_run_with_replace_deletes_nothing(testenv: TestBed, namespace: str) -> None:
    create_on_delete_cluster(testenv, namespace)
    assert upgrade(testenv, namespace, "--yes")[0] == 0  # patched; its old Machines left running
    before = [m["metadata"]["name"] for m in machines_of(testenv, namespace, MD)]
    mark = audit_mark(testenv)

    code, out, err = upgrade(testenv, namespace, "--dry-run", "--on-delete=replace")
    assert code == 1, err
    assert "RollOnDelete" in out and "one at a time" in out
    assert not [r for r in machine_requests(testenv, namespace, mark) if r[0] == "delete"]
    assert [m["metadata"]["name"] for m in machines_of(testenv, namespace, MD)] == before


# -- an image-only change: same version, new CloudStackMachineTemplate --------------------------------

REBUILT = "ubuntu-2404-kube-v1.28.5"
"""Another node image for the version the cluster runs: `--to v1.28.5 --image` it changes the image only."""


def rebuild(bed: TestBed, namespace: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    from tests.support.upgrade_support import ensure_cloudstack_template

    ensure_cloudstack_template(bed, REBUILT)
    done = cli(
        bed, "image-upgrade", "c1", "-n", namespace, "--to", "v1.28.5", "--image", REBUILT, *args, env=env
    )
    return done.returncode, done.stderr


def cloned_from(bed: TestBed, namespace: str, machines: list[dict[str, Any]]) -> list[str]:
    """The CloudStackMachineTemplate each Machine's CloudStackMachine was cloned from."""
    infra = custom(bed).list_namespaced_custom_object(
        "infrastructure.cluster.x-k8s.io", "v1beta3", namespace, "cloudstackmachines"
    )["items"]
    by_name = {i["metadata"]["name"]: i["metadata"]["annotations"] for i in infra}
    return sorted(
        by_name[m["spec"]["infrastructureRef"]["name"]]["cluster.x-k8s.io/cloned-from-name"] for m in machines
    )


def oldest_first(machines: list[dict[str, Any]]) -> list[str]:
    return [
        m["metadata"]["name"]
        for m in sorted(machines, key=lambda m: (m["metadata"]["creationTimestamp"], m["metadata"]["name"]))
    ]


def test_an_image_only_change_names_the_machines_still_on_the_old_template(
    testenv: TestBed, namespace: str
) -> None:
    create_on_delete_cluster(testenv, namespace, with_machines=True)
    old = oldest_first(machines_of(testenv, namespace, MD))
    assert cloned_from(testenv, namespace, machines_of(testenv, namespace, MD)) == [MD, MD]

    code, err = rebuild(testenv, namespace, "--yes")

    assert code == 0, err
    md = get(testenv, namespace, "MachineDeployment", MD)
    assert version_and_template(md) == ("v1.28.5", f"{MD}-v1-28-5")
    assert oldest_first(machines_of(testenv, namespace, MD)) == old, "CAPI replaces nothing by itself"
    assert f"MachineDeployment/{MD} (OnDelete) still has Machines on CloudStackMachineTemplate {MD}" in err
    assert " ".join(old) in err and "--on-delete=replace" in err
    described = cli(testenv, "describe", "c1", "-n", namespace, "-o", "json")
    assert described.returncode == 0, described.stderr
    (deployment,) = [d for d in json.loads(described.stdout)["machineDeployments"] if d["name"] == MD]
    assert sorted(deployment["oldMachines"]) == sorted(old)
    status = cli(testenv, "status", "c1", "-n", namespace, "-o", "json")
    (owner,) = [o for o in json.loads(status.stdout)["owners"] if o["name"] == MD]
    assert owner["machines"] == {"total": 2, "new": 0, "old": 2}, status.stdout

    again, said = rebuild(testenv, namespace, "--yes")
    assert again == 0 and "nothing to do" in said and old[0] in said, said


def test_an_image_only_change_with_replace_rolls_the_machines_on_the_old_template(
    testenv: TestBed, namespace: str
) -> None:
    create_on_delete_cluster(testenv, namespace, with_machines=True)
    old = oldest_first(machines_of(testenv, namespace, MD))
    mark = audit_mark(testenv)

    code, err = rebuild(testenv, namespace, "--yes", "--on-delete=replace")

    assert code == 0, err
    assert "still has Machines" not in err
    deletes = [name for verb, name in machine_requests(testenv, namespace, mark) if verb == "delete"]
    assert deletes == old, "each old Machine once, oldest first"
    machines = machines_of(testenv, namespace, MD)
    assert versions(machines) == ["v1.28.5", "v1.28.5"] and not set(oldest_first(machines)) & set(old)
    assert cloned_from(testenv, namespace, machines) == [f"{MD}-v1-28-5"] * 2


def test_an_interrupted_image_only_replace_continues_with_the_machines_still_old(
    testenv: TestBed, namespace: str
) -> None:
    from kubectl_capc.domain.testpoints import SIGNAL_ENV

    create_on_delete_cluster(testenv, namespace, with_machines=True)
    first, second = oldest_first(machines_of(testenv, namespace, MD))
    stop = {SIGNAL_ENV: f"SIGINT@v1.28.5 deleting Machine {second}"}  # once the first is replaced

    code, err = rebuild(testenv, namespace, "--yes", "--on-delete=replace", env=stop)

    assert code == 130, err
    left = oldest_first(machines_of(testenv, namespace, MD))
    assert first not in left and second in left
    mark = audit_mark(testenv)
    again, said = rebuild(testenv, namespace, "--yes", "--on-delete=replace")
    assert again == 0, said
    deletes = [name for verb, name in machine_requests(testenv, namespace, mark) if verb == "delete"]
    assert deletes == [second], "the replacement of the first is new: only the second is deleted"
    assert cloned_from(testenv, namespace, machines_of(testenv, namespace, MD)) == [f"{MD}-v1-28-5"] * 2


def test_replacing_stops_once_the_deployment_asks_for_another_template(
    testenv: TestBed, namespace: str
) -> None:
    """Someone points the deployment at another template while its Machines are being replaced: the
    next Machine is not deleted for a spec the deployment no longer has, and the run re-reads the
    cluster (`Conflict`)."""
    from kubectl_capc.domain.plan import OnDeleteMode, RollOnDelete
    from kubectl_capc.kube.write import Conflict, KubeWriter

    create_on_delete_cluster(testenv, namespace, with_machines=True)
    for name in (f"{MD}-rebuilt", f"{MD}-other"):
        template = copy.deepcopy(get(testenv, namespace, "CloudStackMachineTemplate", MD))
        template["metadata"] = {"name": name, "namespace": namespace}
        custom(testenv).create_namespaced_custom_object(
            "infrastructure.cluster.x-k8s.io", "v1beta3", namespace, "cloudstackmachinetemplates", template
        )
    patch(testenv, namespace, "MachineDeployment", MD, template_patch(f"{MD}-rebuilt"))
    first, second = oldest_first(machines_of(testenv, namespace, MD))

    def changed(name: str, decision: Any) -> None:  # while the first Machine goes
        if name == first:
            patch(testenv, namespace, "MachineDeployment", MD, template_patch(f"{MD}-other"))

    writer = KubeWriter(testenv.api_client(), namespace, testenv.capi)
    step = RollOnDelete(MD, "v1.28.5", OnDeleteMode.REPLACE, (first, second), template=f"{MD}-rebuilt")
    with pytest.raises(Conflict, match=f"CloudStackMachineTemplate/{MD}-other"):
        writer.replace_on_delete(step, timeout=120, on_delete=changed)

    left = oldest_first(machines_of(testenv, namespace, MD))
    assert first not in left and second in left, "only the Machine deleted before the change"


def template_patch(template: str) -> dict[str, Any]:
    return {"spec": {"template": {"spec": {"infrastructureRef": {"name": template}}}}}
