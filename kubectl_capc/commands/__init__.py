"""Sub-command groups of `kubectl capc`, each a Typer app that `kubectl_capc.cli` mounts."""
