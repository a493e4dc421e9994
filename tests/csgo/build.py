"""Build the cloudstack-go template resolver (tests/csgo) on demand, cached outside the repo.

The binary lives in ``~/.cache/kubectl-capc/csgo/<key>/csgo`` (``$XDG_CACHE_HOME`` is honoured), where
the key hashes go.mod, go.sum, every .go file and the Go version: a changed pin or program rebuilds, an
unchanged one is reused at once. A missing Go toolchain raises, so tests that need the program fail
instead of being skipped.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent
BINARY_NAME = "csgo"
BUILD_TIMEOUT_S = 540


class CsgoBuildError(RuntimeError):
    """The Go toolchain is missing or the build failed."""


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise CsgoBuildError("the 'go' toolchain is not on PATH; it is needed to build tests/csgo")
    return go


def source_key() -> str:
    """Hash of what decides the binary: module files, Go sources and the toolchain version."""
    digest = hashlib.sha256()
    version = subprocess.run([_go(), "version"], capture_output=True, text=True, check=True).stdout
    digest.update(version.encode())
    sources = [SOURCE_DIR / "go.mod", SOURCE_DIR / "go.sum", *sorted(SOURCE_DIR.glob("*.go"))]
    for path in sources:
        digest.update(path.name.encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kubectl-capc" / "csgo" / source_key()


def ensure_binary() -> Path:
    """Return the path of a built resolver, building it first when the cache has none for this source."""
    target = cache_dir() / BINARY_NAME
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build to a unique name and rename: concurrent builds never expose a half-written binary.
    fd, partial = tempfile.mkstemp(prefix=f".{BINARY_NAME}-", dir=target.parent)
    os.close(fd)
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly -buildvcs=false"}
    try:
        result = subprocess.run(
            [_go(), "build", "-trimpath", "-o", partial, "."],
            cwd=SOURCE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
        )
        if result.returncode != 0:
            raise CsgoBuildError(f"go build in {SOURCE_DIR} failed:\n{result.stderr[-4000:]}")
        os.replace(partial, target)
    finally:
        Path(partial).unlink(missing_ok=True)
    return target


if __name__ == "__main__":
    print(ensure_binary())
