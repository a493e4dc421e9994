"""The `kubectl capc` command tree.

Each command lives in its own module, imported only when the command runs (or its help is shown): the
table below names it, with the first sentence of its help for `kubectl capc --help`
(`tests/unit/cli/test_lazy.py` checks the sentences against the commands). Keep module-level imports to
typer and this package's light modules: the kubernetes client, cs and deepdiff each cost hundreds of
milliseconds, so commands import them where they use them.
"""

from __future__ import annotations

import typer

from kubectl_capc.cli.lazy import LazyCommand, LazyGroup

__all__ = ["COMMANDS", "PROG_NAME", "app"]

# How users call the plugin; help and errors show this instead of the script's path.
PROG_NAME = "kubectl capc"

COMMANDS = {
    "image-upgrade": LazyCommand(
        "kubectl_capc.cli.upgrade",
        "image_upgrade",
        "Upgrade a CAPC cluster to a Kubernetes version: new node image and machine templates, control "
        "plane first, then MachineDeployments; one minor at a time.",
    ),
    "validate": LazyCommand(
        "kubectl_capc.cli.validate",
        "validate",
        "Check that clusters can be upgraded: cluster state, credentials, CloudStack zones, templates, "
        "offerings, the target version and your permissions.",
    ),
    "status": LazyCommand(
        "kubectl_capc.cli.status",
        "status",
        "Show how far each rollout got and, for every machine that is not progressing, why: a drain held "
        "by a PodDisruptionBudget, a VM in Error, a node that never joined, a template not ready in its "
        "zone, volumes not detached, MachineHealthCheck remediation.",
    ),
    "rollback": LazyCommand(
        "kubectl_capc.cli.rollback",
        "rollback",
        "Roll back the last upgrade recorded on a cluster's MachineDeployments, and on its control plane "
        "where Kubernetes allows it: after an image-only or same-minor change, or before its minor "
        "upgrade has completed.",
    ),
    "history": LazyCommand(
        "kubectl_capc.cli.history",
        "history",
        "Show the upgrades and rollbacks recorded on a cluster's control plane and MachineDeployments, "
        "newest first; without CLUSTER, of every cluster in the namespace (-A: in all), or those -l "
        "selects.",
    ),
    "cleanup": LazyCommand(
        "kubectl_capc.cli.cleanup",
        "cleanup",
        "Delete the cluster's CloudStackMachineTemplates that no KubeadmControlPlane, MachineDeployment, "
        "MachineSet or Machine uses any more (e.g. those an upgrade replaced).",
    ),
    "version": LazyCommand(
        "kubectl_capc.cli.version",
        "version",
        "Print the versions of the plugin, Python, and the Kubernetes and CloudStack client libraries.",
    ),
    "context": LazyCommand(
        "kubectl_capc.cli.context",
        "context",
        "Show the context, server and namespace that commands will use, without contacting the server.",
    ),
    "describe": LazyCommand(
        "kubectl_capc.cli.describe",
        "describe",
        "Show clusters as a tree: control plane, MachineDeployments, versions, images, failure domains.",
    ),
    "image": LazyCommand(
        "kubectl_capc.cli.image",
        "image_app",
        "Find, register and build the CloudStack templates (node images) that CAPC machines boot from.",
    ),
}
"""Every command, in the order `--help` lists them."""

_Group = LazyGroup.with_table(COMMANDS)

app = typer.Typer(
    cls=_Group,
    help=(
        "Upgrade Cluster API Provider CloudStack (CAPC) workload clusters safely.\n\n"
        "Flags go after the command name, e.g. `kubectl capc context --context NAME -n NAMESPACE`: "
        "kubectl rejects flags placed before a plugin's name."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
_Group.bind(app)


@app.callback()
def _commands() -> None:
    """The group itself does nothing: each command is loaded from `COMMANDS` when it is used."""
