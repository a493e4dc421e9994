"""GitOps mode: `image-upgrade -f PATH` plans from manifest files and rewrites them. No servers."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubectl_capc.__main__ import main
from kubectl_capc.domain.model import thaw
from kubectl_capc.domain.plan import CreateMachineTemplate, PatchObject, Step
from kubectl_capc.domain.planner import PlanRequest
from kubectl_capc.domain.versions import parse_target
from kubectl_capc.ops.gitops import load_manifests, plan_files, write_changes
from tests.support.fixtures_capc import render_cluster
from tests.support.planner_scenes import cluster, converge, images, listing, named

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "mycluster"
SERVER_METADATA = ("uid", "resourceVersion", "generation", "creationTimestamp")


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A copy of the bundled example, safe to rewrite."""
    return Path(shutil.copytree(EXAMPLE, tmp_path / "mycluster"))


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


def write_objects(directory: Path, objects: list[dict[str, Any]], *, namespace: bool = True) -> Path:
    """Objects as a GitOps repository holds them: no status or server fields, one file per part."""
    directory.mkdir(parents=True, exist_ok=True)
    files: dict[str, list[dict[str, Any]]] = {}
    for obj in copy.deepcopy(objects):
        obj.pop("status", None)
        for key in SERVER_METADATA:
            obj["metadata"].pop(key, None)
        if not namespace:
            obj["metadata"].pop("namespace", None)
        part = {"Cluster": "cluster", "CloudStackCluster": "cluster", "KubeadmControlPlane": "control-plane"}
        files.setdefault(part.get(obj["kind"], "workers"), []).append(obj)
    for name, docs in files.items():
        (directory / f"{name}.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return directory


def request(to: str, **options: Any) -> PlanRequest:
    return PlanRequest(parse_target(to), to, **options)


def offline_converge(directory: Path, cluster_name: str, to: str, **options: Any) -> list[list[Step]]:
    """Run GitOps mode until nothing is left, each run writing its hop: the writes of each run."""
    runs = []
    for _ in range(10):
        result = plan_files(load_manifests([directory], None), cluster_name, None, request(to, **options))
        if result.hop is None:
            return runs
        runs.append([step for step in result.hop.steps if step.writes])
        write_changes(result.changes, None)
    raise AssertionError("GitOps mode does not converge")


# -- the bundled example --------------------------------------------------------------------------


def test_dry_run_prints_plan_and_diff_and_writes_nothing(
    example: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(example)
    code, out, err = run(
        ["image-upgrade", "mycluster", "--to", "v1.29.3", "-f", str(example), "--dry-run"], capsys
    )
    assert code == 1, err
    assert snapshot(example) == before
    assert out.startswith("Cluster default/mycluster (CAPI v1beta1) → v1.29.3\n")
    assert "CreateMachineTemplate   CloudStackMachineTemplate/mycluster-md-1-v1-29-3" in out
    assert f"--- a/{example}/control-plane.yaml\n+++ b/{example}/control-plane.yaml\n" in out
    assert "-  version: v1.28.5\n+  version: v1.29.3\n" in out
    assert '-      version: "v1.28.5"\n+      version: "v1.29.3"\n' in out
    assert "assumed: CloudStack template ubuntu-2204-kube-v1.29.3 is ready in zone1, zone2" in err
    assert "pin another with --image NAME" in err


def test_the_upgrade_rewrites_only_versions_and_references_and_adds_clones(
    example: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(example)
    code, out, err = run(["image-upgrade", "mycluster", "--to", "v1.29.3", "-f", str(example)], capsys)
    assert code == 0, err
    after = snapshot(example)
    assert after["cluster.yaml"] == before["cluster.yaml"]
    assert after["machinehealthchecks.yaml"] == before["machinehealthchecks.yaml"]
    removed = [line for line in out.splitlines() if line.startswith("-") and not line.startswith("---")]
    assert sorted(line.strip() for line in removed) == sorted(
        [
            "-  version: v1.28.5",
            '-      name: "mycluster-control-plane"',
            '-      version: "v1.28.5"',
            '-        name: "mycluster-md-0"',
            '-      version: "v1.28.5"',
            '-        name: "mycluster-md-1"',
        ]
    )
    workers = list(yaml.safe_load_all(after["workers.yaml"]))
    names = [(doc["kind"], doc["metadata"]["name"]) for doc in workers]
    assert names[:3] == [
        ("MachineDeployment", "mycluster-md-0"),
        ("CloudStackMachineTemplate", "mycluster-md-0"),
        ("CloudStackMachineTemplate", "mycluster-md-0-v1-29-3"),
    ]
    clone, source = workers[6], workers[5]
    assert clone["metadata"]["name"] == "mycluster-md-1-v1-29-3"
    assert (
        clone["spec"]["template"]["spec"]["diskOffering"]
        == source["spec"]["template"]["spec"]["diskOffering"]
    )
    assert clone["spec"]["template"]["spec"]["template"] == {"name": "ubuntu-2204-kube-v1.29.3"}
    assert clone["metadata"]["annotations"]["capc.kubectl.io/cloned-from"] == "mycluster-md-1"
    assert "wrote " in err

    code, out, err = run(["image-upgrade", "mycluster", "--to", "v1.29.3", "-f", str(example)], capsys)
    assert (code, snapshot(example)) == (0, after)
    assert "is at v1.29.3 in the files: nothing to do" in err


def test_output_dir_writes_the_changed_files_there_and_leaves_the_originals(
    example: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(example)
    out_dir = tmp_path / "out"
    code, _, err = run(
        ["image-upgrade", "mycluster", "--to", "v1.29.3", "-f", str(example), "--output-dir", str(out_dir)],
        capsys,
    )
    assert code == 0, err
    assert snapshot(example) == before
    copies = snapshot(out_dir)
    assert sorted(copies) == ["control-plane.yaml", "workers.yaml"]
    run(["image-upgrade", "mycluster", "--to", "v1.29.3", "-f", str(example)], capsys)
    assert copies == {name: (example / name).read_bytes() for name in copies}


def test_json_output_holds_the_plan_and_each_files_diff(
    example: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        ["image-upgrade", "mycluster", "--to", "v1.29.3", "-f", str(example), "--dry-run", "-o", "json"],
        capsys,
    )
    document = json.loads(out)
    assert (code, document["kind"], document["status"]["gitops"]["hop"]) == (1, "UpgradePlan", 1)
    files = {Path(f["path"]).name: f["diff"] for f in document["status"]["gitops"]["files"]}
    assert sorted(files) == ["control-plane.yaml", "workers.yaml"]
    assert "+  version: v1.29.3\n" in files["control-plane.yaml"]


# -- the same plan as online ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "scene",
    [
        ("v1beta1", (), "v1.29.3", images("v1.28.5", "v1.29.3"), {}),
        ("v1beta2", (), "v1.28.9", images("v1.28.5", "v1.28.9"), {}),
        ("v1beta2", ("v1.28.5", "v1.27.6"), "v1.29.3", images("v1.27.6", "v1.28.5", "v1.29.3"), {}),
        ("v1beta1", (), "v1.29.3", [*images("v1.28.5"), "custom-image"], {"image": "custom-image"}),
    ],
    ids=["one-minor", "patch", "workers-behind-two-hops", "pinned-image"],
)
def test_gitops_mode_makes_the_writes_online_mode_makes(tmp_path: Path, scene: tuple[Any, ...]) -> None:
    """Online, apply's loop runs every hop; GitOps mode writes one hop per run: the same writes result."""
    capi, worker_versions, to, available, options = scene
    objects = cluster(capi, worker_versions=worker_versions)
    directory = write_objects(tmp_path / "repo", objects)
    online = converge(copy.deepcopy(objects), to, listing(available), **options)
    runs = offline_converge(directory, "c1", to, **options)
    assert [step for writes in runs for step in writes] == online
    assert len(runs) == len({step.version_to for step in online if isinstance(step, PatchObject)})


def test_a_multi_hop_target_writes_the_next_hop_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = write_objects(tmp_path / "repo", cluster("v1beta2", worker_versions=("v1.28.5", "v1.27.6")))
    code, _, err = run(["image-upgrade", "c1", "--to", "v1.29.3", "-f", str(directory)], capsys)
    assert code == 0, err
    assert "this writes hop 1 of 2 (to v1.28.5) only; each hop is its own commit" in err
    workers = list(yaml.safe_load_all((directory / "workers.yaml").read_text()))
    versions = {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]["version"]
        for d in workers
        if d["kind"] == "MachineDeployment"
    }
    assert versions == {"c1-md-0": "v1.28.5", "c1-md-1": "v1.28.5"}
    control_plane = yaml.safe_load((directory / "control-plane.yaml").read_text())
    assert control_plane["spec"]["version"] == "v1.28.5"


def test_a_target_two_minors_ahead_needs_the_intermediate_patch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = write_objects(tmp_path / "repo", cluster("v1beta2"))
    before = snapshot(directory)
    code, _, err = run(["image-upgrade", "c1", "--to", "v1.30.2", "-f", str(directory)], capsys)
    assert code == 5
    assert "no v1.29 patch release is available for the intermediate hop" in err
    assert "upgrade one minor per commit, first with --to v1.29.PATCH" in err
    assert snapshot(directory) == before


def test_a_minor_alone_is_refused_unless_an_image_names_the_patch(
    example: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        ["image-upgrade", "mycluster", "--to", "v1.29", "-f", str(example), "--dry-run"], capsys
    )
    assert code == 2
    assert "offline, --to needs an exact version" in err
    code, out, err = run(
        ["image-upgrade", "mycluster", "--to", "v1.29", "-f", str(example), "--dry-run",
         "--image", "ubuntu-2204-kube-v1.29.7"],
        capsys,
    )  # fmt: skip
    assert code == 1, err
    assert "+        name: ubuntu-2204-kube-v1.29.7" in out
    assert "+  version: v1.29.7" in out


def test_objects_without_namespace_are_in_the_given_one_and_stay_without(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    objects = render_cluster("c1", "prod", capi="v1beta2", md_count=1)
    directory = write_objects(tmp_path / "repo", objects, namespace=False)
    code, out, err = run(
        ["image-upgrade", "c1", "--to", "v1.29.3", "-f", str(directory), "-n", "prod"], capsys
    )
    assert code == 0, err
    assert "Cluster prod/c1 (CAPI v1beta2)" in out
    docs = [d for p in sorted(directory.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text())]
    assert all("namespace" not in d["metadata"] for d in docs)
    kcp = named(docs, "KubeadmControlPlane", "c1-control-plane")
    assert kcp["spec"]["machineTemplate"]["spec"]["infrastructureRef"]["name"] == "c1-control-plane-v1-29-3"
    assert named(docs, "CloudStackMachineTemplate", "c1-control-plane-v1-29-3")


def test_a_clone_already_in_the_files_is_reused_and_a_different_one_is_not_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    objects = cluster("v1beta2")
    directory = write_objects(tmp_path / "repo", objects)
    result = plan_files(load_manifests([directory], None), "c1", None, request("v1.29.3"))
    clones = {s.name: s for s in result.hop.steps if isinstance(s, CreateMachineTemplate)}  # type: ignore[union-attr]
    taken = thaw(clones["c1-md-0-v1-29-3"].manifest)
    taken["spec"]["template"]["spec"]["template"]["name"] = "someone-elses-image"
    reused = thaw(clones["c1-md-1-v1-29-3"].manifest)
    (directory / "extra.yaml").write_text(yaml.safe_dump_all([taken, reused], sort_keys=False))
    before = (directory / "extra.yaml").read_bytes()
    code, _, err = run(["image-upgrade", "c1", "--to", "v1.29.3", "-f", str(directory)], capsys)
    assert code == 0, err
    assert (directory / "extra.yaml").read_bytes() == before
    docs = [d for p in sorted(directory.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text())]
    template_names = sorted(d["metadata"]["name"] for d in docs if d["kind"] == "CloudStackMachineTemplate")
    assert template_names == sorted(
        ["c1-control-plane", "c1-md-0", "c1-md-1", "c1-control-plane-v1-29-3", "c1-md-0-v1-29-3",
         "c1-md-0-v1-29-3-2", "c1-md-1-v1-29-3"]
    )  # fmt: skip
    assert named(docs, "MachineDeployment", "c1-md-0")["spec"]["template"]["spec"]["infrastructureRef"][
        "name"
    ] == ("c1-md-0-v1-29-3-2")


# -- refusals -------------------------------------------------------------------------------------


def alias_bomb(directory: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    (directory / "bomb.yaml").write_text("\n".join(lines) + "\n")


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def topology_managed(directory: Path) -> None:
    edit(
        directory / "cluster.yaml",
        "spec:\n  clusterNetwork",
        "spec:\n  topology:\n    class: c\n    version: v1.28.5\n  clusterNetwork",
    )


def old_capc_version(directory: Path) -> None:
    edit(directory / "cluster.yaml", "v1beta3\nkind: CloudStackCluster", "v1beta1\nkind: CloudStackCluster")


REFUSALS = {
    "not-yaml": (
        lambda d: (d / "notes.txt").write_text("x"),
        ["-f", "{dir}/notes.txt"],
        2,
        "not a YAML file",
    ),
    "missing": (lambda d: None, ["-f", "{dir}/missing"], 2, "no such file or directory"),
    "file-link-out": (
        lambda d: (d / "l.yaml").symlink_to("/etc/hostname"),
        [],
        2,
        "link to /etc/hostname, outside",
    ),
    "dir-link-out": (lambda d: (d / "sub").symlink_to("/etc"), [], 2, "symbolic link to /etc, outside"),
    "alias-bomb": (alias_bomb, [], 2, "bomb.yaml: line 6: more than 200000 nodes once aliases are expanded"),
    "invalid": (lambda d: (d / "bad.yaml").write_text("a: [1\n"), [], 2, "bad.yaml: line 2"),
    "not-utf8": (lambda d: (d / "bin.yaml").write_bytes(b"a: \xff\n"), [], 2, "bin.yaml: not UTF-8 text"),
    "twice": (
        lambda d: shutil.copy(d / "workers.yaml", d / "workers-copy.yaml"),
        [],
        2,
        "MachineDeployment default/mycluster-md-0 is defined twice",
    ),
    "other-namespace": (lambda d: None, ["-n", "other"], 2, "no Cluster mycluster in namespace other"),
    "image-source": (
        lambda d: None,
        ["--image-source", "build"],
        2,
        "--image-source build obtains node images",
    ),
    "output-dir-is-input": (lambda d: None, ["--output-dir", "{dir}"], 2, "would overwrite"),
    "topology": (topology_managed, [], 5, "is topology-managed"),
    "capc-v1beta1": (old_capc_version, [], 2, "is infrastructure.cluster.x-k8s.io/v1beta1"),
}


@pytest.mark.parametrize("case", REFUSALS.values(), ids=REFUSALS.keys())
def test_unusable_input_is_refused_with_one_line(
    example: Path, capsys: pytest.CaptureFixture[str], case: tuple[Any, list[str], int, str]
) -> None:
    setup, argv_extra, code, message = case
    setup(example)
    before = snapshot(example)
    extra = [arg.replace("{dir}", str(example)) for arg in argv_extra]
    paths = [] if "-f" in extra else ["-f", str(example)]
    got, _, err = run(["image-upgrade", "mycluster", "--to", "v1.29.3", *paths, *extra], capsys)
    assert got == code, err
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert snapshot(example) == before


def test_symlinks_inside_the_directory_are_followed_once(
    example: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (example / "again.yaml").symlink_to(example / "workers.yaml")
    code, _, err = run(["image-upgrade", "mycluster", "--to", "v1.29.3", "-f", str(example)], capsys)
    assert code == 0, err
    assert (example / "again.yaml").is_symlink()
    assert "mycluster-md-0-v1-29-3" in (example / "workers.yaml").read_text()


def test_files_flags_need_files(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["image-upgrade", "mycluster", "--to", "v1.29.3", "--server-dry-run"], capsys)
    assert code == 2
    assert "give them with -f PATH" in err


def test_a_file_keeps_its_byte_order_mark_and_crlf_line_ends(
    example: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = example / "control-plane.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    code, _, err = run(["image-upgrade", "mycluster", "--to", "v1.29.3", "-f", str(example)], capsys)
    assert code == 0, err
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf# Control plane")
    assert data.count(b"\n") == data.count(b"\r\n")
    assert b"\r\n  version: v1.29.3\r\n" in data
