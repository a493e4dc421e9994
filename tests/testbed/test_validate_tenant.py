"""`kubectl capc validate` for failure domains with an `account`, on the test bed (both CAPI profiles).

CAPC acts as the account's first user with API keys: validate resolves the tenant the same way, sees
templates and networks as that user does, fails when the account has no user with keys, and with `--to`
compares the rollout's surge with the account's, domain's and project's free VMs, vCPU, memory and
primary storage (a full account fails naming the account, the resource, the need and what is free).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import yaml

from kubectl_capc.__main__ import main
from kubectl_capc.kube.read import read_inventories
from tests.support.fault_support import cloudstack_api
from tests.support.fixtures_capc import Zone, create_objects, render_cluster
from tests.testenv.bed import DEFAULT_SEED, TestBed

pytestmark = pytest.mark.testbed

CAPC_DOMAIN = "427fe23e-7dd6-4b05-a497-081ace9310a5"  # ROOT/capc in examples/cloudstack-seed.yaml
DEV_ZONES = (Zone("zone1", "dev-net-zone1"), Zone("zone2", "dev-net-zone2"))
USER_VM, CPU = 0, 8  # listResourceLimits resource types


def tenant_seed() -> dict[str, Any]:
    """The example seed plus a network per zone owned by dev-team (its user sees no admin network)."""
    seed: dict[str, Any] = yaml.safe_load(DEFAULT_SEED.read_text())
    for index, zone in ((1, "zone1"), (2, "zone2")):
        seed["networks"].append(
            {
                "name": f"dev-net-{zone}",
                "zone": zone,
                "type": "Isolated",
                "cidr": f"10.9{index}.0.0/24",
                "gateway": f"10.9{index}.0.1",
                "netmask": "255.255.255.0",
                "owner": {"account": "dev-team", "domain": "ROOT/capc"},
            }
        )
    return seed


@dataclass(frozen=True)
class TenantBed:
    bed: TestBed
    namespace: str


def _admin(bed: TestBed, path: str, body: dict[str, Any]) -> None:
    requests.post(bed.admin_url(path), json=body, timeout=10).raise_for_status()


def _cluster(name: str, namespace: str, capi: str, account: str) -> list[dict[str, Any]]:
    objects = render_cluster(
        name,
        namespace,
        capi=capi,
        zones=DEV_ZONES,
        control_plane_offering="Large Instance",  # 4 vCPU, 8192 MiB
        worker_offering="Medium Instance",  # 2 vCPU, 4096 MiB
    )
    infra = next(o for o in objects if o["kind"] == "CloudStackCluster")
    for fd in infra["spec"]["failureDomains"]:
        fd.update(account=account, domain="ROOT/capc")
    return objects


def _settled(bed: TestBed, namespace: str, names: set[str]) -> bool:
    found = {inv.name: inv for inv in read_inventories(bed.api_client(), namespace=namespace)}
    owners = [o for inv in found.values() for o in (inv.control_plane, *inv.machine_deployments)]
    return set(found) == names and not any(o is not None and o.rollout_in_progress() for o in owners)


@pytest.fixture(scope="module", params=["v1beta1", "v1beta2"])
def tenant_bed(request: pytest.FixtureRequest) -> Iterator[TenantBed]:
    from kubernetes import client

    bed: TestBed = request.getfixturevalue(f"testenv_{request.param}")
    namespace = f"tenant-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(bed.api_client())
    core.create_namespace({"metadata": {"name": namespace}})
    _admin(bed, "seed", tenant_seed())
    try:
        create_objects(bed.api_client(), _cluster("dev", namespace, bed.capi, "dev-team"))
        create_objects(bed.api_client(), _cluster("keyless", namespace, bed.capi, "capc"))
        deadline = time.monotonic() + 60
        while not _settled(bed, namespace, {"dev", "keyless"}):
            assert time.monotonic() < deadline, "the clusters did not settle"
            time.sleep(0.3)
        yield TenantBed(bed, namespace)
    finally:
        _admin(bed, "reset", {})
        core.delete_namespace(namespace)


Findings = list[dict[str, Any]]


def validate(tb: TenantBed, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Findings]:
    capsys.readouterr()
    kubeconfig = str(tb.bed.kubeconfig)
    code = main(["validate", *args, "-n", tb.namespace, "-o", "json", "--kubeconfig", kubeconfig])
    out, err = capsys.readouterr()
    assert out, err
    [cluster] = json.loads(out)["clusters"]
    # These clusters have no workload cluster (no <cluster>-kubeconfig Secret): CAPC-W001 is always
    # there, and tests/testbed/test_validate_workload.py covers it.
    findings: list[dict[str, Any]] = [f for f in cluster["findings"] if f["id"] != "CAPC-W001"]
    return code, findings


def set_limit(bed: TestBed, resource_type: int, maximum: int) -> None:
    cloudstack_api(bed).updateResourceLimit(
        resourcetype=resource_type, max=maximum, account="dev-team", domainid=CAPC_DOMAIN
    )


@pytest.fixture
def limits(tenant_bed: TenantBed) -> Iterator[TestBed]:
    """The bed; dev-team's VM and CPU limits are made unlimited again afterwards."""
    yield tenant_bed.bed
    for resource_type in (USER_VM, CPU):
        set_limit(tenant_bed.bed, resource_type, -1)


def test_an_account_with_a_keyed_user_validates_as_that_user(
    tenant_bed: TenantBed, capsys: pytest.CaptureFixture[str]
) -> None:
    code, findings = validate(tenant_bed, capsys, "dev", "--to", "v1.29")
    assert (code, findings) == (0, [])  # dev-team's own networks and the public templates are found


def test_an_account_without_a_keyed_user_fails_naming_it(
    tenant_bed: TenantBed, capsys: pytest.CaptureFixture[str]
) -> None:
    code, findings = validate(tenant_bed, capsys, "keyless")
    assert code == 1
    assert [f["id"] for f in findings] == ["CAPC-S010"]
    assert "account 'capc' in domain ROOT/capc has no user with API keys" in findings[0]["message"]
    assert findings[0]["failureDomain"] == "fd-zone1, fd-zone2"


def test_a_full_account_fails_validate(
    tenant_bed: TenantBed, limits: TestBed, capsys: pytest.CaptureFixture[str]
) -> None:
    set_limit(limits, USER_VM, 0)
    code, findings = validate(tenant_bed, capsys, "dev", "--to", "v1.29")
    assert code == 1
    assert [f["id"] for f in findings] == ["CAPC-R001"]
    message = findings[0]["message"]
    assert message.startswith("account dev-team has 0 VM(s) free; the rollout needs 1 at its peak")
    assert findings[0]["object"] == {"kind": "Cluster", "namespace": tenant_bed.namespace, "name": "dev"}

    code, findings = validate(tenant_bed, capsys, "dev")
    assert (code, findings) == (0, [])  # without --to there is no rollout to make room for


def test_too_little_cpu_names_the_need_and_what_is_free(
    tenant_bed: TenantBed, limits: TestBed, capsys: pytest.CaptureFixture[str]
) -> None:
    set_limit(limits, CPU, 3)
    code, findings = validate(tenant_bed, capsys, "dev", "--to", "v1.29")
    assert code == 1
    [message] = [f["message"] for f in findings if f["id"] == "CAPC-R001"]
    assert "account dev-team has 3 vCPU free; the rollout needs 4 at its peak" in message
    assert "KubeadmControlPlane/dev-control-plane" in message

    set_limit(limits, CPU, 4)
    assert validate(tenant_bed, capsys, "dev", "--to", "v1.29") == (0, [])


def test_unlimited_passes(tenant_bed: TenantBed, limits: TestBed, capsys: pytest.CaptureFixture[str]) -> None:
    set_limit(limits, USER_VM, -1)
    set_limit(limits, CPU, -1)
    [account] = cloudstack_api(limits).listAccounts(name="dev-team", domainid=CAPC_DOMAIN, listall=True)[
        "account"
    ]
    assert (account["vmavailable"], account["cpuavailable"]) == ("Unlimited", "Unlimited")
    assert validate(tenant_bed, capsys, "dev", "--to", "v1.29") == (0, [])


def test_a_downloading_duplicate_of_the_account_counts_as_capc_counts_it(
    tenant_bed: TenantBed, capsys: pytest.CaptureFixture[str]
) -> None:
    bed = tenant_bed.bed
    response = requests.post(
        bed.admin_url("templates"),
        json={
            "name": "ubuntu-2204-kube-v1.28.5",
            "ostype": "Ubuntu 22.04 LTS",
            "zones": {"zone1": {"percent": 40}},
            "owner": {"account": "dev-team", "domain": "ROOT/capc"},
        },
        timeout=10,
    )
    response.raise_for_status()
    try:
        code, findings = validate(tenant_bed, capsys, "dev")
        assert code == 1
        duplicates = [f for f in findings if f["id"] == "CAPC-T002"]
        assert duplicates, findings
        assert any(response.json()["id"] in f["message"] and "fd-zone1" in f["message"] for f in duplicates)
    finally:
        cloudstack_api(bed).deleteTemplate(id=response.json()["id"], fetch_result=True)


def test_image_upgrade_refuses_to_start_without_room_for_the_surge(
    tenant_bed: TenantBed, limits: TestBed, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["image-upgrade", "dev", "--to", "v1.29.3", "--dry-run", "-n", tenant_bed.namespace]
    kubeconfig = ["--kubeconfig", str(limits.kubeconfig)]
    set_limit(limits, USER_VM, 0)
    capsys.readouterr()
    code = main([*args, *kubeconfig])
    out, err = capsys.readouterr()
    assert code == 5, (out, err)  # ExitCode.PLAN: the plan cannot be applied
    assert "CAPC-R001: account dev-team has 0 VM(s) free; the rollout needs 1" in err
    assert "nothing was changed" in err

    set_limit(limits, USER_VM, -1)
    code = main([*args, *kubeconfig])
    out, err = capsys.readouterr()
    assert code == 1, (out, err)  # a dry run with changes pending
    assert "CAPC-R001" not in out + err


def test_the_users_keys_never_appear_in_any_output(
    tenant_bed: TenantBed, limits: TestBed, capsys: pytest.CaptureFixture[str]
) -> None:
    api = cloudstack_api(limits)
    [user] = api.listUsers(account="dev-team", domainid=CAPC_DOMAIN, listall=True)["user"]
    keys = api.getUserKeys(id=user["id"])["userkeys"]
    set_limit(limits, USER_VM, 0)
    outputs = []
    for args in (("dev", "--to", "v1.29"), ("keyless",), ("dev", "--to", "v1.29", "-o", "json")):
        capsys.readouterr()
        kubeconfig = str(limits.kubeconfig)
        code = main(["validate", *args, "-n", tenant_bed.namespace, "-v", "9", "--kubeconfig", kubeconfig])
        out, err = capsys.readouterr()
        assert code == 1, err
        outputs.append(out + err)
    assert any("D kubectl_capc." in text for text in outputs)  # -v 9 did log
    for text in outputs:
        assert keys["apikey"] not in text and keys["secretkey"] not in text
