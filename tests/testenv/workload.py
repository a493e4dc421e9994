"""Workload clusters for the test bed: one real control plane per CAPI Cluster, as a cluster's own would be.

For every Cluster on the management apiserver this process starts, under DIR/workload/<ns>--<name>/, a
kube-apiserver with embedded etcd (the bed's own apiserver program), kube-controller-manager (the
controllers a drain exercises: deployment, replicaset, disruption, plus garbage collection and namespace
deletion, and node lifecycle, which lifts the not-ready taint of a Node
once it is Ready), kube-scheduler and KWOK, all of the pinned Kubernetes release, and writes the admin
kubeconfig to the Secret `<cluster>-kubeconfig` (key `value`) as CAPI does. A Cluster that goes away
takes its control plane and Secret with it. Machines of the cluster get CloudStackMachines
(`workload_infra`) and Nodes (`workload_nodes`). With `--namespace-selector` only the Clusters of the
namespaces it selects get one (the pytest beds, where most tests need no workload cluster).

Every process is started from this process's main thread with a parent-death signal, so it dies with
this process; `bed.down` also stops them by their pid files. Run it as a process (SIGTERM stops it):

    python -m tests.testenv.workload --dir DIR --capi v1beta1|v1beta2 [--namespace-selector LABELS]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.testenv import bed, gobuild
from tests.testenv.rollout_status import CLUSTER_NAME_LABEL, PROFILES
from tests.testenv.workload_infra import InfraKeeper
from tests.testenv.workload_nodes import NodeKeeper

log = logging.getLogger("tests.testenv.workload")

POLL_SECONDS = 0.5
SECRET_TYPE = "cluster.x-k8s.io/secret"
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
CONTROLLERS = ",".join(
    f"{name}-controller"
    for name in ("deployment", "replicaset", "disruption", "garbage-collector", "namespace", "node-lifecycle")
)

WORKLOAD_RUNTIME_CONFIG = "resource.k8s.io/v1beta1=true"
OPT_IN_LABEL = "testenv.kubectl-capc/workload-clusters"
"""The namespace label the pytest beds select with `--namespace-selector` (value "true")."""


@dataclass
class Plane:
    """One running workload control plane."""

    namespace: str
    name: str
    dir: Path
    uid: str
    started_seconds: float = 0.0
    client: Any = field(default=None, repr=False)

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"


def plane_dir(bed_dir: Path, namespace: str, name: str) -> Path:
    return bed_dir / "workload" / f"{namespace}--{name}"


def start_plane(bed_dir: Path, namespace: str, name: str, uid: str, binaries: dict[str, Path]) -> Plane:
    """Start one workload control plane and return once its apiserver answers and KWOK runs."""
    started = time.monotonic()
    directory = plane_dir(bed_dir, namespace, name)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in ("endpoint", "kubeconfig"):
        (directory / stale).unlink(missing_ok=True)
    # A deprecated API version with a removal release (resource.k8s.io/v1beta1, gone in 1.38) is served,
    # as an older workload serves the versions its next releases remove.
    command = [str(binaries["apiserver"]), "-dir", str(directory), "-runtime-config", WORKLOAD_RUNTIME_CONFIG]
    proc = bed._spawn(directory, "apiserver", command, tied=True)
    bed._wait(
        f"workload kube-apiserver of {namespace}/{name}",
        lambda: bed._readyz(directory),
        proc,
        directory / "apiserver.log",
        timeout=90,
    )
    kubeconfig = str(directory / "kubeconfig")
    pki = directory / "pki"
    bed._spawn(
        directory,
        "controller-manager",
        [
            str(binaries["controller-manager"]),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--controllers={CONTROLLERS}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--concurrent-gc-syncs=2",
            "--v=0",
        ],
        tied=True,
    )
    bed._spawn(
        directory,
        "scheduler",
        [
            str(binaries["scheduler"]),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--v=0",
        ],
        tied=True,
    )
    bed._spawn(
        directory,
        "kwok",
        [
            str(binaries["kwok"]),
            f"--kubeconfig={kubeconfig}",
            f"--config={binaries['kwok-stages']}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
            "--node-lease-duration-seconds=40",
            "--server-address=",
        ],
        tied=True,
    )
    plane = Plane(namespace, name, directory, uid)
    plane.client = bed_client(plane.kubeconfig)
    plane.started_seconds = time.monotonic() - started
    return plane


def bed_client(kubeconfig: Path) -> Any:
    from kubernetes import config

    return config.new_client_from_config(config_file=str(kubeconfig))


def stop_plane(plane: Plane) -> None:
    bed.down(plane.dir)


def kubeconfig_secret(plane: Plane, capi: str) -> dict[str, Any]:
    """The Secret CAPI writes for a cluster's admin kubeconfig, owned by the Cluster."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": SECRET_TYPE,
        "metadata": {
            "name": f"{plane.name}-kubeconfig",
            "namespace": plane.namespace,
            "labels": {CLUSTER_NAME_LABEL: plane.name},
            "ownerReferences": [
                {
                    "apiVersion": f"cluster.x-k8s.io/{capi}",
                    "kind": "Cluster",
                    "name": plane.name,
                    "uid": plane.uid,
                    "controller": True,
                }
            ],
        },
        "data": {"value": base64.b64encode(plane.kubeconfig.read_bytes()).decode()},
    }


class Manager:
    """Keeps one control plane per Cluster and the Nodes of each cluster's Machines."""

    def __init__(self, bed_dir: Path, capi: str, namespace_selector: str = "") -> None:
        self.bed_dir, self.capi, self.namespace_selector = bed_dir, capi, namespace_selector
        self.mgmt = bed_client(bed_dir / "kubeconfig")
        self.binaries = gobuild.ensure_workload_binaries()
        self.planes: dict[tuple[str, str], Plane] = {}
        self.infra = InfraKeeper(self.mgmt, capi, bed_cloudstack(bed_dir))
        self.nodes = NodeKeeper(self.mgmt, capi, self.infra.release)

    def step(self) -> None:
        from kubernetes import client

        custom = client.CustomObjectsApi(self.mgmt)
        clusters = custom.list_cluster_custom_object("cluster.x-k8s.io", self.capi, "clusters")["items"]
        chosen = self._chosen_namespaces()
        present = {}
        for cluster in clusters:
            meta = cluster["metadata"]
            if not meta.get("deletionTimestamp") and (chosen is None or meta["namespace"] in chosen):
                present[(meta["namespace"], meta["name"])] = meta["uid"]
        for key in [k for k in self.planes if self.planes[k].uid != present.get(k)]:
            self._remove(self.planes.pop(key))
        for (namespace, name), uid in present.items():
            if (namespace, name) not in self.planes:
                self._add(namespace, name, uid)
        machines = custom.list_cluster_custom_object("cluster.x-k8s.io", self.capi, "machines")["items"]
        for machine in machines:
            if (
                machine["metadata"]["namespace"],
                (machine.get("spec") or {}).get("clusterName"),
            ) in self.planes:
                try:
                    self.infra.ensure(machine)
                except Exception as exc:  # one Machine's trouble must not stop the others
                    log.warning("CloudStackMachine of %s: %s", machine["metadata"]["name"], exc)
        joining = [
            m
            for m in machines
            if m["metadata"]["uid"] not in self.infra.failed | self.infra.errored
            or m["metadata"].get("deletionTimestamp")
        ]
        self.nodes.sync(joining, {key: plane.client for key, plane in self.planes.items()})

    def _chosen_namespaces(self) -> set[str] | None:
        """The namespaces whose Clusters get a control plane; None: all of them."""
        from kubernetes import client

        if not self.namespace_selector:
            return None
        found = client.CoreV1Api(self.mgmt).list_namespace(label_selector=self.namespace_selector)
        return {item.metadata.name for item in found.items}

    def _add(self, namespace: str, name: str, uid: str) -> None:
        try:
            plane = start_plane(self.bed_dir, namespace, name, uid, self.binaries)
        except bed.TestBedError:
            log.exception("workload control plane of %s/%s did not start", namespace, name)
            bed.down(plane_dir(self.bed_dir, namespace, name))
            raise
        self.planes[(namespace, name)] = plane
        try:
            self._put_secret(kubeconfig_secret(plane, self.capi))
        except Exception:
            log.exception("could not write the kubeconfig Secret of %s/%s", namespace, name)
        log.info("workload control plane of %s/%s up in %.1fs", namespace, name, plane.started_seconds)

    def _put_secret(self, body: dict[str, Any]) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        core = client.CoreV1Api(self.mgmt)
        meta = body["metadata"]
        try:
            core.create_namespaced_secret(meta["namespace"], body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            core.replace_namespaced_secret(meta["name"], meta["namespace"], body)

    def _remove(self, plane: Plane) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        stop_plane(plane)
        with contextlib.suppress(ApiException):
            client.CoreV1Api(self.mgmt).delete_namespaced_secret(f"{plane.name}-kubeconfig", plane.namespace)
        log.info("workload control plane of %s/%s stopped", plane.namespace, plane.name)

    def close(self) -> None:
        for plane in self.planes.values():
            stop_plane(plane)
        self.planes.clear()


def bed_cloudstack(bed_dir: Path) -> Any:
    """A `cs` client for the bed's CloudStack double, with the keys `up` wrote to cloudstack.env."""
    from cs import CloudStack

    values = dict(
        line.partition("=")[::2] for line in (bed_dir / "cloudstack.env").read_text().splitlines() if line
    )
    return CloudStack(
        values["CLOUDSTACK_ENDPOINT"],
        values["CLOUDSTACK_KEY"],
        values["CLOUDSTACK_SECRET"],
        poll_interval=0.05,
    )


def run(bed_dir: Path, capi: str, stop: threading.Event, namespace_selector: str = "") -> None:
    manager = Manager(bed_dir, capi, namespace_selector)
    log.info("keeping workload clusters for CAPI %s Clusters", capi)
    try:
        while not stop.is_set():
            try:
                manager.step()
            except bed.TestBedError:
                pass  # logged; retried on the next turn
            except Exception as exc:  # apiserver restarting, a transient error, ...
                log.warning("workload step failed (%s); retrying", exc)
            stop.wait(POLL_SECONDS)
    finally:
        manager.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.testenv.workload", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--dir", required=True, type=Path)
    parser.add_argument("--capi", choices=PROFILES, required=True)
    parser.add_argument("--namespace-selector", default="", help="only the Clusters of these namespaces")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    run(args.dir.resolve(), args.capi, stop, args.namespace_selector)
    return 0


if __name__ == "__main__":
    sys.exit(main())
