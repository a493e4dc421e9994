"""Upstream CAPI and CAPC files (CRDs, clusterctl templates) from pinned releases, via the Go module proxy.

Each test-bed profile pins its releases in `upstream_pins/<profile>/go.mod`; `go mod download` fetches the
module zips into the Go module cache (outside the repository, shared by every checkout) and verifies them
against the committed go.sum, so the files are the released ones or nothing. Nothing upstream is copied
into the repository.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

PINS = Path(__file__).resolve().parent / "upstream_pins"
CAPI_MODULE = "sigs.k8s.io/cluster-api"
CAPC_MODULE = "sigs.k8s.io/cluster-api-provider-cloudstack"

# Where each release keeps the CRDs the test bed installs (CAPI moved its core CRDs under core/ in v1.11).
CAPI_CRD_DIRS = (
    "config/crd/bases",
    "core/config/crd/bases",
    "controlplane/kubeadm/config/crd/bases",
    "bootstrap/kubeadm/config/crd/bases",
)
CAPC_CRD_DIR = "config/crd/bases"
CAPC_TEMPLATES_DIR = "templates"


class UpstreamError(RuntimeError):
    """The pinned upstream modules could not be had: no Go toolchain, no module proxy, a bad checksum."""


@dataclass(frozen=True)
class Release:
    """One downloaded module: its path, version and read-only directory in the Go module cache."""

    module: str
    version: str
    directory: Path


def profiles() -> tuple[str, ...]:
    return tuple(sorted(p.name for p in PINS.iterdir() if (p / "go.mod").is_file()))


@functools.cache
def releases(profile: str) -> dict[str, Release]:
    """{module path: Release} for the profile's pinned modules, downloading them on first use."""
    pins = PINS / profile
    if not (pins / "go.mod").is_file():
        raise UpstreamError(f"unknown test-bed profile {profile!r}; use one of {', '.join(profiles())}")
    go = shutil.which("go")
    if go is None:
        raise UpstreamError("the 'go' toolchain is not on PATH; install Go to fetch the upstream CRDs")
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOWORK": "off"}
    result = subprocess.run(
        [go, "mod", "download", "-json", CAPI_MODULE, CAPC_MODULE],
        cwd=pins,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    found: dict[str, Release] = {}
    errors: list[str] = []
    decoder = json.JSONDecoder()
    text, index = result.stdout, 0
    while index < len(text):
        if text[index].isspace():
            index += 1
            continue
        info, index = decoder.raw_decode(text, index)
        if info.get("Error"):
            errors.append(f"{info.get('Path')}@{info.get('Version')}: {info['Error']}")
        elif info.get("Dir"):
            found[info["Path"]] = Release(info["Path"], info["Version"], Path(info["Dir"]))
    if result.returncode != 0 or errors or set(found) != {CAPI_MODULE, CAPC_MODULE}:
        detail = "; ".join(errors) or (result.stderr.strip().splitlines() or ["no module directory"])[-1]
        raise UpstreamError(
            f"cannot download the upstream modules pinned in tests/testenv/upstream_pins/{profile}/go.mod "
            f"(is the Go module proxy reachable?): {detail}"
        )
    return found


def capi_crd_files(profile: str) -> list[Path]:
    release = releases(profile)[CAPI_MODULE]
    return sorted(
        path
        for sub in CAPI_CRD_DIRS
        if (release.directory / sub).is_dir()
        for path in (release.directory / sub).glob("*.yaml")
    )


def capc_crd_files(profile: str) -> list[Path]:
    return sorted((releases(profile)[CAPC_MODULE].directory / CAPC_CRD_DIR).glob("*.yaml"))


def capc_templates_dir(profile: str = "v1beta2") -> Path:
    """CAPC's clusterctl flavors (cluster-template*.yaml) of the pinned release."""
    return releases(profile)[CAPC_MODULE].directory / CAPC_TEMPLATES_DIR
