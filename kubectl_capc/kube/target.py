"""Which cluster a command talks to: the part of the global flags that the layers below the CLI see."""

from __future__ import annotations

from dataclasses import dataclass

from kubectl_capc.kube.kubeconfig import Kubeconfig, ResolvedContext, load_kubeconfig

__all__ = ["KubeTarget"]


@dataclass(frozen=True)
class KubeTarget:
    """Kubeconfig path, context and namespace (`None`: kubectl's default) and the request timeout."""

    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None
    request_timeout: float | None = None

    def load_kubeconfig(self) -> Kubeconfig:
        """The merged kubeconfig that the path or `$KUBECONFIG` selects."""
        return load_kubeconfig(self.kubeconfig)

    def resolve_context(self) -> ResolvedContext:
        """The context, server and namespace to use, without contacting the server."""
        return self.load_kubeconfig().resolve(self.context, self.namespace)
