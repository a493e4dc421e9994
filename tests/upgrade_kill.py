"""Test harness: run `image-upgrade` in this process and SIGKILL it at one exact step boundary.

A killed CLI cannot be stopped at an exact point from outside (it keeps sending requests while the
signal is on its way), so this runs the real engine (`kubectl_capc.apply.Upgrade` with the real
Kubernetes and CloudStack I/O) and kills itself, with no cleanup, the moment it reaches the boundary:

    python -m tests.upgrade_kill KUBECONFIG CAPI NAMESPACE TO POSITION STEP...

STEPs are the acting steps in order (`Action Kind/name`); step i has the positions 3i (started),
3i+1 (in progress: a wait's first progress report) and 3i+2 (done). The process dies at the first
position >= POSITION, after printing `killed at N`. Rollouts the test bed's simulator holds with its
stall annotation are released while a wait is in progress when POSITION is that wait's "done".
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from kubectl_capc.apply import ApplyOptions, ImageOptions, Upgrade
from kubectl_capc.cluster_io import KubeClusterIO
from kubectl_capc.plan import PlanHop, Step, UpgradePlan, WaitRollout
from kubectl_capc.planner import PlanRequest
from kubectl_capc.versions import parse_target
from tests.testenv.rollout_model import STALL_ANNOTATION

STARTED, IN_PROGRESS, DONE = 0, 1, 2


class KillingConsole:
    def __init__(self, api_client: Any, capi: str, namespace: str, steps: Sequence[str], target: int) -> None:
        self.api_client, self.capi, self.namespace = api_client, capi, namespace
        self.steps, self.target = steps, target
        self.waiting: WaitRollout | None = None

    def position(self, step: Step, phase: int) -> int:
        return 3 * self.steps.index(f"{step.action} {step.subject}") + phase

    def reached(self, step: Step, phase: int) -> None:
        position = self.position(step, phase)
        if position >= self.target:
            print(f"killed at {position}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    def show_plan(self, plan: UpgradePlan) -> None:
        pass

    def show_previews(self, previews: Sequence[Any]) -> None:
        pass

    def confirm(self, question: str) -> bool:
        raise AssertionError("the harness runs with --yes")

    def step(self, hop: PlanHop, step: Step, state: str) -> None:
        self.waiting = step if isinstance(step, WaitRollout) and state == "start" else None
        self.reached(step, STARTED if state == "start" else DONE)

    def progress(self, progress: Sequence[Any], elapsed: float) -> None:
        wait = self.waiting
        if wait is None:
            return
        if self.position(wait, DONE) == self.target:
            self.release(wait)
        self.reached(wait, IN_PROGRESS)

    def release(self, wait: WaitRollout) -> None:
        from kubernetes import client

        group = "controlplane.cluster.x-k8s.io" if wait.is_control_plane else "cluster.x-k8s.io"
        plural = "kubeadmcontrolplanes" if wait.is_control_plane else "machinedeployments"
        api = client.CustomObjectsApi(self.api_client)
        for name in wait.names:
            body = {"metadata": {"annotations": {STALL_ANNOTATION: None}}}
            api.patch_namespaced_custom_object(group, self.capi, self.namespace, plural, name, body)

    def note(self, message: str) -> None:
        pass


def main(argv: Sequence[str]) -> int:
    from kubernetes import config

    kubeconfig, capi, namespace, to, position, *steps = argv
    api_client = config.new_client_from_config(config_file=kubeconfig)
    console = KillingConsole(api_client, capi, namespace, steps, int(position))
    io = KubeClusterIO(api_client, namespace, "c1", ImageOptions(), console)
    request = PlanRequest(parse_target(to), to)
    return Upgrade(io, request, ApplyOptions(yes=True), console).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
