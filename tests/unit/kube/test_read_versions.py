"""Which API versions the reader picks from discovery (the requests themselves are tested on the bed)."""

from __future__ import annotations

import pytest

from kubectl_capc.domain.errors import KubeApiError
from kubectl_capc.kube.read import ServedVersions, pick_versions

CAPC = {"infrastructure.cluster.x-k8s.io": ["v1beta1", "v1beta2", "v1beta3"]}


def capi(*versions: str) -> dict[str, list[str]]:
    groups = ("cluster.x-k8s.io", "controlplane.cluster.x-k8s.io", "bootstrap.cluster.x-k8s.io")
    return {group: list(versions) for group in groups}


def test_v1beta2_wins_when_served_next_to_the_deprecated_v1beta1() -> None:
    versions = pick_versions({**capi("v1beta1", "v1beta2"), **CAPC})
    assert versions == ServedVersions("v1beta2", "v1beta2", "v1beta2", "v1beta3")
    assert versions.capi == "v1beta2"


def test_v1beta1_when_it_is_all_the_server_has() -> None:
    versions = pick_versions({**capi("v1alpha4", "v1beta1"), **CAPC})
    assert versions == ServedVersions("v1beta1", "v1beta1", "v1beta1", "v1beta3")
    assert versions.capi == "v1beta1"


def test_capc_is_always_read_at_v1beta3() -> None:
    assert pick_versions({**capi("v1beta1"), **CAPC}).infrastructure == "v1beta3"


def test_a_server_without_cluster_api_is_refused() -> None:
    with pytest.raises(
        KubeApiError, match=r"does not serve cluster\.x-k8s\.io at v1beta1 or v1beta2 \(found: none\)"
    ):
        pick_versions(CAPC)


def test_a_capc_without_v1beta3_is_refused() -> None:
    with pytest.raises(KubeApiError, match=r"does not serve infrastructure\.cluster\.x-k8s\.io/v1beta3"):
        pick_versions({**capi("v1beta1"), "infrastructure.cluster.x-k8s.io": ["v1beta1"]})
