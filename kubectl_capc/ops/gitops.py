"""GitOps mode of `image-upgrade`: plan from manifest files and rewrite them instead of the live objects.

Clusters managed with Flux or Argo CD are changed through their files, or the controller reverts the
change. `-f PATH` (files or directories, repeatable) names those files. The cluster's objects are found
in them and planned exactly as online (the same inventory reader and planner, so the same hops, names
and skew rules), with two differences that come from having no live system:

- the files are the desired state, so no rollout is ever in progress;
- CloudStack is not asked, so the plan assumes the derived node-image templates exist (`--image` pins
  one) and `--to` must be an exact version.

Only the next hop is written: in GitOps each hop is its own commit, rolled out before the next one.
New CloudStackMachineTemplate documents go right after the documents they are copied from, and
`version:` fields and template references change in place; everything else keeps its bytes
(`kubectl_capc.domain.yaml_rewrite`). `--server-dry-run` has a reachable cluster judge the result first.
"""

from __future__ import annotations

import difflib
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePath
from typing import Any, Protocol

from kubectl_capc.domain.errors import CapcError, PlanError, UsageError
from kubectl_capc.domain.inventory import RawObjects, build_inventories, capi_version_of
from kubectl_capc.domain.model import (
    BOOTSTRAP_GROUP,
    CLOUDSTACK_CLUSTER_KIND,
    CLOUDSTACK_MACHINE_TEMPLATE_KIND,
    CLUSTER_GROUP,
    CONTROL_PLANE_GROUP,
    INFRASTRUCTURE_GROUP,
    KUBEADM_CONFIG_TEMPLATE_KIND,
    KUBEADM_CONTROL_PLANE_KIND,
    ClusterInventory,
    Replicas,
    thaw,
)
from kubectl_capc.domain.plan import (
    MACHINE_DEPLOYMENT_KIND,
    CreateMachineTemplate,
    EnsureImage,
    ImageSource,
    PatchObject,
    PlanHop,
    UpgradePlan,
)
from kubectl_capc.domain.planner import PlanRequest, plan_upgrade
from kubectl_capc.domain.preview import merge_patch, paint
from kubectl_capc.domain.versions import parse_version
from kubectl_capc.domain.yaml_rewrite import MAX_FILE_BYTES, YamlText, YamlTextError
from kubectl_capc.kube.target import KubeTarget
from kubectl_capc.kube.write import patch_body

__all__ = [
    "YAML_SUFFIXES",
    "FileChange",
    "GitOpsOptions",
    "GitOpsResult",
    "GitOpsTerminal",
    "Manifests",
    "ServerVerdict",
    "gitops_document",
    "load_manifests",
    "output_targets",
    "plan_files",
    "run",
    "write_changes",
]

YAML_SUFFIXES = (".yaml", ".yml")

# The kinds an upgrade reads, by (API group, kind), and the RawObjects field each goes to.
_KINDS = {
    (CLUSTER_GROUP, "Cluster"): "clusters",
    (CONTROL_PLANE_GROUP, KUBEADM_CONTROL_PLANE_KIND): "control_planes",
    (CLUSTER_GROUP, MACHINE_DEPLOYMENT_KIND): "machine_deployments",
    (INFRASTRUCTURE_GROUP, CLOUDSTACK_MACHINE_TEMPLATE_KIND): "machine_templates",
    (INFRASTRUCTURE_GROUP, CLOUDSTACK_CLUSTER_KIND): "cloudstack_clusters",
    (BOOTSTRAP_GROUP, KUBEADM_CONFIG_TEMPLATE_KIND): "bootstrap_templates",
}
# CAPC v1beta1 objects have another shape (zones instead of failure domains); the reader needs v1beta2+.
_CAPC_VERSIONS = ("v1beta2", "v1beta3")
# The fix for a file -f cannot use: the file may not belong to the cluster at all.
_LEAVE_OUT = "fix the file, or leave it out of -f"


# -- finding the files ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ManifestFile:
    """One YAML file: `shown` is its path as the user named it, `relative` its path below its `-f`,
    `source` its text as read and `text` that text split into documents."""

    shown: str
    real: Path
    relative: PurePath
    source: str
    text: YamlText

    def with_documents(self, text: str) -> str:
        """`text` (the documents, rendered) with the byte order mark the file started with, if any."""
        return ("\ufeff" if self.source.startswith("\ufeff") else "") + text


@dataclass(frozen=True)
class Location:
    """Where an object is defined: a file and the index of the document in it."""

    file: ManifestFile
    index: int

    @property
    def value(self) -> dict[str, Any]:
        value: dict[str, Any] = self.file.text.documents[self.index].value
        return value

    def __str__(self) -> str:
        return f"{self.file.shown}:{self.file.text.documents[self.index].line}"


@dataclass(frozen=True)
class Manifests:
    """The files `-f` named and the upgrade-relevant objects in them, by (kind, namespace, name)."""

    files: tuple[ManifestFile, ...]
    objects: Mapping[tuple[str, str, str], Location]


def load_manifests(paths: Sequence[Path], namespace: str | None) -> Manifests:
    """Read every YAML file of `paths`; objects without a namespace are in `namespace` or "default".

    Refuses, with a one-line UsageError: missing paths, non-YAML files named directly, symlinks that
    lead out of a directory given with -f, special files, invalid or oversized YAML, alias bombs, and an
    upgrade-relevant object defined twice.
    """
    found: dict[Path, tuple[str, PurePath]] = {}
    for path in paths:
        for shown, real, relative in _yaml_files(path):
            found.setdefault(real, (shown, relative))
    if not found:
        raise UsageError(
            "no .yaml or .yml files in " + ", ".join(str(p) for p in paths),
            hint="give -f the files or directories that hold the cluster's manifests",
        )
    files = tuple(_read(shown, real, relative) for real, (shown, relative) in found.items())
    default_namespace = namespace or "default"
    objects: dict[tuple[str, str, str], Location] = {}
    for manifest in files:
        for document in manifest.text.documents:
            key = _object_key(document.value, default_namespace)
            if key is None:
                continue
            here = Location(manifest, document.index)
            if key in objects:
                raise UsageError(
                    f"{key[0]} {key[1]}/{key[2]} is defined twice: at {objects[key]} and at {here}",
                    hint="give -f the files that hold each complete object once (not overlays or patches)",
                )
            objects[key] = here
    return Manifests(files, objects)


def _yaml_files(path: Path) -> list[tuple[str, Path, PurePath]]:
    """(shown path, real path, path relative to `path`) of the YAML files `path` names."""
    if not path.exists():
        raise UsageError(f"-f {path}: no such file or directory", hint="check the path")
    if not path.is_dir():
        if path.suffix.lower() not in YAML_SUFFIXES:
            raise UsageError(
                f"-f {path}: not a YAML file (expected {' or '.join(YAML_SUFFIXES)})",
                hint="give -f YAML files or the directories that hold them",
            )
        return [(str(path), path.resolve(), PurePath(path.name))]
    root = path.resolve()
    result: list[tuple[str, Path, PurePath]] = []
    for directory, subdirs, names in os.walk(path):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for name in [*subdirs, *sorted(n for n in names if not n.startswith("."))]:
            entry = Path(directory, name)
            is_yaml = name not in subdirs and entry.suffix.lower() in YAML_SUFFIXES
            real = entry.resolve()
            if (is_yaml or name in subdirs) and entry.is_symlink() and not real.is_relative_to(root):
                raise UsageError(
                    f"{entry}: symbolic link to {real}, outside {path}",
                    hint="-f reads only what is inside the directories it is given; name the target with -f",
                )
            if is_yaml and not entry.is_dir():
                result.append((str(entry), real, entry.relative_to(path)))
    return result


def _read(shown: str, real: Path, relative: PurePath) -> ManifestFile:
    try:
        info = real.stat()
        if not stat.S_ISREG(info.st_mode):
            raise UsageError(f"{shown}: not a regular file", hint=_LEAVE_OUT)
        if info.st_size > MAX_FILE_BYTES:
            raise UsageError(f"{shown}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB", hint=_LEAVE_OUT)
        text = real.read_bytes().decode("utf-8")
    except OSError as err:
        raise UsageError(f"{shown}: cannot read it: {err.strerror or err}", hint=_LEAVE_OUT) from None
    except UnicodeDecodeError as err:
        raise UsageError(f"{shown}: not UTF-8 text (byte {err.start})", hint=_LEAVE_OUT) from None
    try:
        parsed = YamlText.parse(text.removeprefix("\ufeff"))
    except YamlTextError as err:
        raise UsageError(f"{shown}: {err}", hint=_LEAVE_OUT) from None
    return ManifestFile(shown, real, relative, text, parsed)


def _object_key(value: Any, default_namespace: str) -> tuple[str, str, str] | None:
    if not isinstance(value, Mapping):
        return None
    group = str(value.get("apiVersion", "")).rpartition("/")[0]
    kind = str(value.get("kind", ""))
    metadata = value.get("metadata")
    if (group, kind) not in _KINDS or not isinstance(metadata, Mapping) or not metadata.get("name"):
        return None
    return kind, str(metadata.get("namespace") or default_namespace), str(metadata["name"])


# -- planning -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileChange:
    """One file before and after the upgrade's next hop."""

    file: ManifestFile
    before: str
    after: str

    def diff(self, *, color: bool = False) -> str:
        """A git-style unified diff of the file."""
        lines = difflib.unified_diff(
            self.before.splitlines(keepends=True),
            self.after.splitlines(keepends=True),
            fromfile=f"a/{self.file.shown}",
            tofile=f"b/{self.file.shown}",
        )
        text = "".join(
            line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
        )
        return "".join(paint(line) + "\n" for line in text.splitlines()) if color else text


@dataclass(frozen=True)
class GitOpsResult:
    """The plan made from the files, the hop written, the files it changes and the objects it writes."""

    plan: UpgradePlan
    hop: PlanHop | None
    changes: tuple[FileChange, ...]
    objects: tuple[dict[str, Any], ...] = field(default=(), repr=False)

    @property
    def assumed_images(self) -> tuple[EnsureImage, ...]:
        return tuple(step for step in (self.hop.steps if self.hop else ()) if isinstance(step, EnsureImage))


def plan_files(
    manifests: Manifests, cluster: str, namespace: str | None, request: PlanRequest
) -> GitOpsResult:
    """Plan the upgrade of `cluster` from the files and work out the files after its next hop."""
    if request.image_source is not ImageSource.EXISTING:
        raise UsageError(
            f"--image-source {request.image_source.value} obtains node images for a live cluster",
            hint="offline, the plan assumes the templates exist; pin one with --image NAME",
        )
    if request.target.exact is None and request.image is None:
        raise UsageError(
            f"offline, --to needs an exact version: CloudStack is not asked which {request.target} "
            "patches have node images",
            hint=f"e.g. --to {request.target}.0 with the patch your node image is for",
        )
    inventory = _inventory(manifests, cluster, namespace)
    exact = request.target.exact
    request = replace(request, obtainable=request.obtainable | ({exact} if exact else set()))
    try:
        plan = plan_upgrade(inventory, request, None)
    except PlanError as err:
        raise PlanError(err.message, hint=_gitops_hint(inventory, request) or err.hint) from None
    hop = plan.hops[0] if plan.hops else None
    if hop is None or plan.blockers:
        return GitOpsResult(plan, hop, ())
    replacements: dict[ManifestFile, dict[int, Any]] = {}
    insertions: dict[ManifestFile, dict[int, list[Any]]] = {}
    objects: list[dict[str, Any]] = []
    for step in hop.steps:
        if isinstance(step, CreateMachineTemplate) and step.writes:
            source = _location(
                manifests, CLOUDSTACK_MACHINE_TEMPLATE_KIND, inventory.namespace, step.cloned_from
            )
            value = _as_written(thaw(step.manifest), source.value)
            insertions.setdefault(source.file, {}).setdefault(source.index, []).append(value)
            objects.append(value)
        elif isinstance(step, PatchObject):
            where = _location(manifests, step.kind, inventory.namespace, step.name)
            spec_patch = {"spec": patch_body(step, capi_version_of(where.value), {})["spec"]}
            value = merge_patch(where.value, spec_patch)
            replacements.setdefault(where.file, {})[where.index] = value
            objects.append(value)
    changes = []
    for manifest in manifests.files:
        if manifest in replacements or manifest in insertions:
            try:
                rendered = manifest.text.render(replacements.get(manifest), insertions.get(manifest))
            except YamlTextError as err:
                raise PlanError(f"{manifest.shown}: {err}", hint="nothing was written") from None
            changes.append(FileChange(manifest, manifest.source, manifest.with_documents(rendered)))
    namespaced = tuple(_with_namespace(value, inventory.namespace) for value in objects)
    return GitOpsResult(plan, hop, tuple(changes), namespaced)


def _inventory(manifests: Manifests, cluster: str, namespace: str | None) -> ClusterInventory:
    """The cluster's inventory as the files describe it: the desired state, with nothing rolling out."""
    namespaces = sorted(ns for kind, ns, name in manifests.objects if kind == "Cluster" and name == cluster)
    if namespace is not None:
        namespaces = [ns for ns in namespaces if ns == namespace]
    if not namespaces:
        where = f" in namespace {namespace}" if namespace else ""
        shown = [f.shown for f in manifests.files]
        files = ", ".join(shown[:3]) + (f" and {len(shown) - 3} more files" if len(shown) > 3 else "")
        raise UsageError(
            f"no Cluster {cluster}{where} in {files}",
            hint="check the cluster name and -n, and give -f the files that define the cluster",
        )
    if len(namespaces) > 1:
        raise UsageError(
            f"Cluster {cluster} is defined in namespaces {', '.join(namespaces)}", hint="choose one with -n"
        )
    lists: dict[str, list[dict[str, Any]]] = {name: [] for name in _KINDS.values()}
    for (kind, ns, _), location in manifests.objects.items():
        value = location.value
        group = str(value["apiVersion"]).rpartition("/")[0]
        if group == INFRASTRUCTURE_GROUP and ns == namespaces[0] and _version(value) not in _CAPC_VERSIONS:
            raise UsageError(
                f"{kind} {value['metadata']['name']} at {location} is {value['apiVersion']}",
                hint=f"offline mode reads CAPC {' and '.join(_CAPC_VERSIONS)} manifests",
            )
        lists[_KINDS[(group, kind)]].append(_with_namespace(value, ns))
    cluster_object = next(v for v in lists["clusters"] if v["metadata"]["name"] == cluster)
    inventories = build_inventories(RawObjects(**lists), capi_version_of(cluster_object))
    inventory = next(i for i in inventories if (i.namespace, i.name) == (namespaces[0], cluster))
    return _desired_state(inventory)


def _location(manifests: Manifests, kind: str, namespace: str, name: str) -> Location:
    where = manifests.objects.get((kind, namespace, name))
    if where is None:  # e.g. a v1beta1 reference into another namespace
        raise PlanError(
            f"{kind} {namespace}/{name} is not defined in the files given with -f",
            hint="add the file that defines it with another -f",
        )
    return where


def _desired_state(inventory: ClusterInventory) -> ClusterInventory:
    """Files hold no status: read every object as settled at its spec, with no Machines."""

    def settled(replicas: Replicas) -> Replicas:
        count = replicas.desired or 0
        return Replicas(replicas.desired, current=count, ready=count, up_to_date=count, available=count)

    control_plane = inventory.control_plane
    if control_plane is not None:
        control_plane = replace(
            control_plane,
            observed_generation=control_plane.generation,
            status_version=control_plane.version,
            status_versions=(),
            replicas=settled(control_plane.replicas),
            rolling_out=False,
        )
    deployments = tuple(
        replace(
            md,
            observed_generation=md.generation,
            status_versions=(),
            replicas=settled(md.replicas),
            rolling_out=False,
        )
        for md in inventory.machine_deployments
    )
    return replace(inventory, control_plane=control_plane, machine_deployments=deployments, machines=())


def _gitops_hint(inventory: ClusterInventory, request: PlanRequest) -> str | None:
    """For a target more than one minor ahead: in GitOps mode, the intermediate patch cannot be looked up."""
    control_plane = inventory.control_plane
    target = request.target
    try:
        current = parse_version(control_plane.version) if control_plane else None
    except ValueError:
        return None
    if current is None or target.minor <= current.minor + 1:
        return None
    step = f"v{current.major}.{current.minor + 1}"
    return (
        f"offline, CloudStack is not asked which {step} patches have node images: upgrade one minor per "
        f"commit, first with --to {step}.PATCH"
    )


def _as_written(value: dict[str, Any], source: Mapping[str, Any]) -> dict[str, Any]:
    """A new template as it goes into the file: without a namespace when its source has none."""
    if not (source.get("metadata") or {}).get("namespace"):
        value.get("metadata", {}).pop("namespace", None)
    return value


def _with_namespace(value: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    copy = dict(value)
    copy["metadata"] = {**(value.get("metadata") or {}), "namespace": namespace}
    return copy


def _version(value: Mapping[str, Any]) -> str:
    return str(value.get("apiVersion", "")).rpartition("/")[2]


# -- writing --------------------------------------------------------------------------------------


def output_targets(changes: Sequence[FileChange], output_dir: Path | None) -> list[tuple[FileChange, Path]]:
    """Where each changed file goes: in place, or below `output_dir` at its path relative to its `-f`.

    Raises UsageError when `output_dir` would overwrite an input file or receive two files at one path.
    """
    targets = [(change, _target(change, output_dir)) for change in changes]
    if output_dir is not None:
        inputs = {change.file.real for change in changes}
        seen: dict[Path, FileChange] = {}
        for change, target in targets:
            if target.resolve() in inputs:
                raise UsageError(
                    f"--output-dir {output_dir} would overwrite {change.file.shown}",
                    hint="choose one outside the -f paths, or leave --output-dir out to edit in place",
                )
            if target in seen:
                both = f"{seen[target].file.shown} and {change.file.shown}"
                raise UsageError(
                    f"--output-dir: {both} would both be written to {target}",
                    hint="leave --output-dir out to edit the files in place",
                )
            seen[target] = change
    return targets


def write_changes(changes: Sequence[FileChange], output_dir: Path | None) -> list[Path]:
    """Write each changed file (see `output_targets`); in place, a file is replaced atomically and keeps
    its permissions. Returns the paths written."""
    written = []
    for change, target in output_targets(changes, output_dir):
        mode = stat.S_IMODE(change.file.real.stat().st_mode)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.capc-{os.getpid()}")
        try:
            temporary.write_bytes(change.after.encode("utf-8"))
            temporary.chmod(mode)
            temporary.replace(target)
        except OSError as err:
            temporary.unlink(missing_ok=True)
            raise CapcError(f"cannot write {target}: {err.strerror or err}") from None
        written.append(target)
    return written


def _target(change: FileChange, output_dir: Path | None) -> Path:
    return change.file.real if output_dir is None else output_dir / change.file.relative


# -- validating with a cluster --------------------------------------------------------------------


@dataclass(frozen=True)
class ServerVerdict:
    """What the API server said about one object of the result; `rejection` is its refusal, if any."""

    subject: str
    rejection: str = ""

    def __str__(self) -> str:
        if self.rejection:
            return f"{self.subject}: REJECTED by the API server: {self.rejection}"
        return f"{self.subject}: accepted by the API server (dryRun=All)"

    def to_document(self) -> dict[str, str]:
        result = {"object": self.subject, "result": "rejected" if self.rejection else "accepted"}
        return {**result, "message": self.rejection} if self.rejection else result


# -- the command ----------------------------------------------------------------------------------


class GitOpsTerminal(Protocol):
    """What the GitOps run shows: the plan, the file changes with the server's verdicts, and notes."""

    def show_plan(self, plan: UpgradePlan) -> None: ...

    def show_files(self, result: GitOpsResult, verdicts: Sequence[ServerVerdict]) -> None: ...

    def note(self, message: str) -> None: ...


@dataclass(frozen=True)
class GitOpsOptions:
    paths: tuple[Path, ...]
    output_dir: Path | None = None
    dry_run: bool = False
    server_dry_run: bool = False


def run(
    target: KubeTarget,
    cluster: str,
    request: PlanRequest,
    options: GitOpsOptions,
    terminal: GitOpsTerminal,
) -> int:
    """`image-upgrade -f PATH ...`: plan from the files, show plan and diff, validate, write the next hop.

    Returns the exit code: with --dry-run 1 when files would change (as `kubectl diff`), else 0.
    """
    if not options.paths:
        raise UsageError(
            "--output-dir and --server-dry-run work on files",
            hint="give them with -f PATH, or leave them out",
        )
    manifests = load_manifests(options.paths, target.namespace)
    result = plan_files(manifests, cluster, target.namespace, request)
    output_targets(result.changes, options.output_dir)  # refuse a bad --output-dir before printing
    plan = result.plan
    terminal.show_plan(plan)
    verdicts: tuple[ServerVerdict, ...] = ()
    if options.server_dry_run and result.objects:
        from kubectl_capc.kube.client import api_client
        from kubectl_capc.kube.write import server_dry_run

        verdicts = tuple(ServerVerdict(s, r) for s, r in server_dry_run(api_client(target), result.objects))
    terminal.show_files(result, verdicts)
    if plan.blockers:
        raise PlanError(
            "the plan cannot be applied: " + "; ".join(str(b) for b in plan.blockers),
            hint="nothing was written; fix the files and run the command again",
        )
    rejected = [v for v in verdicts if v.rejection]
    if rejected:
        raise PlanError(
            "the API server rejected the result: "
            + "; ".join(f"{v.subject}: {v.rejection}" for v in rejected),
            hint="nothing was written",
        )
    if result.hop is None:
        terminal.note(
            f"cluster {plan.namespace}/{plan.cluster} is at {plan.target} in the files: nothing to do"
        )
        return 0
    _explain(plan, result.hop, result.assumed_images, terminal)
    if options.dry_run:
        return 1 if result.changes else 0
    written = write_changes(result.changes, options.output_dir)
    terminal.note("wrote " + ", ".join(str(path) for path in written))
    return 0


def _explain(
    plan: UpgradePlan, hop: PlanHop, assumed: Sequence[EnsureImage], terminal: GitOpsTerminal
) -> None:
    for step in assumed:
        zones = ", ".join(zone.zone for zone in step.zones) or "every zone"
        terminal.note(
            f"assumed: CloudStack template {step.image} is ready in {zones} (not checked offline; "
            "pin another with --image NAME)"
        )
    if len(plan.hops) > 1:
        terminal.note(
            f"GitOps: this writes hop {hop.number} of {len(plan.hops)} (to {hop.version}) only; each hop is "
            "its own commit: once it is merged and rolled out, run the same command again for the next"
        )
    movers = [s for s in hop.steps if isinstance(s, PatchObject)]
    if any(s.is_control_plane for s in movers) and any(not s.is_control_plane for s in movers):
        terminal.note(
            "the MachineDeployments change in the same commit as the control plane; CAPI's MachineSet "
            "preflight checks (on by default since CAPI v1.9) hold their rollout until the control plane "
            "has finished"
        )


def gitops_document(result: GitOpsResult, verdicts: Sequence[ServerVerdict]) -> dict[str, Any]:
    document = result.plan.to_document()
    document["status"]["gitops"] = {
        "hop": result.hop.number if result.hop else 0,
        "files": [{"path": c.file.shown, "diff": c.diff()} for c in result.changes],
        **({"serverDryRun": [v.to_document() for v in verdicts]} if verdicts else {}),
    }
    return document
