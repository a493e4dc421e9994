"""A kubeconfig `exec` credential plugin (client.authentication.k8s.io), run as kubectl runs it.

The command gets the kubeconfig's `args` and `env` on top of this process's environment, and
`KUBERNETES_EXEC_INFO`: an ExecCredential whose spec says whether it may prompt (stdin is a terminal
and `interactiveMode` is not `Never`) and, with `provideClusterInfo`, the cluster. It prints an
ExecCredential of the same apiVersion; its status holds a token or a client certificate and key, and
optionally when they expire. The answer is kept until then, or until the server refuses it (`expire`).
Its stderr is the user's; its stdout is never shown or logged: it holds the credential.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from kubectl_capc.domain.errors import ConfigError

__all__ = ["ExecAnswer", "ExecPlugin"]

_API_VERSIONS = frozenset(
    f"client.authentication.k8s.io/{version}" for version in ("v1", "v1beta1", "v1alpha1")
)
_MODES = frozenset({"Never", "IfAvailable", "Always"})
_EARLY = timedelta(seconds=10)
"""A credential this close to its expiry is asked for again rather than sent."""


@dataclass(frozen=True)
class ExecAnswer:
    """What the plugin printed: a bearer token, or a client certificate and key (PEM)."""

    token: str | None = field(default=None, repr=False)
    certificate: tuple[bytes, bytes] | None = field(default=None, repr=False)
    expires: datetime | None = None


class ExecPlugin:
    """Runs the plugin when no unexpired answer is kept; safe to call from several threads."""

    def __init__(
        self,
        *,
        command: str,
        args: tuple[str, ...],
        env: Mapping[str, str],
        api_version: str,
        interactive_mode: str,
        cluster: Mapping[str, Any] | None,
        install_hint: str,
        where: str,
    ) -> None:
        self.command, self.args, self.env = command, args, dict(env)
        self.api_version, self.interactive_mode = api_version, interactive_mode
        self.cluster, self.install_hint, self.where = cluster, install_hint, where
        self._lock = threading.Lock()
        self._answer: ExecAnswer | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any], cluster: Mapping[str, Any], where: str) -> ExecPlugin:
        """Check the kubeconfig's `exec` entry; `cluster` is what `provideClusterInfo` passes on."""
        api_version = str(config.get("apiVersion") or "")
        if api_version not in _API_VERSIONS:
            raise ConfigError(
                f"{where}: exec plugin apiVersion {api_version or '(none)'!r} is not one of "
                f"{', '.join(sorted(_API_VERSIONS))}",
                hint="fix the user's exec entry",
            )
        command = config.get("command")
        if not isinstance(command, str) or not command:
            raise ConfigError(f"{where}: the user's exec entry has no command", hint="fix the kubeconfig")
        mode = str(config.get("interactiveMode") or "IfAvailable")
        if mode not in _MODES:
            raise ConfigError(
                f"{where}: exec interactiveMode {mode!r} is not one of Never, IfAvailable, Always",
                hint="fix the user's exec entry",
            )
        env = {
            str(item.get("name")): str(item.get("value") or "")
            for item in config.get("env") or []
            if isinstance(item, Mapping) and item.get("name")
        }
        return cls(
            command=command,
            args=tuple(str(arg) for arg in config.get("args") or ()),
            env=env,
            api_version=api_version,
            interactive_mode=mode,
            cluster=cluster if config.get("provideClusterInfo") else None,
            install_hint=str(config.get("installHint") or ""),
            where=where,
        )

    def answer(self) -> ExecAnswer:
        """The kept answer while it is valid, else the plugin's new one."""
        with self._lock:
            if self._answer is None or _expired(self._answer):
                self._answer = self._run()
            return self._answer

    def expire(self, seen: ExecAnswer) -> None:
        """Forget `seen` (the server refused it), so that the next `answer` runs the plugin again."""
        with self._lock:
            if self._answer is seen:
                self._answer = None

    def _run(self) -> ExecAnswer:
        interactive = self.interactive_mode != "Never" and sys.stdin is not None and sys.stdin.isatty()
        if self.interactive_mode == "Always" and not interactive:
            raise ConfigError(f"{self.where}: the exec plugin {self.command} needs a terminal to prompt on")
        spec: dict[str, Any] = {"interactive": interactive}
        if self.cluster is not None:
            spec["cluster"] = dict(self.cluster)
        info = {"apiVersion": self.api_version, "kind": "ExecCredential", "spec": spec}
        environ = {**os.environ, **self.env, "KUBERNETES_EXEC_INFO": json.dumps(info)}
        try:
            done = subprocess.run(  # noqa: S603 - the command the user's kubeconfig names, as kubectl runs it
                [self.command, *self.args], env=environ, stdout=subprocess.PIPE, check=False,
                stdin=None if interactive else subprocess.DEVNULL,
            )  # fmt: skip
        except OSError as err:
            reason = err.strerror or type(err).__name__
            raise ConfigError(
                f"{self.where}: cannot run the exec plugin {self.command}: {reason}",
                hint=self.install_hint or "install it, or fix the user's exec command",
            ) from None
        if done.returncode != 0:
            raise ConfigError(f"{self.where}: the exec plugin {self.command} exited {done.returncode}")
        return self._parse(done.stdout)

    def _parse(self, output: bytes) -> ExecAnswer:
        problem = f"{self.where}: the exec plugin {self.command} printed no usable ExecCredential"
        try:
            document = json.loads(output)
        except ValueError:
            raise ConfigError(problem) from None
        if not isinstance(document, Mapping) or document.get("kind") != "ExecCredential":
            raise ConfigError(problem)
        if document.get("apiVersion") != self.api_version:
            raise ConfigError(f"{problem}: its apiVersion is not {self.api_version}")
        status = document.get("status")
        status = status if isinstance(status, Mapping) else {}
        expires = _timestamp(status.get("expirationTimestamp"), problem)
        token = status.get("token")
        cert, key = status.get("clientCertificateData"), status.get("clientKeyData")
        if isinstance(token, str) and token:
            return ExecAnswer(token=token, expires=expires)
        if isinstance(cert, str) and isinstance(key, str) and cert and key:
            return ExecAnswer(certificate=(cert.encode(), key.encode()), expires=expires)
        raise ConfigError(f"{problem}: its status has neither a token nor a client certificate and key")


def _timestamp(value: Any, problem: str) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{problem}: expirationTimestamp is not an RFC 3339 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _expired(answer: ExecAnswer) -> bool:
    return answer.expires is not None and datetime.now(timezone.utc) >= answer.expires - _EARLY
