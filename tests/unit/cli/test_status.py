"""`kubectl capc status` from the command line, over a fake gathering: the table, the documents, notes on
stderr, the exit code, and the flags that do not go together."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from kubectl_capc.__main__ import main
from kubectl_capc.domain.diagnosis import MachineStatus, OwnerStatus, RolloutStatus
from kubectl_capc.ops.status import StatusOptions, StatusReport

HELD = MachineStatus(
    "c1-md-0-a", "v1.28.5", "Deleting", "n1", False, "drain blocked by PodDisruptionBudget shop/web"
)
REPORT = StatusReport(
    (
        RolloutStatus(
            "prod",
            "c1",
            (
                OwnerStatus("KubeadmControlPlane", "c1-control-plane", "v1.29.3", ()),
                OwnerStatus("MachineDeployment", "c1-md-0", "v1.29.3", (HELD,)),
            ),
        ),
    ),
    ("prod/c1 failure domain fd-a: CloudStack not asked (zone gone)",),
)


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[StatusOptions]:
    seen: list[StatusOptions] = []

    def gather(api: Any, options: StatusOptions, **_: Any) -> tuple[StatusReport, None]:
        seen.append(options)
        return REPORT, None

    monkeypatch.setattr("kubectl_capc.ops.status.gather", gather)
    monkeypatch.setattr("kubectl_capc.kube.client.api_client", lambda target: object())
    return seen


def test_the_table_lists_owners_then_held_machines_with_notes_on_stderr(
    asked: list[StatusOptions], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "-A", "-l", "env=prod"]) == 1
    out, err = capsys.readouterr()
    assert asked == [StatusOptions(None, None, "env=prod")]
    lines = out.splitlines()
    assert lines[0].split() == ["CLUSTER", "OWNER", "MACHINE", "VERSION", "PHASE", "CAUSE"]
    assert lines[1].split() == [
        "prod/c1",
        "KubeadmControlPlane/c1-control-plane",
        "v1.29.3",
        "0",
        "new,",
        "0",
        "old",
    ]
    assert lines[3].split(None, 5)[1:] == [
        "c1-md-0-a",
        "v1.28.5",
        "Deleting",
        "drain",
        "blocked by PodDisruptionBudget shop/web",
    ]
    assert err == "note: prod/c1 failure domain fd-a: CloudStack not asked (zone gone)\n"


@pytest.mark.parametrize("output", ["json", "yaml"])
def test_the_documents_are_typed(
    asked: list[StatusOptions], capsys: pytest.CaptureFixture[str], output: str
) -> None:
    assert main(["status", "-A", "-o", output, "--join-timeout", "90s"]) == 1
    out, _ = capsys.readouterr()
    document = json.loads(out) if output == "json" else yaml.safe_load(out)
    assert document["kind"] == "RolloutStatusList"
    assert document["items"][0]["blocked"] is True
    assert asked[0].join_timeout.total_seconds() == 90


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["status", "c1", "-A"], "cannot be combined with -A"),
        (["status", "-A", "--join-timeout", "0"], "--join-timeout must be longer than 0"),
    ],
)
def test_refused_flags(
    asked: list[StatusOptions], capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert asked == []
