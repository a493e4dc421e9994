"""Kubeconfig files found and merged by kubectl's rules, without importing the kubernetes library.

The rules, as k8s.io/client-go `clientcmd` applies them:
- `--kubeconfig FILE` uses only that file, which must exist;
- otherwise `$KUBECONFIG` lists files separated by `os.pathsep`; empty entries and repeats are dropped and
  missing files are skipped;
- otherwise `~/.kube/config`, which may be absent;
- the first file to define a cluster, user or context name wins, with its whole entry: a later file's
  entry of the same name is ignored, even its fields the first one lacks;
- `current-context` comes from the first file that sets it;
- relative file references (CA, client certificate and key, token file, an exec command with a path)
  resolve against the directory of the file that holds them.

Parsing and merging are pure; only `load_kubeconfig` reads files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kubectl_capc.domain.errors import ConfigError

__all__ = [
    "DEFAULT_NAMESPACE",
    "Kubeconfig",
    "KubeconfigFile",
    "ResolvedContext",
    "kubeconfig_paths",
    "load_kubeconfig",
    "merge_kubeconfigs",
    "parse_kubeconfig",
]

DEFAULT_NAMESPACE = "default"

# Section name in the file -> key holding each named entry's body.
_SECTIONS: Mapping[str, str] = {"clusters": "cluster", "users": "user", "contexts": "context"}

# Fields holding file paths that kubectl resolves against the kubeconfig file's directory.
_PATH_FIELDS: Mapping[str, tuple[str, ...]] = {
    "clusters": ("certificate-authority",),
    "users": ("client-certificate", "client-key", "tokenFile"),
    "contexts": (),
}

_HOW_TO_LIST = "list them with `kubectl config get-contexts`"
_HOW_TO_ADD_CONTEXT = "add one with `kubectl config set-context` or pass --kubeconfig FILE"

Entries = Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class KubeconfigFile:
    """One parsed kubeconfig file: its entries by section and name, with local paths made absolute."""

    path: Path
    current_context: str
    clusters: Entries
    users: Entries
    contexts: Entries


@dataclass(frozen=True)
class ResolvedContext:
    """Where a command will talk to: names and addresses only, never credentials."""

    context: str
    cluster: str
    server: str
    user: str
    namespace: str


@dataclass(frozen=True)
class Kubeconfig:
    """The merged view of all kubeconfig files, as kubectl would see it."""

    searched: tuple[Path, ...]
    files: tuple[Path, ...]
    current_context: str
    clusters: Entries
    users: Entries
    contexts: Entries

    def describe(self) -> str:
        """Name the files this config came from, for error messages."""
        if self.files:
            return "kubeconfig " + ", ".join(str(path) for path in self.files)
        return "looked for " + ", ".join(str(path) for path in self.searched)

    def resolve(self, context: str | None = None, namespace: str | None = None) -> ResolvedContext:
        """Choose context (flag, else current-context) and namespace (flag, else context's, else default)."""
        if not self.files:
            raise ConfigError(
                f"no kubeconfig found: {self.describe()}",
                hint="pass --kubeconfig FILE or set KUBECONFIG to the files kubectl uses",
            )
        name = context or self.current_context
        if not name:
            if not self.contexts:
                raise ConfigError(f"{self.describe()} defines no contexts", hint=_HOW_TO_ADD_CONTEXT)
            raise ConfigError(
                f"no current-context is set in {self.describe()}",
                hint=f"pass --context NAME ({_HOW_TO_LIST}) or run `kubectl config use-context NAME`",
            )
        if name not in self.contexts:
            raise ConfigError(
                f"context {name!r} not found in {self.describe()}",
                hint=_suggest_contexts(self.contexts),
            )
        body = self.contexts[name]
        cluster_name = _text(body.get("cluster"))
        if cluster_name not in self.clusters:
            raise ConfigError(
                f"context {name!r} refers to cluster {cluster_name!r}, which is not in {self.describe()}",
                hint="add the cluster with `kubectl config set-cluster` or pick another --context",
            )
        server = _text(self.clusters[cluster_name].get("server"))
        if not server:
            raise ConfigError(
                f"cluster {cluster_name!r} of context {name!r} has no server in {self.describe()}",
                hint=f"set it with `kubectl config set-cluster {cluster_name} --server=URL`",
            )
        if not _is_server_url(server):
            raise ConfigError(
                f"server {server!r} of cluster {cluster_name!r} (context {name!r}) in {self.describe()} "
                "is not an https:// or http:// URL",
                hint=f"set it with `kubectl config set-cluster {cluster_name} --server=https://HOST:PORT`",
            )
        return ResolvedContext(
            context=name,
            cluster=cluster_name,
            server=server,
            user=_text(body.get("user")),
            namespace=namespace or _text(body.get("namespace")) or DEFAULT_NAMESPACE,
        )


def kubeconfig_paths(
    flag: str | None, environ: Mapping[str, str], home: Path
) -> tuple[tuple[Path, ...], bool]:
    """Return the files to read, in precedence order, and whether they were named explicitly."""
    if flag:
        return (Path(flag),), True
    listed = environ.get("KUBECONFIG", "")
    if listed:
        unique = dict.fromkeys(entry for entry in listed.split(os.pathsep) if entry)
        return tuple(Path(entry) for entry in unique), False
    return (home / ".kube" / "config",), False


def parse_kubeconfig(text: str, path: Path) -> KubeconfigFile:
    """Parse one kubeconfig file's text; `path` names it in errors and anchors its relative paths."""
    import yaml

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(
            f"kubeconfig {path} is not valid YAML: {_yaml_problem(err)}", hint="fix or remove the file"
        ) from err
    if document is None:
        document = {}
    if not isinstance(document, Mapping):
        raise ConfigError(
            f"kubeconfig {path} is not a kubeconfig: expected a mapping, got {type(document).__name__}",
            hint="fix or remove the file",
        )
    base = Path(os.path.abspath(path)).parent
    sections = {section: _parse_section(document, section, path, base) for section in _SECTIONS}
    current = document.get("current-context") or ""
    if not isinstance(current, str):
        raise ConfigError(f"kubeconfig {path}: current-context must be a string", hint="fix the file")
    return KubeconfigFile(path=path, current_context=current, **sections)


def merge_kubeconfigs(files: Sequence[KubeconfigFile], searched: Sequence[Path] = ()) -> Kubeconfig:
    """Merge parsed files, earliest first: first definition of each name and first current-context win."""
    merged: dict[str, dict[str, Mapping[str, Any]]] = {section: {} for section in _SECTIONS}
    current = ""
    for parsed in files:
        current = current or parsed.current_context
        for section, entries in merged.items():
            for name, body in getattr(parsed, section).items():
                entries.setdefault(name, body)
    return Kubeconfig(
        searched=tuple(searched),
        files=tuple(parsed.path for parsed in files),
        current_context=current,
        **merged,
    )


def load_kubeconfig(
    flag: str | None = None,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> Kubeconfig:
    """Read and merge the kubeconfig files kubectl would use for the given `--kubeconfig` value."""
    paths, explicit = kubeconfig_paths(
        flag, os.environ if environ is None else environ, Path.home() if home is None else home
    )
    parsed: list[KubeconfigFile] = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as err:
            if explicit:
                raise ConfigError(
                    f"kubeconfig {path} does not exist",
                    hint="pass an existing file to --kubeconfig",
                ) from err
            continue
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(
                f"cannot read kubeconfig {path}: {_reason(err)}", hint="check the file and its permissions"
            ) from err
        parsed.append(parse_kubeconfig(text, path))
    return merge_kubeconfigs(parsed, searched=paths)


def _parse_section(document: Mapping[str, Any], section: str, path: Path, base: Path) -> Entries:
    raw = document.get(section)
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise ConfigError(f"kubeconfig {path}: {section} must be a list", hint="fix the file")
    body_key = _SECTIONS[section]
    entries: dict[str, Mapping[str, Any]] = {}
    for item in raw:
        if not isinstance(item, Mapping):
            raise ConfigError(
                f"kubeconfig {path}: every entry of {section} must be a mapping", hint="fix the file"
            )
        name = item.get("name") or ""
        body = item.get(body_key) or {}
        if not isinstance(name, str) or not isinstance(body, Mapping):
            raise ConfigError(
                f"kubeconfig {path}: {section} entry {name!r} needs a string name and a {body_key} mapping",
                hint="fix the file",
            )
        if name in entries:
            raise ConfigError(
                f"kubeconfig {path}: {section} has two entries named {name!r}",
                hint="remove or rename one",
            )
        entries[name] = _absolute_paths(section, body, base)
    return entries


def _absolute_paths(section: str, body: Mapping[str, Any], base: Path) -> Mapping[str, Any]:
    resolved = dict(body)
    for field in _PATH_FIELDS[section]:
        value = resolved.get(field)
        if isinstance(value, str) and value and not os.path.isabs(value):
            resolved[field] = str(base / value)
    exec_config = resolved.get("exec")
    if section == "users" and isinstance(exec_config, Mapping):
        command = exec_config.get("command")
        # A bare command name is looked up on PATH; only a command with a path is file-relative.
        if isinstance(command, str) and os.sep in command and not os.path.isabs(command):
            resolved["exec"] = {**exec_config, "command": str(base / command)}
    return resolved


def _is_server_url(server: str) -> bool:
    """kubectl takes `https://host:port`, or a bare `host:port` meaning https; a space, another scheme or
    a malformed port is no server address."""
    if any(char.isspace() for char in server):
        return False
    try:
        parts = urlsplit(server if "://" in server else f"https://{server}")
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _suggest_contexts(contexts: Entries) -> str:
    if not contexts:
        return _HOW_TO_ADD_CONTEXT
    names = sorted(contexts)
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return f"pass --context with one of: {shown}"


def _yaml_problem(err: Exception) -> str:
    """Describe a YAML error by position only: PyYAML's own text quotes the line, which may hold a token."""
    import yaml

    if isinstance(err, yaml.MarkedYAMLError) and err.problem_mark is not None:
        mark = err.problem_mark
        return f"{err.problem} at line {mark.line + 1}, column {mark.column + 1}"
    return type(err).__name__


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _reason(err: BaseException) -> str:
    return err.strerror if isinstance(err, OSError) and err.strerror else str(err)
