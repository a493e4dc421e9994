"""What `image-upgrade` says when the cluster, not the change, is at fault: a failure domain's zone that
CloudStack does not have is a plan error (exit 5), and an object the API server refuses even unchanged
(stored before a policy that rejects it) is reported as invalid as stored, not the change as refused."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.fixtures_capc import Zone
from tests.support.upgrade_support import TWO_ZONES, admission_policy, cli, create_cluster, wait_for
from tests.testenv.bed import NO_DEFAULTING_LABEL, TestBed


def test_a_zone_cloudstack_does_not_have_is_a_plan_error(testenv: TestBed, namespace: str) -> None:
    create_cluster(testenv, namespace, md_count=1, zones=(*TWO_ZONES, Zone("zone9", "capc-net-zone9")))
    done = cli(testenv, "image-upgrade", "c1", "-n", namespace, "--to", "v1.29.3", "--dry-run")
    assert done.returncode == 5, done.stderr
    assert "zone zone9 of failure domain fd-zone9 does not exist at http" in done.stderr
    assert "(zones: zone1, zone2" in done.stderr
    assert "cannot reach" not in done.stderr


@pytest.fixture
def undefaulted(testenv: TestBed) -> Iterator[str]:
    """A namespace where CAPI's defaulting does not run (it would put the selector labels back)."""
    from kubernetes import client

    core = client.CoreV1Api(testenv.api_client())
    name = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": name, "labels": {NO_DEFAULTING_LABEL: "true"}}})
    yield name
    core.delete_namespace(name)


@pytest.fixture
def strict_selector_policy(testenv: TestBed, undefaulted: str) -> Iterator[None]:
    """A policy, installed after the cluster, that refuses MachineDeployments without selector labels in
    this namespace: the MachineDeployment becomes invalid as it is stored."""
    with admission_policy(
        testenv, undefaulted, group="cluster.x-k8s.io", resource="machinedeployments",
        operations=["CREATE", "UPDATE"],
        expression="object.spec.?selector.?matchLabels.orValue({}).size() > 0",
        message="spec.selector.matchLabels: Required value",
    ):  # fmt: skip
        yield


def unlabelled_selector(testenv: TestBed, namespace: str) -> None:
    """Drop the selector labels the way an object applied without CAPI's defaulting lacks them."""
    from kubernetes import client

    client.CustomObjectsApi(testenv.api_client()).patch_namespaced_custom_object(
        "cluster.x-k8s.io", testenv.capi, namespace, "machinedeployments", "c1-md-0",
        {"spec": {"selector": {"matchLabels": None}}},
    )  # fmt: skip


def refused_unchanged(testenv: TestBed, namespace: str) -> bool:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        client.CustomObjectsApi(testenv.api_client()).patch_namespaced_custom_object(
            "cluster.x-k8s.io", testenv.capi, namespace, "machinedeployments", "c1-md-0", {},
            dry_run="All",
        )  # fmt: skip
    except ApiException as err:
        return err.status == 422
    return False


def test_an_object_refused_even_unchanged_is_reported_as_invalid_as_stored(
    testenv: TestBed, undefaulted: str, request: pytest.FixtureRequest
) -> None:
    namespace = undefaulted
    create_cluster(testenv, namespace, md_count=1)
    unlabelled_selector(testenv, namespace)
    request.getfixturevalue("strict_selector_policy")
    wait_for(
        "the policy to refuse the stored MachineDeployment", lambda: refused_unchanged(testenv, namespace)
    )

    done = cli(testenv, "image-upgrade", "c1", "-n", namespace, "--to", "v1.29.3", "--dry-run")
    assert done.returncode == 5, done.stderr
    assert (
        "patch MachineDeployment/c1-md-0: MachineDeployment/c1-md-0 as it is stored in the cluster is "
        "invalid: the API server refuses it even unchanged" in done.stderr + done.stdout
    )
    assert "spec.selector.matchLabels: Required value" in done.stderr + done.stdout
    assert "KubeadmControlPlane/c1-control-plane" not in done.stderr.partition("cannot be applied")[2]
