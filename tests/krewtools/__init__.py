"""What the krew tests install with: krew and validate-krew-manifest built from their Go module (go.mod
here), and the packaged plugin archive built by scripts/release.py. Both are cached outside the repo
under ~/.cache/kubectl-capc/, keyed by everything that goes into them, so only the first run pays
for the builds (about 15 s of Go, about 1 min of PyInstaller).
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from tests.testenv import gobuild

KREWTOOLS_SRC = Path(__file__).resolve().parent
REPO = KREWTOOLS_SRC.parent.parent
KREW_PACKAGES = {
    "kubectl-krew": "sigs.k8s.io/krew/cmd/krew",
    "validate-krew-manifest": "sigs.k8s.io/krew/cmd/validate-krew-manifest",
}
# Inputs of the packaged binary besides the installed distributions and the interpreter.
PLUGIN_SOURCES = ("kubectl_capc", "packaging", "scripts/release.py", "LICENSE", "pyproject.toml")
KEPT_PLUGIN_BUILDS = 3


class PackagingError(RuntimeError):
    """The PyInstaller build failed: a test failure, never a skip."""


def ensure_krew() -> dict[str, Path]:
    """{"kubectl-krew": path, "validate-krew-manifest": path}, built once per go.mod/go.sum and Go version."""
    return gobuild.build_cached(KREWTOOLS_SRC, KREW_PACKAGES, "krew")


def plugin_source_key() -> str:
    """Changes whenever the packaged binary could: sources, installed distributions or the interpreter."""
    digest = hashlib.sha256(sys.version.encode())
    # A set: a distribution is found once per sys.path entry that holds it, and pytest's workers have
    # the working directory ("") on sys.path, which holds the tree's own egg-info (the key differed
    # between `prepare` and the tests, and the archive was built twice).
    for dist in sorted({f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions()}):
        digest.update(dist.encode())
    for entry in PLUGIN_SOURCES:
        root = REPO / entry
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            if path.suffix in (".pyc", ".pyo") or "__pycache__" in path.parts:
                continue
            digest.update(str(path.relative_to(REPO)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def ensure_plugin_archive() -> Path:
    """The linux archive `scripts/release.py build` makes from this tree; its unpacked tree lies next to it
    (`<dir>/kubectl-capc/kubectl-capc` is the packaged binary)."""
    root = gobuild.cache_root("pyinstaller")
    out = root / plugin_source_key()
    dist, done = out / "dist", out / ".complete"
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(dist, ignore_errors=True)
            result = subprocess.run(
                [sys.executable, str(REPO / "scripts" / "release.py"), "build", "--dist", str(dist),
                 "--work", str(out / "work")],
                capture_output=True,
                text=True,
            )  # fmt: skip
            shutil.rmtree(out / "work", ignore_errors=True)
            if result.returncode != 0:
                raise PackagingError(f"scripts/release.py build failed:\n{result.stderr[-4000:]}")
            done.touch()
            _prune(root, keep=out)
    (archive,) = dist.glob("*.tar.gz")
    return archive


def _prune(root: Path, keep: Path) -> None:
    """Drop all but the newest complete builds: each holds about 130 MB."""
    builds = sorted(
        (p for p in root.iterdir() if (p / ".complete").exists() and p != keep),
        key=lambda p: (p / ".complete").stat().st_mtime,
        reverse=True,
    )
    for old in builds[KEPT_PLUGIN_BUILDS - 1 :]:
        shutil.rmtree(old, ignore_errors=True)
