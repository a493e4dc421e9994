"""Template commands of the CloudStack double, driven through the real `cs` client."""

from __future__ import annotations

from typing import Any

import pytest
from cs import CloudStackApiException

from tests.csdouble import CloudStackDouble, load_seed
from tests.csdouble.fixtures import EXAMPLE_SEED

UBUNTU_2204 = "46f966f7-d8d7-461e-9b51-46642c22c1bc"
K8S_128 = "ubuntu-2204-kube-v1.28.5"
K8S_129 = "ubuntu-2204-kube-v1.29.3"


def zone(double: CloudStackDouble, name: str) -> str:
    return double.state.zone_id(name)


def register(api: Any, double: CloudStackDouble, **params: Any) -> list[dict[str, Any]]:
    params = {
        "name": "ubuntu-2404-kube-v1.30.1",
        "displaytext": "Ubuntu 24.04 Kubernetes v1.30.1",
        "format": "QCOW2",
        "hypervisor": "KVM",
        "ostypeid": UBUNTU_2204,
        "url": "http://images.example.com/capi/ubuntu-2404-kube-v1.30.1-kvm.qcow2.bz2",
        "zoneid": zone(double, "zone1"),
        **params,
    }
    params = {k: v for k, v in params.items() if v is not None}
    return list(api.registerTemplate(**params)["template"])


def poll_until_ready(api: Any, template_id: str, polls: int = 10) -> list[dict[str, Any]]:
    for _ in range(polls):
        rows = api.listTemplates(templatefilter="self", id=template_id)["template"]
        if all(r["isready"] for r in rows):
            return list(rows)
    raise AssertionError("template never became ready")


def as_user(double: CloudStackDouble, account: str = "dev-team", domain: str = "ROOT/capc") -> None:
    seed = load_seed(EXAMPLE_SEED)
    seed["credentials"] = {"account": account, "domain": domain}
    double.apply_seed(seed)


def names(listing: dict[str, Any]) -> list[tuple[str, str]]:
    return [(t["name"], t["zonename"]) for t in listing.get("template", [])]


# ----- the seeded scene as CAPC resolves it ---------------------------------------------------------


@pytest.mark.parametrize("template", [K8S_128, K8S_129])
@pytest.mark.parametrize("zone_name", ["zone1", "zone2"])
def test_capc_by_name_resolution_finds_exactly_one(
    cloudstack: CloudStackDouble, cloudstack_api: Any, template: str, zone_name: str
) -> None:
    found = cloudstack_api.listTemplates(
        templatefilter="executable", name=template, zoneid=zone(cloudstack, zone_name)
    )
    assert found["count"] == 1
    row = found["template"][0]
    assert (row["name"], row["zonename"], row["isready"], row["status"]) == (
        template,
        zone_name,
        True,
        "Download Complete",
    )
    assert row["hypervisor"] == "KVM" and row["format"] == "QCOW2" and row["ostypename"] == "Ubuntu 22.04 LTS"


def test_by_id_without_zone_lists_one_row_per_zone(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    template_id = cloudstack.state.templates_named(K8S_129)[0].id
    found = cloudstack_api.listTemplates(templatefilter="executable", id=template_id)
    assert found["count"] == 2
    assert {r["zonename"] for r in found["template"]} == {"zone1", "zone2"}


def test_by_id_ignores_filter_and_name_but_not_zone(
    cloudstack: CloudStackDouble, cloudstack_api: Any
) -> None:
    template_id = cloudstack.state.templates_named(K8S_129)[0].id
    found = cloudstack_api.listTemplates(
        templatefilter="featured", id=template_id, name="other", zoneid=zone(cloudstack, "zone2")
    )
    assert names(found) == [(K8S_129, "zone2")]


def test_names_compare_case_insensitively(cloudstack_api: Any) -> None:
    assert cloudstack_api.listTemplates(templatefilter="executable", name=K8S_128.upper())["count"] == 2


def test_keyword_wins_over_name(cloudstack_api: Any) -> None:
    found = cloudstack_api.listTemplates(templatefilter="executable", keyword="kube-v1.29", name=K8S_128)
    assert {n for n, _ in names(found)} == {K8S_129}


def test_duplicate_name_in_one_zone_is_visible_as_two(
    cloudstack: CloudStackDouble, cloudstack_api: Any
) -> None:
    from tests.csdouble.seed import add_template

    add_template(
        cloudstack.state, {"name": K8S_128, "ostype": UBUNTU_2204, "ispublic": True, "zones": ["zone1"]}
    )
    found = cloudstack_api.listTemplates(
        templatefilter="executable", name=K8S_128, zoneid=zone(cloudstack, "zone1")
    )
    assert found["count"] == 2
    assert len({r["id"] for r in found["template"]}) == 2


# ----- templatefilter semantics ---------------------------------------------------------------------


def test_featured_and_community_split_public_templates(cloudstack_api: Any) -> None:
    featured = names(cloudstack_api.listTemplates(templatefilter="featured"))
    community = names(cloudstack_api.listTemplates(templatefilter="community"))
    assert {n for n, _ in featured} == {"CentOS 5.5(64-bit) no GUI (KVM)"}
    assert {n for n, _ in community} == {K8S_128, K8S_129}


def test_not_ready_template_visibility(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    """Downloading rows: hidden from featured/community/isready=true and from executable when an
    admin names account+domainid, but shown by a plain executable listing (listInReadyState)."""
    root = cloudstack.state.domain_by_path("ROOT")
    assert root is not None
    cloudstack.state.settings.download.poll_steps = 100  # every listTemplates call is a progress tick
    row = register(cloudstack_api, cloudstack, name="fresh", ispublic=True, isfeatured=True)[0]
    assert (row["isready"], row["status"], row["isfeatured"]) == (False, "0% Downloaded", True)

    def visible(**params: Any) -> bool:
        return "fresh" in {n for n, _ in names(cloudstack_api.listTemplates(**params))}

    assert visible(templatefilter="executable")
    assert visible(templatefilter="self")
    assert not visible(templatefilter="executable", account="admin", domainid=root.id)
    assert not visible(templatefilter="executable", isready=True)
    assert not visible(templatefilter="featured")
    cloudstack.state.settings.download.poll_steps = 1
    poll_until_ready(cloudstack_api, row["id"])
    assert visible(templatefilter="featured")
    assert visible(templatefilter="executable", account="admin", domainid=root.id)


def test_executable_for_a_user_hides_other_accounts_private_templates(cloudstack: CloudStackDouble) -> None:
    from tests.csdouble.seed import add_template

    as_user(cloudstack)
    add_template(
        cloudstack.state,
        {
            "name": "admin-private",
            "ostype": UBUNTU_2204,
            "zones": ["zone1"],
            "owner": {"account": "admin", "domain": "ROOT"},
        },
    )
    add_template(cloudstack.state, {"name": "mine", "ostype": UBUNTU_2204, "zones": ["zone1"]})
    api = _client(cloudstack)
    visible = {n for n, _ in names(api.listTemplates(templatefilter="executable"))}
    assert "mine" in visible and K8S_128 in visible and "admin-private" not in visible
    assert {n for n, _ in names(api.listTemplates(templatefilter="self"))} == {"mine"}
    rows = api.listTemplates(templatefilter="executable", name=K8S_128)["template"]
    assert all("status" not in r for r in rows)  # status is shown to admins and owners only


def test_all_is_admin_only(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    from tests.csdouble.seed import add_template

    add_template(
        cloudstack.state,
        {
            "name": "dev-private",
            "ostype": UBUNTU_2204,
            "zones": ["zone1"],
            "owner": {"account": "dev-team", "domain": "ROOT/capc"},
        },
    )
    assert "dev-private" not in {
        n for n, _ in names(cloudstack_api.listTemplates(templatefilter="executable"))
    }
    assert "dev-private" in {n for n, _ in names(cloudstack_api.listTemplates(templatefilter="all"))}
    as_user(cloudstack)
    with pytest.raises(CloudStackApiException) as caught:
        _client(cloudstack).listTemplates(templatefilter="all")
    assert caught.value.error["errortext"] == "Filter all can be specified by admin only"
    assert caught.value.error["cserrorcode"] == 4350


def test_project_templates_need_projectid(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    from tests.csdouble.seed import add_template

    add_template(
        cloudstack.state,
        {
            "name": "project-image",
            "ostype": UBUNTU_2204,
            "zones": ["zone1", "zone2"],
            "owner": {"project": "capc-clusters"},
        },
    )
    project = cloudstack.state.project_named("capc-clusters")
    assert project is not None
    assert "project-image" not in {
        n for n, _ in names(cloudstack_api.listTemplates(templatefilter="executable"))
    }
    in_project = names(cloudstack_api.listTemplates(templatefilter="executable", projectid=project.id))
    assert ("project-image", "zone1") in in_project and (K8S_128, "zone1") in in_project
    rows = cloudstack_api.listTemplates(templatefilter="self", projectid=project.id)["template"]
    assert {r["project"] for r in rows} == {"capc-clusters"} and "account" not in rows[0]


def test_unknown_filter_is_rejected(cloudstack_api: Any) -> None:
    with pytest.raises(CloudStackApiException) as caught:
        cloudstack_api.listTemplates(templatefilter="mine")
    assert caught.value.error["errorcode"] == 431
    assert caught.value.error["errortext"].endswith("VirtualMachineTemplate.TemplateFilter.mine")


def test_private_template_by_id_of_another_account_is_denied(cloudstack: CloudStackDouble) -> None:
    template_id = cloudstack.state.templates_named(K8S_128)[0].id
    as_user(cloudstack)
    cloudstack.state.templates[template_id].ispublic = False
    with pytest.raises(CloudStackApiException) as caught:
        _client(cloudstack).listTemplates(templatefilter="executable", id=template_id)
    assert caught.value.response.status_code == 531


def test_tags_filter_matches_any_pair(cloudstack_api: Any) -> None:
    found = cloudstack_api.listTemplates(
        templatefilter="executable",
        tags=[{"key": "capc.k8s-version", "value": "v1.29.3"}, {"key": "capc.os", "value": "windows"}],
    )
    assert {n for n, _ in names(found)} == {K8S_129}
    with pytest.raises(CloudStackApiException) as caught:
        cloudstack_api.listTemplates(templatefilter="executable", tags=[{"key": "capc.os"}])
    assert caught.value.error["errortext"] == "No value is passed in for key capc.os"
    assert {(t["key"], t["value"]) for t in found["template"][0]["tags"]} == {
        ("capc.k8s-version", "v1.29.3"),
        ("capc.os", "ubuntu-2204"),
    }


def _client(double: CloudStackDouble) -> Any:
    from cs import CloudStack

    return CloudStack(double.endpoint, double.api_key, double.secret_key, poll_interval=0.01, job_timeout=10)


# ----- registerTemplate -----------------------------------------------------------------------------


def test_register_returns_downloading_rows_that_become_ready(
    cloudstack: CloudStackDouble, cloudstack_api: Any
) -> None:
    rows = register(
        cloudstack_api,
        cloudstack,
        zoneid=None,
        zoneids=[zone(cloudstack, "zone1"), zone(cloudstack, "zone2")],
    )
    assert [(r["zonename"], r["isready"], r["status"]) for r in rows] == [
        ("zone1", False, "0% Downloaded"),
        ("zone2", False, "0% Downloaded"),
    ]
    ready = poll_until_ready(cloudstack_api, rows[0]["id"])
    assert {r["status"] for r in ready} == {"Download Complete"}
    assert ready[0]["url"].endswith(".qcow2.bz2") and ready[0]["ispublic"] is False


def test_register_all_zones_is_cross_zone(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    rows = register(cloudstack_api, cloudstack, zoneid="-1")
    assert {r["zonename"] for r in rows} == {"zone1", "zone2"} and all(r["crossZones"] for r in rows)


def test_register_skips_disabled_zones(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    cloudstack.state.zones[zone(cloudstack, "zone2")].allocationstate = "Disabled"
    rows = register(
        cloudstack_api,
        cloudstack,
        zoneid=None,
        zoneids=[zone(cloudstack, "zone1"), zone(cloudstack, "zone2")],
    )
    assert [r["zonename"] for r in rows] == ["zone1"]


@pytest.mark.parametrize("missing", ["format", "hypervisor", "name", "url"])
def test_register_required_parameters(
    cloudstack: CloudStackDouble, cloudstack_api: Any, missing: str
) -> None:
    with pytest.raises(CloudStackApiException) as caught:
        register(cloudstack_api, cloudstack, **{missing: None})
    assert caught.value.error["errortext"] == (
        f"Unable to execute API command registertemplate due to missing parameter {missing}"
    )


@pytest.mark.parametrize(
    ("params", "text"),
    [
        ({"ostypeid": None}, "Please provide a guest OS type"),
        ({"zoneid": None}, "Either zoneid or zoneids is required. Both cannot be null."),
        ({"zoneids": "-1"}, "Both zoneid and zoneids cannot be specified at the same time"),
        (
            {"hypervisor": "VMware", "directdownload": True},
            "Parameter directdownload is only allowed for KVM templates",
        ),
        (
            {"format": "QCOW3"},
            "Image format: QCOW3 is incorrect. Supported formats are QCOW2, RAW, VHD, VHDX, ISO, "
            "OVA, BAREMETAL, VMDK, VDI, TAR, ZIP, DIR",
        ),
        (
            {"url": "http://images.example.com/capi/image.vhd"},
            "Please specify a valid URL. URL:/capi/image.vhd is an invalid for the format qcow2",
        ),
        ({"url": "http://images.example.com/capi/image.tar.xz"}, "Please specify a valid qcow2"),
        ({"url": "http://127.0.0.1:8000/image.qcow2"}, "Illegal host specified in url"),
        ({"url": "http://localhost/image.qcow2"}, "Illegal host specified in url"),
        ({"url": "http://[2001:db8::5]/image.qcow2"}, "IPV6 addresses not supported (2001:db8::5)"),
        (
            {"url": "ftp://images.example.com/image.qcow2"},
            "Unsupported scheme for url: ftp://images.example.com/image.qcow2",
        ),
    ],
)
def test_register_validation(
    cloudstack: CloudStackDouble, cloudstack_api: Any, params: dict[str, Any], text: str
) -> None:
    with pytest.raises(CloudStackApiException) as caught:
        register(cloudstack_api, cloudstack, **params)
    assert caught.value.response.status_code == 431
    assert caught.value.error["errortext"] == text
    assert not [t for t in cloudstack.state.templates.values() if t.name == "ubuntu-2404-kube-v1.30.1"]


def test_register_unknown_hypervisor_is_an_invalid_parameter(
    cloudstack: CloudStackDouble, cloudstack_api: Any
) -> None:
    with pytest.raises(CloudStackApiException) as caught:
        register(cloudstack_api, cloudstack, hypervisor="Xen")
    assert caught.value.error["cserrorcode"] == 4350
    assert caught.value.error["errortext"].startswith(
        "Hypervisor Type: Xen is invalid. Supported Hypervisor types"
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://images.example.com/a.img",
        "https://images.example.com/a.QCOW2.GZ",
        "http://10.0.0.5/a.qcow2.zip",
    ],
)
def test_register_accepts_qcow2_extensions(
    cloudstack: CloudStackDouble, cloudstack_api: Any, url: str
) -> None:
    assert register(cloudstack_api, cloudstack, url=url)[0]["isready"] is False


def test_loopback_urls_are_accepted_when_the_double_allows_them(tmp_path: Any) -> None:
    with CloudStackDouble(load_seed(EXAMPLE_SEED), allow_loopback_urls=True, data_dir=tmp_path) as double:
        rows = register(_client(double), double, url="http://127.0.0.1:8000/image.qcow2")
        assert rows[0]["url"] == "http://127.0.0.1:8000/image.qcow2"


def test_only_admins_register_all_zone_or_featured_templates(cloudstack: CloudStackDouble) -> None:
    as_user(cloudstack)
    api = _client(cloudstack)
    with pytest.raises(CloudStackApiException) as caught:
        register(api, cloudstack, zoneid="-1")
    assert caught.value.error["errortext"].startswith("Template registered for 'All zones' can only be owned")
    assert register(api, cloudstack, isfeatured=True, ispublic=True)[0]["isfeatured"] is False


# ----- copy, delete, update, tags ---------------------------------------------------------------------


def test_copy_template_is_async_and_adds_the_zone(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    row = register(cloudstack_api, cloudstack)[0]
    poll_until_ready(cloudstack_api, row["id"])
    job = cloudstack_api.copyTemplate(id=row["id"], destzoneid=zone(cloudstack, "zone2"))
    # The job begins at once: the copy is in zone2 before anyone asks about the job.
    assert cloudstack.state.template_status(row["id"]) == {
        "zone1": "Download Complete",
        "zone2": "0% Downloaded",
    }
    first = cloudstack_api.queryAsyncJobResult(jobid=job["jobid"])
    assert (first["jobstatus"], "jobresult" in first) == (0, False)
    progress = []
    for _ in range(10):
        done = cloudstack_api.queryAsyncJobResult(jobid=job["jobid"])
        if done["jobstatus"] != 0:
            break
        rows = cloudstack_api.listTemplates(
            templatefilter="self", id=row["id"], zoneid=zone(cloudstack, "zone2")
        )
        progress.append(rows["template"][0]["status"])
    # The copy downloads into zone2 while the job is pending (one step per job poll and per listing).
    assert progress == ["40% Downloaded", "80% Downloaded"]
    assert done["jobstatus"] == 1 and done["jobresultcode"] == 0
    assert done["cmd"] == "org.apache.cloudstack.api.command.user.template.CopyTemplateCmd"
    copied = done["jobresult"]["template"]
    assert (copied["zonename"], copied["isready"]) == ("zone2", True)
    assert {r["zonename"] for r in poll_until_ready(cloudstack_api, row["id"])} == {"zone1", "zone2"}


def test_a_copy_nobody_follows_goes_on(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    """A client that stops after copyTemplate (Ctrl-C) leaves the job running, as in CloudStack: the
    copy is listed in its zone, moves on with the listings, and ends ready without a job poll."""
    row = register(cloudstack_api, cloudstack)[0]
    poll_until_ready(cloudstack_api, row["id"])
    cloudstack_api.copyTemplate(id=row["id"], destzoneid=zone(cloudstack, "zone2"))
    zone2 = zone(cloudstack, "zone2")
    listed = cloudstack_api.listTemplates(templatefilter="self", id=row["id"], zoneid=zone2)
    assert [(t["zonename"], t["isready"], t["status"]) for t in listed["template"]] == [
        ("zone2", False, "20% Downloaded")
    ]
    assert {r["zonename"] for r in poll_until_ready(cloudstack_api, row["id"])} == {"zone1", "zone2"}
    assert [c.command for c in cloudstack.state.calls].count("queryAsyncJobResult") == 0


def test_copy_of_a_template_still_downloading_fails_the_job(
    cloudstack: CloudStackDouble, cloudstack_api: Any
) -> None:
    row = register(cloudstack_api, cloudstack)[0]
    with pytest.raises(CloudStackApiException) as caught:
        cloudstack_api.copyTemplate(id=row["id"], destzoneid=zone(cloudstack, "zone2"), fetch_result=True)
    assert caught.value.args[0] == "Job failure"
    assert caught.value.error["errorcode"] == 431


def test_delete_from_one_zone_then_everywhere(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    template_id = cloudstack.state.templates_named(K8S_128)[0].id
    assert cloudstack_api.deleteTemplate(
        id=template_id, zoneid=zone(cloudstack, "zone1"), fetch_result=True
    ) == {"success": True}
    assert names(cloudstack_api.listTemplates(templatefilter="self", id=template_id)) == [(K8S_128, "zone2")]
    assert cloudstack_api.deleteTemplate(id=template_id, fetch_result=True) == {"success": True}
    assert cloudstack_api.listTemplates(templatefilter="self", id=template_id) == {}
    assert cloudstack_api.listTemplates(templatefilter="executable", name=K8S_128) == {}
    with pytest.raises(CloudStackApiException) as caught:
        cloudstack_api.deleteTemplate(id=template_id, fetch_result=True)
    assert caught.value.error == {
        "errorcode": 431,
        "errortext": f"unable to find template with id {template_id}",
    }


def test_query_async_job_result_for_an_unknown_job(cloudstack_api: Any) -> None:
    with pytest.raises(CloudStackApiException) as caught:
        cloudstack_api.queryAsyncJobResult(jobid="5d5c2b7e-3c1e-4a59-9f6e-2b1a0c9d8e7f")
    assert caught.value.response.status_code == 431


def test_update_template_changes_fields_and_checks_ownership(
    cloudstack: CloudStackDouble, cloudstack_api: Any
) -> None:
    template_id = cloudstack.state.templates_named(K8S_129)[0].id
    updated = cloudstack_api.updateTemplate(
        id=template_id, displaytext="Ubuntu 22.04 / k8s 1.29.3", details={"rootDiskController": "scsi"}
    )
    assert updated["template"]["displaytext"] == "Ubuntu 22.04 / k8s 1.29.3"
    assert updated["template"]["details"] == {"rootDiskController": "scsi"}
    as_user(cloudstack)
    with pytest.raises(CloudStackApiException) as caught:
        _client(cloudstack).updateTemplate(id=template_id, displaytext="mine now")
    assert caught.value.response.status_code == 531


def test_tags_roundtrip(cloudstack: CloudStackDouble, cloudstack_api: Any) -> None:
    row = register(cloudstack_api, cloudstack)[0]
    tags = [{"key": "capc.k8s-version", "value": "v1.30.1"}, {"key": "capc.os", "value": "ubuntu-2404"}]
    assert cloudstack_api.createTags(
        resourceids=[row["id"]], resourcetype="Template", tags=tags, fetch_result=True
    ) == {"success": True}
    listed = cloudstack_api.listTags(resourceid=row["id"])["tag"]
    assert {(t["key"], t["value"], t["resourcetype"]) for t in listed} == {
        ("capc.k8s-version", "v1.30.1", "Template"),
        ("capc.os", "ubuntu-2404", "Template"),
    }
    by_tag = cloudstack_api.listTemplates(
        templatefilter="self", tags=[{"key": "capc.os", "value": "ubuntu-2404"}]
    )
    assert [t["id"] for t in by_tag["template"]] == [row["id"]]
    cloudstack_api.deleteTags(
        resourceids=row["id"], resourcetype="Template", tags=[{"key": "capc.os"}], fetch_result=True
    )
    assert [t["key"] for t in cloudstack_api.listTags(resourceid=row["id"])["tag"]] == ["capc.k8s-version"]


def test_create_tags_errors(cloudstack_api: Any) -> None:
    with pytest.raises(CloudStackApiException) as caught:
        cloudstack_api.createTags(resourceids="f3a9a4de-0000-4000-8000-000000000001", resourcetype="Template")
    assert caught.value.response.status_code == 431  # no tags: refused before a job exists
    missing = "f3a9a4de-0000-4000-8000-000000000001"
    with pytest.raises(CloudStackApiException) as caught:
        cloudstack_api.createTags(
            resourceids=missing, resourcetype="Template", tags={"key": "k", "value": "v"}, fetch_result=True
        )
    assert caught.value.error["errortext"] == f"Unable to find resource by id {missing} and type Template"
