#!/usr/bin/env python3
"""Build the krew release of kubectl-capc: a self-contained one-dir binary per platform, and the manifest.

    python scripts/release.py build [--dist DIR]
        Builds this machine's platform with PyInstaller (it cannot cross-build; CI runs one job per
        os/arch) into DIR/kubectl-capc/, adds a copy of the binary named kubectl_complete-capc (the
        shell-completion executable kubectl looks for; the binary answers completion when called by
        that name) and packs the tree with the LICENSE as DIR/kubectl-capc_<version>_<os>_<arch>.tar.gz.
        Prints the archive path and its sha256.

    python scripts/release.py manifest --homepage URL [--base-url URL] [--require-all] ARCHIVE...
        Renders krew/capc.yaml for the archives' version: one platform per archive, each with its
        download URI (<base-url>/<archive name>; default base URL: <homepage>/releases/download/<version>)
        and the lowercase sha256 krew checks. Writes capc.yaml next to the first archive (or --out).

The version is the installed kubectl-capc distribution's, the one `kubectl capc version` reports, with a
leading "v" as krew wants it; `--version` only asserts it (CI passes the git tag).
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "krew" / "capc.yaml"
ENTRY_SCRIPT = REPO / "packaging" / "entry.py"
LICENSE = REPO / "LICENSE"
DISTRIBUTION = "kubectl-capc"
BINARY = "kubectl-capc"
# kubectl (1.26+) runs `kubectl_complete-<plugin>` from PATH to complete the plugin's words.
COMPLETION_BINARY = "kubectl_complete-capc"
# Distributions whose metadata `kubectl capc version` reads at run time.
METADATA = ("kubectl-capc", "kubernetes", "cs")
# Found by PyInstaller's analysis through optional imports (rich's notebook support, pydantic's mypy and
# hypothesis plugins) but never used by the plugin: about 60 MB of the tree.
EXCLUDED_MODULES = ("IPython", "jedi", "parso", "hypothesis", "mypy", "pytest", "_pytest", "tkinter")

_ARCHIVE_RE = re.compile(
    rf"{re.escape(BINARY)}_(?P<version>v[0-9][^_]*)_(?P<os>[a-z]+)_(?P<arch>[a-z0-9]+)\.tar\.gz"
)
_OS = {"linux": "linux", "darwin": "darwin", "win32": "windows"}
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class ReleaseError(Exception):
    """A release input is wrong; the message says which and why."""


@dataclass(frozen=True)
class Archive:
    """A release archive and what its name says: version, os and arch."""

    path: Path
    version: str
    os: str
    arch: str

    @classmethod
    def parse(cls, path: Path) -> Archive:
        match = _ARCHIVE_RE.fullmatch(path.name)
        if match is None:
            raise ReleaseError(f"{path.name}: not named {BINARY}_<version>_<os>_<arch>.tar.gz")
        return cls(path, match["version"], match["os"], match["arch"])

    def sha256(self) -> str:
        """Lowercase hex, as krew's manifest validation requires."""
        digest = hashlib.sha256()
        with self.path.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()


def package_version(expected: str | None = None) -> str:
    """`v` + the installed distribution's version; `expected` (e.g. a git tag) must equal it."""
    try:
        version = "v" + metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise ReleaseError(f"{DISTRIBUTION} is not installed; run `pip install -e .` first") from None
    if expected is not None and expected != version:
        raise ReleaseError(f"--version {expected} differs from the installed {DISTRIBUTION} {version}")
    return version


def host_platform() -> tuple[str, str]:
    """This machine's krew (GOOS, GOARCH) pair."""
    os_name, arch = _OS.get(sys.platform), _ARCH.get(platform.machine().lower())
    if os_name is None or arch is None:
        raise ReleaseError(f"no release platform for {sys.platform}/{platform.machine()}")
    return os_name, arch


def archive_name(version: str, os_name: str, arch: str) -> str:
    return f"{BINARY}_{version}_{os_name}_{arch}.tar.gz"


# -- build -------------------------------------------------------------------------------------------


def build(dist: Path, work: Path, version: str) -> Archive:
    """PyInstaller one-dir build of this platform into `dist/kubectl-capc/`, packed as a krew archive."""
    os_name, arch = host_platform()
    tree = dist / BINARY
    shutil.rmtree(tree, ignore_errors=True)
    command = [
        sys.executable, "-m", "PyInstaller", "--noconfirm", "--onedir", "--log-level", "WARN",
        "--name", BINARY, "--distpath", str(dist), "--workpath", str(work / "build"),
        "--specpath", str(work), "--paths", str(REPO),
        *(arg for name in METADATA for arg in ("--copy-metadata", name)),
        *(arg for name in EXCLUDED_MODULES for arg in ("--exclude-module", name)),
        # The commands' modules are imported by name when a command runs (kubectl_capc/cli/app.py's
        # table), where PyInstaller's analysis does not see them.
        "--collect-submodules", "kubectl_capc",
        str(ENTRY_SCRIPT),
    ]  # fmt: skip
    subprocess.run(command, check=True)  # noqa: S603 - a fixed argument list, no shell
    suffix = ".exe" if os_name == "windows" else ""
    shutil.copy2(tree / f"{BINARY}{suffix}", tree / f"{COMPLETION_BINARY}{suffix}")
    shutil.copyfile(LICENSE, tree / LICENSE.name)
    archive = dist / archive_name(version, os_name, arch)
    pack(tree, archive)
    return Archive(archive, version, os_name, arch)


def pack(tree: Path, archive: Path) -> None:
    """tar.gz `tree` under its own name; symlinks are stored as the files they point to, because krew's
    extractor accepts only regular files and directories, and no builder's user or group is recorded."""

    def anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(archive, "w:gz", dereference=True) as tar:
        tar.add(tree, arcname=tree.name, filter=anonymous)


# -- manifest ----------------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings as `|` blocks, so description and caveats stay readable."""


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _represent_text)


def render_manifest(
    template: Mapping[str, Any],
    archives: Sequence[Archive],
    *,
    homepage: str,
    base_url: str | None = None,
    require_all: bool = False,
) -> dict[str, Any]:
    """The krew manifest for `archives`: the template's platforms that have an archive, in template order."""
    if not archives:
        raise ReleaseError("no archives given")
    versions = {a.version for a in archives}
    if len(versions) != 1:
        raise ReleaseError(f"the archives are of different versions: {', '.join(sorted(versions))}")
    (version,) = versions
    base = (base_url or f"{homepage.rstrip('/')}/releases/download/{version}").rstrip("/")
    by_platform: dict[tuple[str, str], Archive] = {}
    for archive in archives:
        key = (archive.os, archive.arch)
        if key in by_platform:
            raise ReleaseError(f"two archives for {archive.os}/{archive.arch}")
        by_platform[key] = archive

    spec = template["spec"]
    platforms = []
    for entry in spec["platforms"]:
        labels = entry["selector"]["matchLabels"]
        key = (str(labels["os"]), str(labels["arch"]))
        if key not in by_platform:
            if require_all:
                raise ReleaseError(f"no archive for {key[0]}/{key[1]}")
            continue
        archive = by_platform.pop(key)
        platforms.append(
            {
                "selector": entry["selector"],
                "uri": f"{base}/{archive.path.name}",
                "sha256": archive.sha256(),
                "files": entry["files"],
                "bin": entry["bin"],
            }
        )
    if by_platform:
        unknown = ", ".join(f"{os_name}/{arch}" for os_name, arch in by_platform)
        raise ReleaseError(f"{TEMPLATE.relative_to(REPO)} has no platform for {unknown}")
    rendered_spec = {"version": version, "homepage": homepage, **spec, "platforms": platforms}
    return {**template, "spec": rendered_spec}


def dump_manifest(manifest: Mapping[str, Any]) -> str:
    header = (
        f"# Generated by scripts/release.py from {TEMPLATE.relative_to(REPO)} "
        f"for {manifest['spec']['version']}.\n"
    )
    return header + yaml.dump(dict(manifest), Dumper=_Dumper, sort_keys=False, width=100)


def write_manifest(
    archives: Sequence[Archive], *, homepage: str, base_url: str | None, require_all: bool, out: Path | None
) -> Path:
    template = yaml.safe_load(TEMPLATE.read_text())
    manifest = render_manifest(
        template, archives, homepage=homepage, base_url=base_url, require_all=require_all
    )
    target = out or archives[0].path.parent / f"{template['metadata']['name']}.yaml"
    target.write_text(dump_manifest(manifest))
    return target


# -- command line ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    build_cmd = commands.add_parser("build", help="build this platform's archive")
    build_cmd.add_argument("--version", help="assert the release version (e.g. the git tag)")
    build_cmd.add_argument(
        "--dist", type=Path, default=REPO / "dist", help="output directory (default dist/)"
    )
    build_cmd.add_argument(
        "--work", type=Path, default=REPO / "build" / "pyinstaller", help="PyInstaller's work directory"
    )

    manifest_cmd = commands.add_parser("manifest", help="render the krew manifest for release archives")
    manifest_cmd.add_argument("archives", nargs="+", type=Path, metavar="ARCHIVE")
    manifest_cmd.add_argument("--homepage", required=True, help="the project's home page (spec.homepage)")
    manifest_cmd.add_argument("--base-url", help="where the archives are downloaded from")
    manifest_cmd.add_argument("--version", help="assert the release version (e.g. the git tag)")
    manifest_cmd.add_argument(
        "--require-all", action="store_true", help="fail unless every platform of the template has an archive"
    )
    manifest_cmd.add_argument(
        "--out", type=Path, help="manifest path (default: capc.yaml next to the archives)"
    )

    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            version = package_version(args.version)
            archive = build(args.dist.resolve(), args.work.resolve(), version)
            print(f"{archive.path}\nsha256 {archive.sha256()}")
        else:
            archives = [Archive.parse(path) for path in args.archives]
            if args.version is not None and any(a.version != args.version for a in archives):
                raise ReleaseError(f"the archives are not all of version {args.version}")
            path = write_manifest(
                archives,
                homepage=args.homepage,
                base_url=args.base_url,
                require_all=args.require_all,
                out=args.out,
            )
            print(path)
    except (ReleaseError, OSError, subprocess.CalledProcessError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
