"""Concurrent upgrades and waits for images on the real test bed, in both CAPI profiles. (Runs stopped
at every step boundary and in every wait are the fault matrix: tests/support/fault_matrix.py.)

- Someone else changes an object between the plan and a guarded write (409): the run re-reads and
  re-plans; a change that leaves the plan as it was goes on, one that changes it asks again.
- A template still downloading in one zone is waited for before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from kubectl_capc.domain.errors import UsageError
from kubectl_capc.domain.plan import EnsureImage, PatchObject, PlanHop, Step, UpgradePlan
from kubectl_capc.domain.planner import PlanRequest
from kubectl_capc.domain.versions import parse_target
from kubectl_capc.ops.cluster_io import KubeClusterIO
from kubectl_capc.ops.options import ApplyOptions, ImageOptions
from kubectl_capc.ops.upgrade import Upgrade
from tests.support.fault_support import admin, faults, templates_per_zone
from tests.support.upgrade_support import (
    create_cluster,
    ensure_cloudstack_template,
    get,
    history,
    patch,
    version_and_template,
)
from tests.testenv.bed import TestBed


class RecordingConsole:
    """A console for in-process runs: records what is shown and answers questions as told."""

    def __init__(self, *answers: bool) -> None:
        self.answers = list(answers)
        self.plans: list[UpgradePlan] = []
        self.notes: list[str] = []
        self.questions: list[str] = []
        self.started: list[str] = []

    def show_plan(self, plan: UpgradePlan) -> None:
        self.plans.append(plan)

    def show_previews(self, previews: Sequence[Any]) -> None:
        pass

    def confirm(self, question: str) -> bool:
        self.questions.append(question)
        return self.answers.pop(0)

    def step(self, hop: PlanHop, step: Step, state: str) -> None:
        if state == "start":
            self.started.append(f"{step.action} {step.subject}")
            self.before_step(step)

    def before_step(self, step: Step) -> None:
        """Hook for a concurrent change, made by another client just before `step` is sent."""

    def progress(self, update: Any) -> None:
        pass

    def note(self, message: str) -> None:
        self.notes.append(message)


def run_in_process(
    bed: TestBed, namespace: str, console: RecordingConsole, *, interactive: bool = False, yes: bool = True
) -> int:
    request = PlanRequest(parse_target("v1.29.3"), "v1.29.3")
    io = KubeClusterIO(bed.api_client(), namespace, "c1", ImageOptions(), console)
    options = ApplyOptions(yes=yes, interactive=interactive)
    return Upgrade(io, request, options, console).run()


def test_a_409_mid_run_rereads_and_replans_without_overwriting(testenv: TestBed, namespace: str) -> None:
    create_cluster(testenv, namespace)

    class Meddler(RecordingConsole):
        def before_step(self, step: Step) -> None:
            if isinstance(step, PatchObject) and step.is_control_plane and "touched" not in self.notes:
                patch(testenv, namespace, "KubeadmControlPlane", "c1-control-plane",
                      {"metadata": {"annotations": {"example.com/owner": "team-a"}}})  # fmt: skip
                self.notes.append("touched")

    console = Meddler()
    assert run_in_process(testenv, namespace, console) == 0
    assert any("reading the cluster again and re-planning" in note for note in console.notes), console.notes
    assert any("409" in note or "modified" in note for note in console.notes), console.notes
    assert console.questions == []  # the new plan was the approved one: no second question
    kcp = get(testenv, namespace, "KubeadmControlPlane", "c1-control-plane")
    assert kcp["metadata"]["annotations"]["example.com/owner"] == "team-a"  # not overwritten
    assert version_and_template(kcp) == ("v1.29.3", "c1-control-plane-v1-29-3")
    assert len(history(kcp)) == 1
    assert console.started.count("Patch KubeadmControlPlane/c1-control-plane") == 2


def test_a_concurrent_change_that_alters_the_plan_is_shown_and_asked_again(
    testenv: TestBed, namespace: str
) -> None:
    create_cluster(testenv, namespace)

    class Meddler(RecordingConsole):
        def before_step(self, step: Step) -> None:
            if isinstance(step, PatchObject) and step.is_control_plane and not self.notes:
                # Another operator points c1-md-1 at c1-md-0's template meanwhile.
                repoint = {"spec": {"template": {"spec": {"infrastructureRef": {"name": "c1-md-0"}}}}}
                patch(testenv, namespace, "MachineDeployment", "c1-md-1", repoint)
                patch(testenv, namespace, "KubeadmControlPlane", "c1-control-plane",
                      {"metadata": {"annotations": {"example.com/owner": "team-b"}}})  # fmt: skip

    console = Meddler(True, False)  # yes to the plan, no to the changed one
    with pytest.raises(UsageError, match="not confirmed"):
        run_in_process(testenv, namespace, console, interactive=True, yes=False)
    assert console.questions == ["Apply this plan?", "Apply the new plan?"]
    assert any("this is the new plan" in note for note in console.notes)
    new_plan = console.plans[-1]
    patches = {s.name: s.template_to for _, s in new_plan.steps() if isinstance(s, PatchObject)}
    assert patches["c1-md-1"] == patches["c1-md-0"] == "c1-md-0-v1-29-3"
    kcp = get(testenv, namespace, "KubeadmControlPlane", "c1-control-plane")
    assert version_and_template(kcp)[0] == "v1.28.5"  # declined: the control plane was not patched


def test_a_template_still_downloading_is_waited_for_first(testenv: TestBed, namespace: str) -> None:
    """The copy in zone2 is still downloading when the run plans, both before and under the upgrade
    lock: the run's first step waits for it, then rolls out. (The double's downloads advance with every
    listTemplates request, so the copy is held at 40% until that step starts, whatever the number of
    reads before it.)"""
    from kubectl_capc.cloudstack.client import CloudStackClient

    name = "ubuntu-2204-kube-v1.31.1"
    ensure_cloudstack_template(testenv, name, {"zone1": "ready", "zone2": "downloading"})
    create_cluster(testenv, namespace, md_count=1, version="v1.30.2")
    held = {"downloads": [{"zone": "zone2", "template": name, "mode": "stall", "at_percent": 40}]}

    class Releasing(RecordingConsole):
        def before_step(self, step: Step) -> None:
            if isinstance(step, EnsureImage):
                admin(testenv, "faults", {})  # the download goes on while the run waits for it

    console = Releasing()
    io = KubeClusterIO(
        testenv.api_client(), namespace, "c1", ImageOptions(), console,
        make_client=lambda credentials: CloudStackClient(credentials, poll_interval=0.1),
    )  # fmt: skip
    target = "v1.31.1"
    request = PlanRequest(parse_target(target), target)
    with faults(testenv, held):
        assert Upgrade(io, request, ApplyOptions(yes=True), console).run() == 0
    (plan,) = console.plans
    (ensure,) = [s for _, s in plan.steps() if isinstance(s, EnsureImage)]
    assert [(z.zone, z.state.value) for z in ensure.zones] == [("zone1", "ready"), ("zone2", "in-progress")]
    assert console.started[0] == f"EnsureImage CloudStack template {name}"
    assert console.started[1:3] == [
        "CreateMachineTemplate CloudStackMachineTemplate/c1-control-plane-v1-31-1",
        "CreateMachineTemplate CloudStackMachineTemplate/c1-md-0-v1-31-1",
    ]
    waited = [note for note in console.notes if note.startswith("zone2: ")]
    assert waited[-1] == "zone2: ready" and waited[:-1], console.notes
    assert all(note.endswith("% Downloaded") for note in waited[:-1]), console.notes
    complete = ["Download Complete"]
    assert templates_per_zone(testenv, name) == {"zone1": complete, "zone2": complete}
    kcp = get(testenv, namespace, "KubeadmControlPlane", "c1-control-plane")
    assert version_and_template(kcp) == (target, "c1-control-plane-v1-31-1")


def test_a_missing_template_is_registered_from_a_url_in_every_zone(testenv: TestBed, namespace: str) -> None:
    import json
    import urllib.request

    from kubectl_capc.cloudstack.client import CloudStackClient
    from kubectl_capc.domain.plan import ImageSource
    from kubectl_capc.domain.versions import parse_version

    ensure_cloudstack_template(testenv, "ubuntu-2204-kube-v1.30.2")  # the image in use: OS type to copy
    create_cluster(testenv, namespace, md_count=1, version="v1.30.2")
    console = RecordingConsole()
    url = "http://127.0.0.1:8080/capi/kvm/ubuntu-2204-kube-{version}-kvm.qcow2"
    io = KubeClusterIO(
        testenv.api_client(), namespace, "c1", ImageOptions(ImageSource.URL, url=url), console,
        make_client=lambda credentials: CloudStackClient(credentials, poll_interval=0.1),
    )  # fmt: skip
    request = PlanRequest(
        parse_target("v1.31.5"),
        "v1.31.5",
        image_source=ImageSource.URL,
        obtainable=frozenset({parse_version("v1.31.5")}),
    )
    assert Upgrade(io, request, ApplyOptions(yes=True), console).run() == 0
    assert console.started[0] == "EnsureImage CloudStack template ubuntu-2204-kube-v1.31.5"
    assert any(
        "registering ubuntu-2204-kube-v1.31.5 from http://127.0.0.1:8080/capi/kvm/ubuntu-2204-kube-v1.31.5-kvm.qcow2"
        in n
        for n in console.notes
    ), console.notes
    with urllib.request.urlopen(testenv.admin_url("templates"), timeout=10) as response:
        (registered,) = [t for t in json.load(response) if t["name"] == "ubuntu-2204-kube-v1.31.5"]
    assert {zone: row["isready"] for zone, row in registered["zones"].items()} == {
        "zone1": True,
        "zone2": True,
    }
    kcp = get(testenv, namespace, "KubeadmControlPlane", "c1-control-plane")
    assert version_and_template(kcp) == ("v1.31.5", "c1-control-plane-v1-31-5")
