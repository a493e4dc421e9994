"""The upgrade lock's Lease of a cluster (c1 unless named) on the test bed: read it, put one as another
run holds it, and the writes made to Leases of a namespace, from the audit log."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from kubectl_capc.domain.lease import lease_name
from tests.support.fixtures_capc import audit_events
from tests.testenv.bed import TestBed

LEASE = lease_name("c1")


def micro(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def read_lease(bed: TestBed, namespace: str, cluster: str = "c1") -> dict[str, Any] | None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = client.CoordinationV1Api(bed.api_client())
    try:
        lease = api.read_namespaced_lease(lease_name(cluster), namespace)
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    document: dict[str, Any] = bed.api_client().sanitize_for_serialization(lease)
    return document


def put_lease(bed: TestBed, namespace: str, holder: str, renewed: datetime) -> None:
    """A Lease as another run would hold it: acquired an hour before `renewed`, for 60 s."""
    from kubernetes import client

    body = {
        "metadata": {"name": LEASE, "namespace": namespace},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 60,
            "acquireTime": micro(renewed - timedelta(hours=1)),
            "renewTime": micro(renewed),
        },
    }
    api = client.CoordinationV1Api(bed.api_client())
    existing = read_lease(bed, namespace)
    if existing is None:
        api.create_namespaced_lease(namespace, body)
    else:
        body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
        api.replace_namespaced_lease(LEASE, namespace, body)


def lease_writes(bed: TestBed, namespace: str) -> list[str]:
    """The verbs of every request that changed a Lease of `namespace`, from the audit log."""
    verbs = []
    for event in audit_events(bed.audit_log, namespace):
        ref = event.get("objectRef") or {}
        if ref.get("resource") != "leases":
            continue
        if ref.get("namespace") == namespace and event["verb"] in ("create", "update", "patch", "delete"):
            verbs.append(str(event["verb"]))
    return verbs


def drop_lease(bed: TestBed, namespace: str) -> None:
    """Delete the Lease if there is one."""
    from kubernetes import client

    if read_lease(bed, namespace) is not None:
        client.CoordinationV1Api(bed.api_client()).delete_namespaced_lease(LEASE, namespace)
