"""CAPC-G001 on the test bed: a KubeadmControlPlane that Flux applies is flagged by `validate`, naming
its Kustomization, and `image-upgrade` warns of it before the plan."""

from __future__ import annotations

import json

import pytest

from tests.support.rbac_support import capc, credentials_secret, small_cluster
from tests.support.upgrade_support import ensure_cloudstack_template, patch
from tests.testenv.bed import TestBed

Capsys = pytest.CaptureFixture[str]
FLUX = {
    "kustomize.toolkit.fluxcd.io/name": "capi-clusters",
    "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
}


def test_a_control_plane_applied_by_flux_is_flagged_naming_the_kustomization(
    testenv_v1beta2: TestBed, namespace: str, capsys: Capsys
) -> None:
    bed = testenv_v1beta2
    ensure_cloudstack_template(bed, "ubuntu-2204-kube-v1.28.9")
    credentials_secret(bed, namespace)
    small_cluster(bed, namespace)
    run = capc(capsys, bed.kubeconfig, "validate", "c1", "-n", namespace, "-o", "json")
    found = json.loads(run.out)["clusters"][0]["findings"]
    assert [f["id"] for f in found if f["id"] != "CAPC-W001"] == [], run.out  # no workload cluster here

    patch(bed, namespace, "KubeadmControlPlane", "c1-control-plane", {"metadata": {"labels": FLUX}})
    run = capc(capsys, bed.kubeconfig, "validate", "c1", "-n", namespace, "-o", "json")
    assert run.code == 0, run.err  # a warning: validate passes unless --strict
    (finding,) = [f for f in json.loads(run.out)["clusters"][0]["findings"] if f["id"] != "CAPC-W001"]
    assert (finding["id"], finding["severity"]) == ("CAPC-G001", "warning")
    assert finding["object"] == {
        "kind": "KubeadmControlPlane",
        "namespace": namespace,
        "name": "c1-control-plane",
    }
    assert "Flux Kustomization flux-system/capi-clusters" in finding["message"]
    assert "GitOps mode" in finding["hint"]
    strict = capc(capsys, bed.kubeconfig, "validate", "c1", "-n", namespace, "--strict")
    assert strict.code == 1 and "CAPC-G001" in strict.out

    preview = capc(
        capsys, bed.kubeconfig, "image-upgrade", "c1", "--to", "v1.28.9", "--dry-run", "-n", namespace
    )
    assert preview.code == 1, preview.err
    assert (
        "warning: CAPC-G001: KubeadmControlPlane/c1-control-plane is applied by Flux Kustomization "
        "flux-system/capi-clusters" in preview.err
    )
