"""The pure parts of `image-upgrade`: patch bodies, history records, previews, timeouts, image flags.
No servers."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from kubectl_capc.cli.options import parse_timeouts
from kubectl_capc.cli.upgrade import image_options
from kubectl_capc.domain.errors import UsageError
from kubectl_capc.domain.model import FrozenDict
from kubectl_capc.domain.plan import CreateMachineTemplate, ImageSource, PatchObject, WaitRollout
from kubectl_capc.domain.preview import (
    ObjectPreview,
    clean,
    merge_patch,
    render_previews,
    semantic_summary,
    unified_diff,
)
from kubectl_capc.domain.records import (
    HISTORY,
    HISTORY_LIMIT,
    PREVIOUS_TEMPLATE,
    PREVIOUS_VERSION,
    Rotation,
    read_history,
    rotation_annotations,
    timestamp,
)
from kubectl_capc.domain.versions import parse_version
from kubectl_capc.kube.write import patch_body, progress_of
from kubectl_capc.ops.options import Timeouts
from tests.support.fixtures_capc import render_cluster, settled_status

KCP = "KubeadmControlPlane"
REF = {"name": "c1-cp-v1-29-3"}


def step(kind: str = KCP, rv: str = "42") -> PatchObject:
    return PatchObject(
        kind,
        "c1-control-plane",
        "v1.28.5",
        "v1.29.3",
        "c1-cp",
        "c1-cp-v1-29-3",
        "img-a",
        "img-b",
        resource_version=rv,
    )


def rotation(at: str = "2026-01-01T00:00:00Z", to_version: str = "v1.29.3") -> Rotation:
    return Rotation(at, "upgrade", "v1.28.5", to_version, "c1-cp", "c1-cp-v1-29-3", "img-a", "img-b")


@pytest.mark.parametrize(
    ("kind", "capi", "spec"),
    [
        (KCP, "v1beta2", {"version": "v1.29.3", "machineTemplate": {"spec": {"infrastructureRef": REF}}}),
        (KCP, "v1beta1", {"version": "v1.29.3", "machineTemplate": {"infrastructureRef": REF}}),
        ("MachineDeployment", "v1beta1", {"template": {"spec": {"version": "v1.29.3",
                                                                 "infrastructureRef": REF}}}),
    ],
)  # fmt: skip
def test_one_guarded_patch_carries_version_template_and_record(
    kind: str, capi: str, spec: dict[str, object]
) -> None:
    body = patch_body(step(kind), capi, {"a": "b"})  # type: ignore[arg-type]
    assert body == {"metadata": {"annotations": {"a": "b"}, "resourceVersion": "42"}, "spec": spec}


def test_patch_applies_to_the_object_as_the_server_merges_it() -> None:
    kcp = next(o for o in render_cluster("c1", capi="v1beta2") if o["kind"] == KCP)
    patched = merge_patch(kcp, patch_body(step(), "v1beta2", {}))
    assert patched["spec"]["version"] == "v1.29.3"
    ref = patched["spec"]["machineTemplate"]["spec"]["infrastructureRef"]
    assert ref == {
        "apiGroup": "infrastructure.cluster.x-k8s.io",
        "kind": "CloudStackMachineTemplate",
        "name": "c1-cp-v1-29-3",
    }
    assert patched["spec"]["kubeadmConfigSpec"] == kcp["spec"]["kubeadmConfigSpec"]
    assert kcp["spec"]["version"] == "v1.28.5"  # the input is not changed


def test_merge_patch_null_deletes() -> None:
    assert merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"b": None}, "d": [1]}) == {"a": {"c": 2}, "d": [1]}


def test_history_is_newest_first_and_capped() -> None:
    annotations: dict[str, str] = {}
    for minor in range(HISTORY_LIMIT + 3):
        annotations.update(
            rotation_annotations(rotation(f"2026-01-{minor + 1:02d}T00:00:00Z", f"v1.{minor}.0"), annotations)
        )
    entries = read_history(annotations)
    assert len(entries) == HISTORY_LIMIT
    assert entries[0].to_version == f"v1.{HISTORY_LIMIT + 2}.0"
    assert [e.at for e in entries] == sorted((e.at for e in entries), reverse=True)
    assert annotations[PREVIOUS_VERSION] == "v1.28.5" and annotations[PREVIOUS_TEMPLATE] == "c1-cp"


@pytest.mark.parametrize("raw", ["not json", "{}", '[{"at": "x"}]', '[1, "a"]'])
def test_unreadable_history_is_ignored(raw: str) -> None:
    assert read_history({HISTORY: raw}) == ()


def test_history_round_trips_compactly() -> None:
    value = rotation_annotations(rotation(), {})[HISTORY]
    assert " " not in value
    assert read_history({HISTORY: value}) == (rotation(),)
    assert json.loads(value)[0]["toTemplate"] == "c1-cp-v1-29-3"


def test_timestamps_are_utc_rfc3339() -> None:
    moment = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
    assert timestamp(moment).startswith("2026-03-04T05:06:07") and timestamp(moment).endswith("Z")


def test_semantic_summary_names_each_changed_field() -> None:
    before = {
        "metadata": {"name": "a", "resourceVersion": "1"},
        "spec": {"version": "v1.28.5", "x": [1]},
        "status": {"r": 1},
    }
    after = {
        "metadata": {"name": "a", "resourceVersion": "9", "annotations": {"k": "v"}},
        "spec": {"version": "v1.29.3", "x": [1]},
    }
    assert semantic_summary(before, after) == [
        "metadata.annotations: added {k}",
        "spec.version: v1.28.5 → v1.29.3",
    ]


def test_unified_diff_is_plain_or_coloured() -> None:
    before, after = {"spec": {"version": "v1.28.5"}}, {"spec": {"version": "v1.29.3"}}
    plain = unified_diff(before, after, label="KubeadmControlPlane/c1", color=False)
    assert plain[:2] == ["--- KubeadmControlPlane/c1 (current)", "+++ KubeadmControlPlane/c1 (planned)"]
    assert "-  version: v1.28.5" in plain and "+  version: v1.29.3" in plain
    coloured = unified_diff(before, after, label="x", color=True)
    assert "\033[32m+  version: v1.29.3\033[0m" in coloured


def test_clean_drops_server_fields_only() -> None:
    obj = {
        "metadata": {"name": "a", "uid": "u", "managedFields": [], "labels": {"l": "1"}},
        "status": {},
        "spec": {},
    }
    assert clean(obj) == {"metadata": {"name": "a", "labels": {"l": "1"}}, "spec": {}}


def test_rendered_preview_shows_verdicts() -> None:
    create = CreateMachineTemplate(
        "t-v1-29-3", "t", "img-a", "img-b", parse_version("v1.29.3"), manifest=FrozenDict()
    )
    previews = [
        ObjectPreview(1, create, {"metadata": {"name": "t"}}, {"metadata": {"name": "t2"}}, True, "no"),
        ObjectPreview(2, step(), {"spec": {"version": "v1.29.3"}}, {"spec": {"version": "v1.30.2"}}, False,
                      unchecked_reason="depends on hop 1"),
    ]  # fmt: skip
    text = render_previews(previews, color=False)
    assert "# hop 1: CloudStackMachineTemplate/t-v1-29-3 (new, cloned from t)" in text
    assert "REJECTED by the API server: no" in text
    assert "not checked by the API server: depends on hop 1" in text
    assert "spec.version: v1.29.3 → v1.30.2" in text


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], Timeouts()),
        (["90m"], Timeouts(5400, 5400, 5400)),
        (["control-plane=2h", "machine-deployment=0"], Timeouts(3600, 7200, None)),
        (["1h", "images=30s"], Timeouts(30, 3600, 3600)),
    ],
)
def test_timeouts(values: list[str], expected: Timeouts) -> None:
    assert parse_timeouts(values) == expected


@pytest.mark.parametrize("value", ["workers=1m", "soon", "control-plane=x"])
def test_bad_timeouts_are_usage_errors(value: str) -> None:
    with pytest.raises(UsageError):
        parse_timeouts([value])


IMAGE_URL = "http://127.0.0.1/ubuntu-2204-kube-{version}.qcow2"


@pytest.mark.parametrize(
    ("source", "url", "expected"),
    [
        (None, None, ImageSource.EXISTING),
        (None, IMAGE_URL, ImageSource.URL),
        ("url", IMAGE_URL, ImageSource.URL),
        ("prebuilt", None, ImageSource.PREBUILT),
        ("build", None, ImageSource.BUILD),
    ],
)
def test_image_url_alone_means_the_url_source(
    source: str | None, url: str | None, expected: ImageSource
) -> None:
    options = image_options(source, url, None, None)
    assert (options.source, options.url) == (expected, url)


@pytest.mark.parametrize("source", ["existing", "prebuilt", "build"])
def test_image_url_with_another_source_is_a_conflict_naming_both_flags(source: str) -> None:
    with pytest.raises(UsageError) as refused:
        image_options(source, IMAGE_URL, None, None)
    assert str(refused.value) == (
        f"--image-url conflicts with --image-source {source}; "
        "drop one of them (--image-url alone means --image-source url)"
    )


def test_a_prebuilt_mirror_is_only_taken_with_the_prebuilt_source() -> None:
    mirror = "http://127.0.0.1/mirror"
    assert image_options("prebuilt", None, mirror, None).prebuilt_base_url == mirror
    assert image_options("prebuilt", None, None, None).prebuilt_base_url is None  # the published site
    with pytest.raises(UsageError, match=r"^--prebuilt-base-url conflicts with --image-source url; "):
        image_options(None, IMAGE_URL, mirror, None)


@pytest.mark.parametrize("capi", ["v1beta1", "v1beta2"])
def test_progress_reads_both_status_shapes(capi: str) -> None:
    md = next(o for o in render_cluster("c1", capi=capi) if o["kind"] == "MachineDeployment")
    md["metadata"]["generation"] = 2
    md["status"] = settled_status(md, generation=1)
    pending = progress_of(md, "v1.28.5")
    assert not pending.observed and not pending.done
    assert "waiting for the controller" in str(pending)
    md["status"] = settled_status(md, generation=2)
    done = progress_of(md, "v1.28.5")
    assert done.done and (done.desired, done.ready, done.up_to_date) == (2, 2, 2)
    assert not progress_of(md, "v1.29.3").done  # settled, but at another version than waited for
    assert WaitRollout("MachineDeployment", ("c1-md-0",), "v1.28.5").subject == "MachineDeployment/c1-md-0"
