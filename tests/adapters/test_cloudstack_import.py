"""`cs` is imported when the first client is made, not with the adapter's modules, and without the
asyncio client and JSON colouring its package loads when aiohttp and pygments are installed (the plugin
uses neither); both stay importable for anything else."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import sys
from kubectl_capc.cloudstack.client import CloudStackClient
from kubectl_capc.cloudstack.credentials import Credentials

assert "cs" not in sys.modules  # importing the adapter leaves cs to the first client
client = CloudStackClient(Credentials("http://127.0.0.1:9/client/api", "key", "secret", True, None, "test"))
print(sorted(name for name in ("cs", "aiohttp", "pygments") if sys.modules.get(name) is not None))
print(type(client._api).__module__)
for name in ("aiohttp", "pygments"):
    assert name not in sys.modules, name  # no blocking entry is left behind
"""


@pytest.mark.skipif(importlib.util.find_spec("aiohttp") is None, reason="aiohttp is not installed here")
def test_cs_is_loaded_without_aiohttp_and_pygments_which_stay_importable() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE + "import aiohttp\nprint('aiohttp importable')\n"],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["['cs']", "cs.client", "aiohttp importable"]


RACE = """
import sys
import threading
import time
from importlib.abc import MetaPathFinder

class SlowCsClient(MetaPathFinder):
    # cs's package module is in sys.modules, not yet initialised, while its client submodule is found.
    def find_spec(self, name, path, target=None):
        if name == "cs.client":
            time.sleep(0.5)
        return None

sys.meta_path.insert(0, SlowCsClient())
from kubectl_capc.cloudstack.client import CloudStackClient
from kubectl_capc.cloudstack.credentials import Credentials

failures = []

def connect():
    try:
        CloudStackClient(Credentials("http://127.0.0.1:9/client/api", "key", "secret", True, None, "t"))
    except Exception as err:
        failures.append(repr(err))

threads = [threading.Thread(target=connect) for _ in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(failures)
"""


def test_clients_made_from_several_threads_at_once_wait_for_cs_to_finish_importing() -> None:
    done = subprocess.run(
        [sys.executable, "-c", RACE], capture_output=True, text=True, cwd=REPO, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["[]"]
