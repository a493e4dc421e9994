"""Bad input is refused cleanly: a catalogue of wrong arguments, broken clusters and hostile files.

Every row runs `kubectl capc ...` as a user would (a subprocess, the test bed's kubeconfig, no terminal)
and must end with:
- the documented exit code (docs/exit-codes.md), never 70 and never a traceback;
- one `error: ...` line on stderr that names what is wrong and, after `;`, what to do (rows that
  report findings, like `validate`, put their check ID on stdout instead; the option parser's own
  errors show the usage line, as documented);
- no write: no create/update/patch/delete request reached the API server (its audit log; server-side
  dry runs are not writes), no register/copy/delete/upload/update/createTags call reached the
  CloudStack double (its call log), and no file below the row's working directory changed;
- no credential in the output.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from kubectl_capc.domain.errors import ExitCode
from kubectl_capc.kube.read import read_inventories
from tests.support.fixtures_capc import create_objects, render_cluster, tagged_api_client
from tests.support.upgrade_support import TWO_ZONES
from tests.testenv.bed import TestBed

pytestmark = pytest.mark.testbed  # its fixtures start beds through request.getfixturevalue

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "mycluster"

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
REVIEW_GROUPS = frozenset({"authorization.k8s.io", "authentication.k8s.io"})
CLOUDSTACK_WRITES = ("register", "copy", "delete", "upload", "update", "createtags")
KUBECONFIG_TOKEN = "kubeconfig-token-7f3c9d"  # in the malformed kubeconfig; must never be echoed

Objects = list[dict[str, Any]]

# -- the catalogue -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One bad input and its set-up. `argv` may use {ns} (the namespace of the scenes: a cluster named in
    `argv` is the scene of that name, see `scenes`), {files} (hostile files, see `write_files`) and
    {example} (a copy of examples/mycluster); `kubeconfig` names one of `write_kubeconfigs`."""

    id: str
    argv: tuple[str, ...]
    exit_code: ExitCode
    fragment: str
    kubeconfig: str = "bed"  # or the name of a file `write_kubeconfigs` writes
    on_stdout: bool = False  # a finding of `validate`: the check ID is on stdout
    parser: bool = False  # the option parser's own error (usage line + "Error: ...")
    both_profiles: bool = False  # also on the CAPI v1beta1 bed: the rows about a cluster's shape


def upgrade(cluster: str, *extra: str, to: str = "v1.29.3") -> tuple[str, ...]:
    """`image-upgrade` that would write if it got that far: `--yes`, no `--dry-run`."""
    return ("image-upgrade", cluster, "--to", to, "-n", "{ns}", "--yes", *extra)


def offline(*extra: str, cluster: str = "mycluster", to: str = "v1.29.3") -> tuple[str, ...]:
    return ("image-upgrade", cluster, "--to", to, *extra)


def register(cluster: str, *extra: str, version: str = "v1.29.9") -> tuple[str, ...]:
    return ("image", "register", "--cluster", cluster, "--version", version, "-n", "{ns}", *extra)


URL = ("--url", "http://127.0.0.1:1/images/ubuntu-2204-kube-v1.29.9.qcow2")
USAGE, CONFIG, PLAN, FINDINGS = ExitCode.USAGE, ExitCode.CONFIG, ExitCode.PLAN, ExitCode.FINDINGS
TARGET_HELP = "invalid target version"
NOT_A_SERVER = "is not an https:// or http:// URL"
LONG = "a" * 300
IMAGE_URL = "http://127.0.0.1:1/images/ubuntu-2204-kube-{version}.qcow2"

CASES = [
    # malformed versions
    Case("to-wildcard", upgrade("c1", to="1.29.x"), USAGE, f"{TARGET_HELP} '1.29.x'"),
    Case("to-major-only", upgrade("c1", to="v2"), USAGE, f"{TARGET_HELP} 'v2'"),
    Case("to-latest", upgrade("c1", to="latest"), USAGE, f"{TARGET_HELP} 'latest'"),
    Case("to-empty", upgrade("c1", to=""), USAGE, f"{TARGET_HELP} ''"),
    Case("to-pre-release", upgrade("c1", to="v1.29.3-rc.1"), USAGE, TARGET_HELP),
    Case("validate-to-latest", ("validate", "c1", "--to", "latest", "-n", "{ns}"), USAGE, "CAPC-U001"),
    Case("register-minor", register("c1", *URL, version="v1.29"), USAGE, "names a minor, not a release"),
    Case(
        "build-wildcard",
        ("image", "build", "--version", "1.29.x", "--os", "ubuntu-2204", "--image-builder-dir", "{files}"),
        USAGE,
        f"{TARGET_HELP} '1.29.x'",
    ),
    # downgrades
    Case("downgrade-minor", upgrade("c1", to="v1.27.9"), PLAN, "downgrade the control plane from v1.28.5"),
    Case("downgrade-patch", upgrade("c1", to="v1.28.4"), PLAN, "downgrade the control plane from v1.28.5"),
    Case(
        "downgrade-worker",
        upgrade("worker-ahead", to="v1.28.5"),
        PLAN,
        "downgrade MachineDeployment worker-ahead-md-0 from v1.28.6",
    ),
    Case("downgrade-offline", offline("-f", "{example}", to="v1.28.0"), PLAN, "downgrade the control plane"),
    Case(
        "validate-downgrade",
        ("validate", "c1", "--to", "v1.27", "-n", "{ns}"),
        FINDINGS,
        "CAPC-U002",
        on_stdout=True,
    ),
    # unknown cluster, namespace, context
    Case("unknown-cluster", upgrade("nope"), USAGE, 'cluster "nope" not found in namespace'),
    Case(
        "unknown-namespace",
        ("image-upgrade", "c1", "--to", "v1.29.3", "-n", "no-such-namespace", "--yes"),
        USAGE,
        'not found in namespace "no-such-namespace"',
    ),
    Case("unknown-context", (*upgrade("c1"), "--context", "nope"), CONFIG, "context 'nope' not found"),
    Case("rollback-unknown-cluster", ("rollback", "nope", "-n", "{ns}", "--yes"), USAGE, 'cluster "nope"'),
    Case("cleanup-unknown-cluster", ("cleanup", "nope", "-n", "{ns}", "--yes"), USAGE, 'cluster "nope"'),
    Case("register-unknown-cluster", register("nope", *URL), USAGE, 'cluster "nope" not found'),
    # malformed kubeconfig
    Case("kubeconfig-missing", upgrade("c1"), CONFIG, "does not exist", kubeconfig="no-such-file"),
    Case("kubeconfig-not-yaml", upgrade("c1"), CONFIG, "is not valid YAML", kubeconfig="not-yaml"),
    Case("kubeconfig-a-list", upgrade("c1"), CONFIG, "expected a mapping, got list", kubeconfig="a-list"),
    Case("kubeconfig-empty", upgrade("c1"), CONFIG, "defines no contexts", kubeconfig="empty"),
    Case("kubeconfig-no-current", upgrade("c1"), CONFIG, "no current-context", kubeconfig="no-current"),
    Case(
        "kubeconfig-no-cluster", upgrade("c1"), CONFIG, "which is not in kubeconfig", kubeconfig="no-cluster"
    ),
    Case("kubeconfig-server-text", upgrade("c1"), CONFIG, NOT_A_SERVER, kubeconfig="server-text"),
    Case("kubeconfig-server-port", upgrade("c1"), CONFIG, NOT_A_SERVER, kubeconfig="server-port"),
    Case(
        "kubeconfig-ca-not-pem",
        upgrade("c1"),
        CONFIG,
        "in the kubeconfig is not a PEM certificate",
        kubeconfig="ca-not-pem",
    ),
    # clusters the plugin cannot work on
    Case(
        "no-control-plane-ref",
        upgrade("no-cp-ref"),
        PLAN,
        "has no control plane reference",
        both_profiles=True,
    ),
    Case(
        "no-infrastructure-ref",
        upgrade("no-infra-ref"),
        PLAN,
        "has no infrastructure reference",
        both_profiles=True,
    ),
    Case(
        "control-plane-missing",
        upgrade("kcp-missing"),
        PLAN,
        "KubeadmControlPlane/kcp-missing-control-plane not found",
        both_profiles=True,
    ),
    Case(
        "infrastructure-missing",
        upgrade("csc-missing"),
        PLAN,
        "CloudStackCluster/csc-missing not found",
        both_profiles=True,
    ),
    Case(
        "cp-machine-template-missing",
        upgrade("cpt-missing"),
        PLAN,
        "CloudStackMachineTemplate/cpt-missing-control-plane not found",
        both_profiles=True,
    ),
    Case(
        "md-machine-template-missing",
        upgrade("mdt-missing"),
        PLAN,
        "CloudStackMachineTemplate/mdt-missing-md-0 not found",
        both_profiles=True,
    ),
    Case(
        "bootstrap-template-missing",
        upgrade("kct-missing"),
        PLAN,
        "KubeadmConfigTemplate/kct-missing-md-0 not found",
        both_profiles=True,
    ),
    Case(
        "control-plane-other-kind",
        upgrade("k3s-cp"),
        PLAN,
        "is not a KubeadmControlPlane",
        both_profiles=True,
    ),
    Case(
        "infrastructure-other-kind",
        upgrade("docker-infra"),
        PLAN,
        "is not a CloudStackCluster",
        both_profiles=True,
    ),
    Case("topology-managed", upgrade("topology"), PLAN, "is topology-managed", both_profiles=True),
    Case("paused", upgrade("paused"), PLAN, "is paused", both_profiles=True),
    Case(
        "rollback-no-control-plane-ref",
        ("rollback", "no-cp-ref", "-n", "{ns}", "--yes"),
        PLAN,
        "cannot roll back",
    ),
    Case(
        "rollback-topology-managed",
        ("rollback", "topology", "-n", "{ns}", "--yes"),
        PLAN,
        "is topology-managed",
    ),
    Case(
        "cleanup-topology-managed",
        ("cleanup", "topology", "-n", "{ns}", "--yes"),
        PLAN,
        "is topology-managed",
    ),
    # CloudStack credentials
    Case("secret-missing", upgrade("secret-missing"), CONFIG, "Secret {ns}/no-such-secret"),
    Case("secret-lacks-keys", upgrade("secret-no-keys"), CONFIG, "lacks api-key, secret-key"),
    Case("secret-api-url-text", upgrade("secret-bad-url"), CONFIG, "'not a url' in Secret"),
    Case("secret-api-url-ftp", upgrade("secret-ftp-url"), CONFIG, "is not an http(s) URL"),
    Case("register-secret-missing", register("secret-missing", *URL), CONFIG, "does not exist"),
    Case(
        "validate-secret-lacks-keys",
        ("validate", "secret-no-keys", "-n", "{ns}"),
        FINDINGS,
        "CAPC-S002",
        on_stdout=True,
    ),
    Case(
        "validate-secret-api-url",
        ("validate", "secret-bad-url", "-n", "{ns}"),
        FINDINGS,
        "CAPC-S003",
        on_stdout=True,
    ),
    # non-YAML and hostile files for -f
    Case("file-alias-bomb", offline("-f", "{files}/bomb"), USAGE, "nodes once aliases are expanded"),
    Case("file-huge-document", offline("-f", "{files}/huge-document"), USAGE, "is larger than 3 MiB"),
    Case("file-oversized", offline("-f", "{files}/oversized"), USAGE, "larger than 32 MiB"),
    Case("file-deep-nesting", offline("-f", "{files}/deep"), USAGE, "nested deeper than 64 levels"),
    Case("file-not-yaml", offline("-f", "{files}/broken"), USAGE, "broken.yaml: line 3"),
    Case("file-not-utf8", offline("-f", "{files}/binary"), USAGE, "not UTF-8 text"),
    Case("file-link-outside", offline("-f", "{files}/file-link"), USAGE, "symbolic link to"),
    Case("dir-link-outside", offline("-f", "{files}/dir-link"), USAGE, "symbolic link to"),
    Case("file-fifo", offline("-f", "{files}/fifo"), USAGE, "not a regular file"),
    Case("file-not-yaml-suffix", offline("-f", "{files}/notes.txt"), USAGE, "not a YAML file"),
    Case("file-missing", offline("-f", "{files}/no-such-dir"), USAGE, "no such file or directory"),
    Case("file-no-yaml-inside", offline("-f", "{files}/empty-dir"), USAGE, "no .yaml or .yml files"),
    Case("file-defined-twice", offline("-f", "{files}/twice"), USAGE, "is defined twice"),
    Case("file-unknown-cluster", offline("-f", "{example}", cluster="nope"), USAGE, "no Cluster nope"),
    Case("file-minor-target", offline("-f", "{example}", to="v1.29"), USAGE, "needs an exact version"),
    Case(
        "file-output-dir-overwrites",
        offline("-f", "{example}", "--output-dir", "{example}"),
        USAGE,
        "would overwrite",
    ),
    # names too long or not names at all
    Case("cluster-name-too-long", upgrade(LONG), USAGE, "is not a valid Cluster name"),
    Case("cluster-name-64", upgrade("c" * 64), USAGE, "is not a valid Cluster name"),
    Case("cluster-name-selector", upgrade("c1,metadata.name!=x"), USAGE, "is not a valid Cluster name"),
    Case("history-name-too-long", ("history", LONG, "-n", "{ns}"), USAGE, "is not a valid Cluster name"),
    Case(
        "namespace-too-long",
        ("image-upgrade", "c1", "--to", "v1.29.3", "-n", "n" * 64, "--yes"),
        USAGE,
        "is not a valid namespace name",
    ),
    Case("namespace-invalid", ("validate", "-n", "Bad_Namespace"), USAGE, "is not a valid namespace name"),
    Case("register-name-too-long", register("c1", *URL, "--name", "t" * 256), USAGE, "at most 255"),
    Case("register-name-empty", register("c1", *URL, "--name", ""), USAGE, "the template name is empty"),
    Case(
        "upgrade-image-too-long",
        upgrade("c1", "--image", "t" * 256),
        USAGE,
        "has 256 characters, CloudStack takes at most 255",
    ),
    Case(
        "upgrade-image-too-long-url-source",
        upgrade("c1", "--image", "t" * 256, "--image-url", IMAGE_URL, to="v1.29.77"),
        USAGE,
        "has 256 characters, CloudStack takes at most 255",
    ),
    Case("register-url-ftp", register("c1", "--url", "ftp://127.0.0.1/x.qcow2"), USAGE, "http(s) only"),
    Case("register-url-space", register("c1", "--url", "http://127.0.0.1/a b.qcow2"), USAGE, "whitespace"),
    Case(
        "register-file-missing", register("c1", "--file", "{files}/none.qcow2"), USAGE, "not a readable file"
    ),
    # conflicting or incomplete flags
    Case("validate-name-and-all", ("validate", "c1", "-A"), USAGE, "cannot be combined with -A"),
    Case("describe-name-and-all", ("describe", "c1", "-A"), USAGE, "cannot be combined with -A"),
    Case("register-two-sources", register("c1", *URL, "--prebuilt"), USAGE, "not --url and --prebuilt"),
    Case("register-no-source", register("c1"), USAGE, "give exactly one image source"),
    Case(
        "register-url-and-file",
        register("c1", *URL, "--file", "{files}/none.qcow2"),
        USAGE,
        "not --url and --file",
    ),
    Case(
        "register-file-and-prebuilt",
        register("c1", "--file", "{files}/none.qcow2", "--prebuilt"),
        USAGE,
        "not --file and --prebuilt",
    ),
    Case(
        "register-three-sources",
        register("c1", *URL, "--file", "{files}/none.qcow2", "--prebuilt"),
        USAGE,
        "not --url and --file and --prebuilt",
    ),
    Case(
        "upload-insecure-without-upload",
        register("c1", *URL, "--upload-insecure"),
        USAGE,
        "--upload-insecure is only for uploads; drop it, or upload with --file",
    ),
    Case(
        "upload-ca-file-without-build",
        upgrade("c1", "--upload-ca-file", "{files}/notes.txt"),
        USAGE,
        "--upload-ca-file is only for uploads; drop it, or upload with --image-source build",
    ),
    Case(
        "upload-ca-file-and-insecure",
        register("c1", "--file", "{files}/notes.txt", "--upload-ca-file", "/dev/null", "--upload-insecure"),
        USAGE,
        "--upload-ca-file conflicts with --upload-insecure",
    ),
    Case(
        "upload-ca-file-not-pem",
        register("c1", "--file", "{files}/notes.txt", "--upload-ca-file", "{files}/notes.txt"),
        USAGE,
        "cannot be read as PEM certificates",
    ),
    Case(
        "image-url-with-build-source",
        upgrade("c1", "--image-source", "build", "--image-url", IMAGE_URL, "--image-builder-dir", "{files}"),
        USAGE,
        "--image-url conflicts with --image-source build",
    ),
    Case(
        "image-builder-dir-with-url-source",
        upgrade("c1", "--image-url", IMAGE_URL, "--image-builder-dir", "{files}", to="v1.29.77"),
        USAGE,
        "--image-builder-dir conflicts with --image-source url",
    ),
    Case(
        "build-source-without-dir",
        upgrade("c1", "--image-source", "build", to="v1.29.77"),
        USAGE,
        "--image-source build needs --image-builder-dir",
    ),
    Case(
        "files-with-build-source",
        offline("-f", "{example}", "--image-source", "build", "--image-builder-dir", "{files}"),
        USAGE,
        "obtains node images for a live cluster",
    ),
    Case(
        "server-dry-run-without-files",
        upgrade("c1", "--server-dry-run"),
        USAGE,
        "give them with -f",
    ),
    Case(
        "output-dir-without-files", upgrade("c1", "--output-dir", "{files}/out"), USAGE, "give them with -f"
    ),
    Case(
        "files-with-url-source",
        offline("-f", "{example}", "--image-source", "url", "--image-url", "http://127.0.0.1/x.qcow2"),
        USAGE,
        "obtains node images for a live cluster",
    ),
    Case("url-source-without-url", upgrade("c1", "--image-source", "url"), USAGE, "needs --image-url"),
    Case(
        "image-url-with-existing-source",
        upgrade("c1", "--image-source", "existing", "--image-url", "http://127.0.0.1/x-{version}.qcow2"),
        USAGE,
        "--image-url conflicts with --image-source existing",
    ),
    Case(
        "prebuilt-base-url-without-prebuilt-source",
        upgrade("c1", "--prebuilt-base-url", "http://127.0.0.1/mirror"),
        USAGE,
        "--prebuilt-base-url conflicts with --image-source existing",
    ),
    Case(
        "register-prebuilt-base-url-with-url",
        register("c1", *URL, "--prebuilt-base-url", "http://127.0.0.1/mirror"),
        USAGE,
        "--prebuilt-base-url conflicts with --url",
    ),
    Case(
        "image-url-with-prebuilt-source",
        upgrade("c1", "--image-url", "http://127.0.0.1/x-{version}.qcow2", "--image-source", "prebuilt"),
        USAGE,
        "--image-url conflicts with --image-source prebuilt",
    ),
    Case(
        "image-url-alone-ftp",
        upgrade("c1", "--image-url", "ftp://127.0.0.1/x-{version}.qcow2", to="v1.29.77"),
        USAGE,
        "http(s) only",
    ),
    Case(
        "files-with-image-url-alone",
        offline("-f", "{example}", "--image-url", "http://127.0.0.1/x.qcow2"),
        USAGE,
        "obtains node images for a live cluster",
    ),
    Case("timeout-unknown-phase", upgrade("c1", "--timeout", "cp=5m"), USAGE, "unknown phase 'cp'"),
    Case("unknown-flag", upgrade("c1", "--bogus"), USAGE, "No such option: --bogus", parser=True),
    Case("output-format", upgrade("c1", "-o", "xml"), USAGE, "'xml' is not an output format", parser=True),
    Case(
        "request-timeout", upgrade("c1", "--request-timeout", "soon"), USAGE, "is not a duration", parser=True
    ),
    Case(
        "image-source",
        upgrade("c1", "--image-source", "s3"),
        USAGE,
        "'s3' is not an image source",
        parser=True,
    ),
    Case(
        "upgrade-image-url-ftp",
        upgrade(
            "c1", "--image-source", "url", "--image-url", "ftp://127.0.0.1/x-{version}.qcow2", to="v1.29.77"
        ),
        USAGE,
        "http(s) only",
    ),
    Case(
        "upgrade-empty-image",
        upgrade("c1", "--image", ""),
        USAGE,
        "--image",
    ),
    Case(
        "parallel-zero",
        upgrade("c1", "--parallel", "0"),
        USAGE,
        "--parallel must be at least 1",
    ),
]


# -- scenes: one namespace of clusters per CAPI profile -----------------------------------------------


def _find(objects: Objects, kind: str, suffix: str = "") -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(suffix))


def _without(kind: str, suffix: str = "") -> Callable[[Objects, str], Objects]:
    def edit(objects: Objects, ns: str) -> Objects:
        gone = _find(objects, kind, suffix)
        return [o for o in objects if o is not gone]

    return edit


def _cluster_spec(change: Callable[[dict[str, Any]], None]) -> Callable[[Objects, str], Objects]:
    def edit(objects: Objects, ns: str) -> Objects:
        change(_find(objects, "Cluster")["spec"])
        return objects

    return edit


def _worker_version(version: str) -> Callable[[Objects, str], Objects]:
    def edit(objects: Objects, ns: str) -> Objects:
        _find(objects, "MachineDeployment")["spec"]["template"]["spec"]["version"] = version
        _find(objects, "CloudStackMachineTemplate", "md-0")["spec"]["template"]["spec"]["template"] = {
            "name": f"ubuntu-2204-kube-{version}"
        }
        return objects

    return edit


def _credentials(secret: str) -> Callable[[Objects, str], Objects]:
    def edit(objects: Objects, ns: str) -> Objects:
        for domain in _find(objects, "CloudStackCluster")["spec"]["failureDomains"]:
            domain["acsEndpoint"] = {"name": secret, "namespace": ns}
        return objects

    return edit


@dataclass(frozen=True)
class Scene:
    """A cluster as rendered from the upstream template (`render` adds arguments), then `edit`ed."""

    edit: Callable[[Objects, str], Objects] = lambda objects, ns: objects
    render: dict[str, Any] = field(default_factory=dict)
    secret: dict[str, str] | None = None  # a Secret `<cluster>-creds` the failure domains use


def scenes(bed: TestBed) -> dict[str, Scene]:
    good = {
        "api-url": bed.cloudstack["CLOUDSTACK_ENDPOINT"],
        "api-key": bed.cloudstack["CLOUDSTACK_KEY"],
        "secret-key": bed.cloudstack["CLOUDSTACK_SECRET"],
    }
    return {
        "c1": Scene(),
        "worker-ahead": Scene(_worker_version("v1.28.6")),
        "no-cp-ref": Scene(_cluster_spec(lambda spec: spec.pop("controlPlaneRef"))),
        "no-infra-ref": Scene(_cluster_spec(lambda spec: spec.pop("infrastructureRef"))),
        "kcp-missing": Scene(_without("KubeadmControlPlane")),
        "csc-missing": Scene(_without("CloudStackCluster")),
        "cpt-missing": Scene(_without("CloudStackMachineTemplate", "control-plane")),
        "mdt-missing": Scene(_without("CloudStackMachineTemplate", "md-0")),
        "kct-missing": Scene(_without("KubeadmConfigTemplate", "md-0")),
        "k3s-cp": Scene(_cluster_spec(lambda spec: spec["controlPlaneRef"].update(kind="K3sControlPlane"))),
        "docker-infra": Scene(
            _cluster_spec(lambda spec: spec["infrastructureRef"].update(kind="DockerCluster"))
        ),
        "topology": Scene(render={"topology_class": "quick-start"}),
        "paused": Scene(_cluster_spec(lambda spec: spec.update(paused=True))),
        "secret-missing": Scene(_credentials("no-such-secret")),
        "secret-no-keys": Scene(secret={"api-url": good["api-url"]}),
        "secret-bad-url": Scene(secret={**good, "api-url": "not a url"}),
        "secret-ftp-url": Scene(secret={**good, "api-url": "ftp://127.0.0.1/client/api"}),
    }


def create_scenes(bed: TestBed, namespace: str) -> None:
    from kubernetes import client

    core = client.CoreV1Api(bed.api_client())
    for name, scene in scenes(bed).items():
        objects = render_cluster(
            name,
            namespace,
            capi=bed.capi,
            zones=TWO_ZONES,
            md_count=2,
            control_plane_offering="Large Instance",
            worker_offering="Medium Instance",
            **scene.render,
        )
        if scene.secret is not None:
            secret = f"{name}-creds"
            core.create_namespaced_secret(
                namespace, {"metadata": {"name": secret}, "stringData": scene.secret}
            )
            objects = _credentials(secret)(objects, namespace)
        create_objects(bed.api_client(), scene.edit(objects, namespace))
    deadline = time.monotonic() + 120
    while not _settled(bed, namespace, set(scenes(bed))):
        assert time.monotonic() < deadline, "the scene clusters did not settle"
        time.sleep(0.3)


def _settled(bed: TestBed, namespace: str, names: set[str]) -> bool:
    found = {
        inventory.name: inventory for inventory in read_inventories(bed.api_client(), namespace=namespace)
    }
    return set(found) == names and not any(inventory.rollout_in_progress() for inventory in found.values())


# -- hostile files and malformed kubeconfigs -----------------------------------------------------------


def write_files(root: Path) -> None:
    """The -f inputs: each hostile case in a directory of its own."""
    example = Path(shutil.copytree(EXAMPLE, root / "example"))
    files = root / "files"

    def put(relative: str, content: str | bytes) -> Path:
        path = files / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path

    # Nine levels of ten aliases each: 10**9 nodes once expanded, nine short lines as written.
    bomb = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    bomb += [f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 10)}]" for n in range(1, 9)]
    put("bomb/bomb.yaml", "\n".join(bomb) + "\n")
    put("huge-document/huge.yaml", "kind: ConfigMap\ndata:\n  blob: " + "x" * (4 * 1024 * 1024) + "\n")
    with put("oversized/big.yaml", "").open("r+b") as sparse:
        sparse.truncate(33 * 1024 * 1024)
    put("deep/deep.yaml", "a: " + "[" * 100 + "]" * 100 + "\n")
    put("broken/broken.yaml", "apiVersion: v1\nkind: [unclosed\n  : : :\n")
    put("binary/binary.yaml", b"\xff\xfe\x00\x01 not text")
    (files / "file-link").mkdir()
    (files / "file-link" / "cluster.yaml").symlink_to(example / "cluster.yaml")
    (files / "dir-link").mkdir()
    (files / "dir-link" / "manifests").symlink_to(example, target_is_directory=True)
    (files / "fifo").mkdir()
    os.mkfifo(files / "fifo" / "pipe.yaml")
    put("notes.txt", "not a manifest\n")
    (files / "empty-dir").mkdir()
    shutil.copytree(EXAMPLE, files / "twice" / "a")
    shutil.copytree(EXAMPLE, files / "twice" / "b")


def write_kubeconfigs(directory: Path, bed: TestBed) -> None:
    directory.mkdir()
    good = yaml.safe_load(bed.kubeconfig.read_text())

    def with_server(server: str) -> str:
        config = copy.deepcopy(good)
        config["clusters"][0]["cluster"]["server"] = server
        return yaml.safe_dump(config)

    def with_certificate_authority(data: bytes) -> str:
        config = copy.deepcopy(good)
        cluster = config["clusters"][0]["cluster"]
        for key in ("certificate-authority", "insecure-skip-tls-verify"):
            cluster.pop(key, None)
        cluster["certificate-authority-data"] = base64.b64encode(data).decode()
        return yaml.safe_dump(config)

    user = {"name": "u", "user": {"token": KUBECONFIG_TOKEN}}
    no_cluster = {"contexts": [{"name": "x", "context": {"cluster": "gone", "user": "u"}}], "users": [user]}
    texts = {
        "not-yaml": f"apiVersion: v1\nusers:\n- name: u\n  user: {{token: {KUBECONFIG_TOKEN}, : }}\n",
        "a-list": "- apiVersion: v1\n- kind: Config\n",
        "empty": "",
        "no-current": yaml.safe_dump({**good, "current-context": ""}),
        "no-cluster": yaml.safe_dump({"apiVersion": "v1", "current-context": "x", **no_cluster}),
        "server-text": with_server("not a url"),
        "server-port": with_server("https://127.0.0.1:99999"),
        "ca-not-pem": with_certificate_authority(b"not a certificate\n"),
    }
    for name, text in texts.items():
        (directory / name).write_text(text)


# -- watching for writes -------------------------------------------------------------------------------


class WriteWatch:
    """What the command under test changed: API-server writes (from the audit log), CloudStack write
    calls (from the double's call log) and files below `root` (by size and modification time)."""

    def __init__(self, bed: TestBed, root: Path) -> None:
        self.bed = bed
        self.root = root
        self.audit_offset = bed.audit_log.stat().st_size
        self.calls_offset = len(self._calls())
        self.files = self._files()

    def apiserver_writes(self) -> list[str]:
        """Write requests since the start by the admin identity (the plugin's), except dry runs, access
        reviews (questions sent as a create, nothing is stored) and the rollout simulator's status
        updates, which the plugin never makes."""
        events, admin = self._events_until_marker()
        writes = []
        for event in events:
            ref = event.get("objectRef") or {}
            if (
                event["verb"] in WRITE_VERBS
                and event["user"]["username"] == admin
                and "dryRun=All" not in event["requestURI"]
                and ref.get("subresource") != "status"
                and ref.get("apiGroup") not in REVIEW_GROUPS
            ):
                writes.append(f"{event['verb']} {event['requestURI']}")
        return writes

    def cloudstack_writes(self) -> list[str]:
        calls = self._calls()[self.calls_offset :]
        return [c["command"] for c in calls if any(w in c["command"].lower() for w in CLOUDSTACK_WRITES)]

    def changed_files(self) -> list[str]:
        before, after = self.files, self._files()
        return sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))

    def _events_until_marker(self) -> tuple[list[dict[str, Any]], str]:
        """Completed requests since the start, and the admin user name, read once a request of our own
        is logged: by then every request of the finished command is logged too."""
        from kubernetes import client

        marker = f"bad-input-marker/{uuid.uuid4().hex}"
        client.CoreV1Api(tagged_api_client(self.bed.kubeconfig, marker)).list_namespace(limit=1)
        deadline = time.monotonic() + 10
        while True:
            with self.bed.audit_log.open("rb") as log:
                log.seek(self.audit_offset)
                lines = log.read().split(b"\n")[:-1]  # the last piece may be a line still being written
            events = [json.loads(line) for line in lines if line]
            done = [e for e in events if e.get("stage") == "ResponseComplete"]
            mine = [e for e in done if e.get("userAgent") == marker]
            if mine:
                return [e for e in done if e.get("userAgent") != marker], mine[0]["user"]["username"]
            assert time.monotonic() < deadline, "the audit log did not record the marker request"
            time.sleep(0.05)

    def _calls(self) -> list[dict[str, Any]]:
        response = requests.get(self.bed.admin_url("calls"), timeout=10)
        response.raise_for_status()
        calls: list[dict[str, Any]] = response.json()
        return calls

    def _files(self) -> dict[str, tuple[int, int]]:
        found = {}
        for directory, _, names in os.walk(self.root):
            for name in names:
                path = Path(directory, name)
                info = path.lstat()
                found[str(path.relative_to(self.root))] = (info.st_size, info.st_mtime_ns)
        return found


# -- running a row -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Catalogue:
    bed: TestBed
    namespace: str
    root: Path

    def argv(self, case: Case) -> list[str]:
        values = {
            "{ns}": self.namespace,
            "{files}": str(self.root / "files"),
            "{example}": str(self.root / "example"),
        }
        args = []
        for arg in case.argv:
            for token, value in values.items():
                arg = arg.replace(token, value)
            args.append(arg)
        kubeconfig = (
            self.bed.kubeconfig if case.kubeconfig == "bed" else self.root / "kubeconfigs" / case.kubeconfig
        )
        return [*args, "--kubeconfig", str(kubeconfig)]

    def run(self, case: Case) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG" and not k.startswith("CLOUDSTACK_")}
        return subprocess.run(
            [sys.executable, "-m", "kubectl_capc", *self.argv(case)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            stdin=subprocess.DEVNULL,
            cwd=self.root,
            env=env,
        )


def build_catalogue(bed: TestBed, root: Path) -> Catalogue:
    from kubernetes import client

    namespace = f"bad-input-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(bed.api_client()).create_namespace({"metadata": {"name": namespace}})
    create_scenes(bed, namespace)
    write_files(root)
    write_kubeconfigs(root / "kubeconfigs", bed)
    return Catalogue(bed, namespace, root)


@pytest.fixture(scope="module")
def catalogues(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Catalogue]]:
    """The catalogue of each CAPI profile a row ran on, built on first use; namespaces go at the end."""
    from kubernetes import client

    built: dict[str, Catalogue] = {}
    yield built
    for catalogue in built.values():
        client.CoreV1Api(catalogue.bed.api_client()).delete_namespace(catalogue.namespace)


def problems(case: Case, result: subprocess.CompletedProcess[str], namespace: str) -> list[str]:
    """How the outcome differs from the row: exit code, the one error line, the fragment, the fix."""
    found = []
    if result.returncode != case.exit_code:
        found.append(f"exit code {result.returncode}, expected {int(case.exit_code)}")
    fragment = case.fragment.replace("{ns}", namespace)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if case.on_stdout:
        if fragment not in result.stdout:
            found.append(f"{fragment!r} not on stdout")
        if any(line.startswith("error:") for line in lines):
            found.append("findings must not come with an error line")
    elif case.parser:
        if not lines or not lines[0].startswith("Usage: kubectl capc") or not lines[-1].startswith("Error: "):
            found.append("not the option parser's usage line and error")
        if fragment not in result.stderr:
            found.append(f"{fragment!r} not in the parser's error")
    elif len(lines) != 1 or not lines[0].startswith("error: "):
        found.append(f"stderr is not one `error:` line but {len(lines)} lines")
    elif fragment not in lines[0]:
        found.append(f"{fragment!r} not in the error line")
    elif "; " not in lines[0]:
        found.append("the error line says nothing after `;` about what to do")
    return found


ROWS = [pytest.param("v1beta2", case, id=case.id) for case in CASES] + [
    pytest.param("v1beta1", case, id=f"v1beta1-{case.id}") for case in CASES if case.both_profiles
]


def catalogue_of(
    profile: str,
    catalogues: dict[str, Catalogue],
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Catalogue:
    if profile not in catalogues:
        bed: TestBed = request.getfixturevalue(f"testenv_{profile}")
        catalogues[profile] = build_catalogue(bed, tmp_path_factory.mktemp(f"bad-input-{profile}"))
    return catalogues[profile]


@pytest.mark.parametrize(("profile", "case"), ROWS)
def test_bad_input_is_refused_with_one_line_a_documented_code_and_no_writes(
    profile: str,
    case: Case,
    catalogues: dict[str, Catalogue],
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    catalogue = catalogue_of(profile, catalogues, request, tmp_path_factory)
    watch = WriteWatch(catalogue.bed, catalogue.root)

    result = catalogue.run(case)

    output = result.stdout + result.stderr
    assert result.returncode != ExitCode.INTERNAL and "Traceback" not in output, output
    for secret in (catalogue.bed.cloudstack["CLOUDSTACK_KEY"], catalogue.bed.cloudstack["CLOUDSTACK_SECRET"]):
        assert secret not in output, "a CloudStack key reached the output"
    assert KUBECONFIG_TOKEN not in output, "the kubeconfig's token reached the output"
    assert watch.apiserver_writes() == []
    assert watch.cloudstack_writes() == []
    assert watch.changed_files() == []
    found = problems(case, result, catalogue.namespace)
    assert found == [], f"{'; '.join(found)}\nstdout: {result.stdout}\nstderr: {result.stderr}"


def test_image_url_alone_plans_with_the_url_source(
    catalogues: dict[str, Catalogue],
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """`--image-url` without `--image-source` is not ignored: a release with no template anywhere is
    planned as obtainable from the URL, where the default source (existing) would block the plan."""
    catalogue = catalogue_of("v1beta2", catalogues, request, tmp_path_factory)
    watch = WriteWatch(catalogue.bed, catalogue.root)
    url = "http://127.0.0.1:1/images/ubuntu-2204-kube-{version}.qcow2"
    argv = ("image-upgrade", "c1", "--to", "v1.29.77", "-n", "{ns}", "--dry-run")

    result = catalogue.run(Case("url", (*argv, "--image-url", url, "-o", "json"), ExitCode.FINDINGS, ""))
    blocked = catalogue.run(Case("existing", argv, PLAN, ""))

    assert result.returncode == ExitCode.FINDINGS, result.stderr  # a dry run with changes pending
    document = json.loads(result.stdout)
    assert document["spec"]["imageSource"] == "url"
    ensure = [
        step for hop in document["status"]["hops"] for step in hop["steps"] if step["action"] == "EnsureImage"
    ]
    assert [(step["image"], step["source"]) for step in ensure] == [("ubuntu-2204-kube-v1.29.77", "url")]
    assert document["status"]["blockers"] == []
    assert blocked.returncode == ExitCode.PLAN, blocked.stderr
    assert "ubuntu-2204-kube-v1.29.77" in blocked.stderr, blocked.stderr
    assert watch.apiserver_writes() == []
    assert watch.cloudstack_writes() == []


def test_the_catalogue_is_large_and_covers_every_kind_of_bad_input() -> None:
    assert len(CASES) >= 40
    assert len({case.id for case in CASES}) == len(CASES)
    codes = {case.exit_code for case in CASES}
    assert {ExitCode.USAGE, ExitCode.CONFIG, ExitCode.PLAN} <= codes


def test_the_write_watch_sees_writes(testenv_v1beta2: TestBed, tmp_path: Path) -> None:
    """The zero-write checks can fail: a write by the admin identity, and a changed file, are seen."""
    from kubernetes import client

    (tmp_path / "kept.yaml").write_text("a: 1\n")
    watch = WriteWatch(testenv_v1beta2, tmp_path)
    name = f"probe-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(testenv_v1beta2.api_client())
    core.create_namespaced_config_map("default", {"metadata": {"name": name}})
    core.delete_namespaced_config_map(name, "default")
    (tmp_path / "kept.yaml").write_text("a: 2\n")
    writes = watch.apiserver_writes()
    assert [w.split()[0] for w in writes] == ["create", "delete"], writes
    assert watch.changed_files() == ["kept.yaml"]
