"""`image-upgrade` while a PodDisruptionBudget holds the drain of an old worker, on the test bed with
workload clusters, in both CAPI profiles.

CAPI keeps a deleted Machine among its MachineDeployment's replicas until its drain is done, so the
rollout is not finished while the budget refuses the eviction: the run waits, and once its time is up
it names the Machine and the budget. With the budget gone, the same command finishes.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.upgrade_support import cli
from tests.support.workload_support import GROUP, create_cluster, deploy, ready_nodes, until, worker_names
from tests.testenv import bed

pytestmark = pytest.mark.testbed  # its fixtures start beds through request.getfixturevalue


def test_a_drain_held_by_a_budget_keeps_the_rollout_unfinished_until_it_is_released(
    wbed: bed.TestBed, wnamespace: str
) -> None:
    from kubernetes import client

    workload: Any = create_cluster(wbed, wnamespace, "held", workers=1)
    ready_nodes(workload, 2)
    deploy(workload, 1, {"app": "web"})
    policy = client.PolicyV1Api(workload)
    budget = {
        "metadata": {"name": "web"},
        "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": "web"}}},
    }
    policy.create_namespaced_pod_disruption_budget("default", budget)
    until(
        "PDB observed",
        lambda: policy.read_namespaced_pod_disruption_budget("web", "default").status.expected_pods == 1,
    )
    (old,) = worker_names(wbed, wnamespace)
    args = ("image-upgrade", "held", "-n", wnamespace, "--to", "v1.29.3", "--yes")

    held = cli(wbed, *args, "--timeout", "machine-deployment=20s", timeout=300)
    assert held.returncode == 6, held.stdout + held.stderr
    assert "MachineDeployment/held-md-0 did not finish rolling out to v1.29.3 within 20s" in held.stderr
    assert f"held up: {old}: drain blocked by PodDisruptionBudget default/web" in held.stderr, held.stderr
    assert old in worker_names(wbed, wnamespace)  # still there, deleting

    policy.delete_namespaced_pod_disruption_budget("web", "default")
    done = cli(wbed, *args, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert old not in worker_names(wbed, wnamespace)
    custom = client.CustomObjectsApi(wbed.api_client())
    md = custom.get_namespaced_custom_object(GROUP, wbed.capi, wnamespace, "machinedeployments", "held-md-0")
    counter = "updatedReplicas" if wbed.capi == "v1beta1" else "upToDateReplicas"
    assert (md["status"]["replicas"], md["status"][counter]) == (1, 1)
