"""Build the test bed's Go programs (kube-apiserver+etcd, kubectl) on demand, cached outside the repo.

The cache key covers go.mod, go.sum, every .go file and the Go version, so any change to the pinned
Kubernetes release or the programs rebuilds; an unchanged tree reuses the binaries in milliseconds.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

GOBIN_SRC = Path(__file__).resolve().parent / "gobin"
PROGRAMS = ("apiserver", "kubectl")
# Workload control planes only: separate modules, so ordinary beds never build or rebuild for them.
WORKLOAD_SRC = Path(__file__).resolve().parent / "goworkload"
WORKLOAD_PROGRAMS = ("controller-manager", "scheduler")
# KWOK needs a newer client-go than the pinned Kubernetes release, so it has a module of its own.
KWOK_SRC = Path(__file__).resolve().parent / "gokwok"
KWOK_PACKAGE = "sigs.k8s.io/kwok/cmd/kwok"
# KWOK's own "fast" stages (nodes turn Ready, pods run, deleted pods go), as published in its module.
KWOK_STAGES = ("node/fast", "node/heartbeat-with-lease", "pod/fast")


class BuildError(RuntimeError):
    """The Go toolchain is missing or the build failed: a test-bed failure, never a skip."""


def cache_root(name: str = "testenv") -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kubectl-capc" / name


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise BuildError("the 'go' toolchain is not on PATH; install Go to build the test bed")
    return go


def source_key(src: Path = GOBIN_SRC) -> str:
    digest = hashlib.sha256()
    digest.update(
        subprocess.run([_go(), "version"], capture_output=True, text=True, check=True).stdout.encode()
    )
    for path in sorted(
        p for p in src.rglob("*") if p.is_file() and (p.suffix == ".go" or p.name.startswith("go."))
    ):
        digest.update(str(path.relative_to(src)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def ensure_binaries() -> dict[str, Path]:
    """Return {program: path}, building into the cache when the key has no complete build yet."""
    return build_cached(GOBIN_SRC, {program: f"./{program}" for program in PROGRAMS}, "testenv")


def ensure_workload_binaries() -> dict[str, Path]:
    """Return {program: path} for a workload control plane: apiserver, controller-manager, scheduler, kwok."""
    built = dict(ensure_binaries())
    built.update(build_cached(WORKLOAD_SRC, {p: f"./{p}" for p in WORKLOAD_PROGRAMS}, "testenv-workload"))
    built.update(build_cached(KWOK_SRC, {"kwok": KWOK_PACKAGE}, "testenv-kwok"))
    built["kwok-stages"] = _kwok_stages(built["kwok"].parent / "stages.yaml")
    return built


def _kwok_stages(path: Path) -> Path:
    """Write KWOK's published stage files (from the module cache of the pinned version) into one config."""
    if path.exists():
        return path
    listed = subprocess.run(
        [_go(), "list", "-m", "-f", "{{.Dir}}", KWOK_PACKAGE.partition("/cmd/")[0]],
        cwd=KWOK_SRC,
        capture_output=True,
        text=True,
    )
    if listed.returncode != 0:
        raise BuildError(f"cannot locate the KWOK module:\n{listed.stderr[-2000:]}")
    stage_root = Path(listed.stdout.strip()) / "kustomize" / "stage"
    docs = [
        stage.read_text()
        for group in KWOK_STAGES
        for stage in sorted((stage_root / group).glob("*.yaml"))
        if stage.name != "kustomization.yaml"
    ]
    if not docs:
        raise BuildError(f"no KWOK stages under {stage_root}")
    partial = path.with_suffix(".partial")
    partial.write_text("\n---\n".join(docs))
    partial.replace(path)
    return path


def build_cached(src: Path, packages: Mapping[str, str], cache_name: str) -> dict[str, Path]:
    """Build each {program: Go package} of the module at `src` into `cache_root(cache_name)/<source key>`,
    unless that directory already holds a complete build; return {program: path}."""
    out = cache_root(cache_name) / source_key(src)
    done = out / ".complete"
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            for program, package in packages.items():
                result = subprocess.run(
                    [_go(), "build", "-trimpath", "-o", str(out / program), package],
                    cwd=src,
                    capture_output=True,
                    text=True,
                )
                if result.returncode != 0:
                    raise BuildError(f"go build {package} failed:\n{result.stderr[-4000:]}")
            done.touch()
    return {program: out / program for program in packages}


if __name__ == "__main__":
    for name, path in ensure_workload_binaries().items():
        print(f"{name}: {path}")
