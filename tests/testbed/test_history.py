"""`kubectl capc history` on the test bed, both CAPI profiles: records written as image-upgrade writes them.

(The history after real `image-upgrade` and `rollback` runs is checked in test_rollback_testenv.py.)
"""

from __future__ import annotations

import yaml

from kubectl_capc.domain.records import ACTION_UPGRADE, Rotation, rotation_annotations
from tests.support.upgrade_support import cli, create_cluster, patch
from tests.testenv.bed import TestBed


def test_history_table_and_yaml(testenv: TestBed, namespace: str) -> None:
    create_cluster(testenv, namespace, md_count=1)
    empty = cli(testenv, "history", "c1", "-n", namespace)
    assert (empty.returncode, empty.stdout) == (0, ""), empty.stderr
    assert f"No upgrades recorded on cluster {namespace}/c1." in empty.stderr

    old_image, image = "ubuntu-2204-kube-v1.27.9", "ubuntu-2204-kube-v1.28.5"
    first = Rotation(
        "2026-03-01T10:00:00.100000Z",
        ACTION_UPGRADE,
        "v1.27.9",
        "v1.28.5",
        "c1-md-0-old",
        "c1-md-0",
        old_image,
        image,
    )
    second = Rotation(
        "2026-03-02T08:30:00.200000Z",
        ACTION_UPGRADE,
        "v1.28.5",
        "v1.28.5",
        "c1-md-0",
        "c1-md-0",
        image,
        image,
    )
    annotations = rotation_annotations(second, rotation_annotations(first, {}))
    patch(testenv, namespace, "MachineDeployment", "c1-md-0", {"metadata": {"annotations": annotations}})

    table = cli(testenv, "history", "c1", "-n", namespace)
    assert table.returncode == 0, table.stderr
    header, newest, oldest = table.stdout.splitlines()
    assert header.split() == ["TIME", "ACTION", "OBJECT", "VERSION", "TEMPLATE", "IMAGE"]
    assert newest.split()[:4] == ["2026-03-02T08:30:00Z", "upgrade", "MachineDeployment/c1-md-0", "v1.28.5"]
    assert "(unchanged)" in newest
    assert "v1.27.9 → v1.28.5" in oldest and "c1-md-0-old → c1-md-0" in oldest

    as_yaml = cli(testenv, "history", "c1", "-n", namespace, "-o", "yaml")
    document = yaml.safe_load(as_yaml.stdout)
    assert (document["kind"], document["metadata"]["namespace"]) == ("UpgradeHistory", namespace)
    assert [r["at"] for r in document["rotations"]] == [second.at, first.at]

    missing = cli(testenv, "history", "nope", "-n", namespace)
    assert missing.returncode == 2 and 'cluster "nope" not found' in missing.stderr
