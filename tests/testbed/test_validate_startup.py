"""`validate` stays light to start: on the test bed, a run that reads a cluster, its credentials, the
permissions and CloudStack imports neither the kubernetes client library (every request goes through the
plugin's own transport, `kube.rest`) nor pydantic, nor aiohttp and pygments (which `cs` loads when they
are installed, and the plugin does not use)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.upgrade_support import create_cluster
from tests.testenv.bed import TestBed

REPO = Path(__file__).resolve().parents[2]


# Runs the CLI as `python -m kubectl_capc` does, then reports every module loaded (modules imported by
# name at run time are not always listed by `-X importtime`).
PROBE = """
import json, sys
from kubectl_capc.__main__ import main
code = main(sys.argv[1:])
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
sys.exit(code)
"""


def imported_modules(argv: list[str]) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        capture_output=True, text=True, timeout=120, cwd=REPO, check=False,
        env={name: value for name, value in os.environ.items() if name != "TYPER_USE_RICH"},
    )  # fmt: skip
    return done, set(json.loads(done.stderr.strip().splitlines()[-1]))


def test_validate_imports_neither_the_kubernetes_library_nor_asyncio(
    testenv_v1beta2: TestBed, namespace: str
) -> None:
    bed = testenv_v1beta2
    create_cluster(bed, namespace, "c1", md_count=1)

    done, modules = imported_modules(
        ["validate", "c1", "-n", namespace, "-o", "json", "--kubeconfig", str(bed.kubeconfig)]
    )

    report = json.loads(done.stdout)
    assert report["summary"]["clusters"] == 1, done.stderr[-2000:]
    found = {f["id"] for c in report["clusters"] for f in c["findings"]}
    assert not any(check.startswith("CAPC-E") for check in found), report
    assert {"kubectl_capc.kube.rest", "cs.client"} <= modules  # it reached both servers
    heavy = sorted(m for m in modules if m.split(".")[0] in ("kubernetes", "pydantic"))
    assert heavy == []
    assert not modules & {"aiohttp", "pygments"}
