"""CAPC's own CloudStack client against the CloudStack double.

`tests/csgo` is a small Go program built on cloudstack-go (the version CAPC pins) that resolves a
template with the same cloudstack-go calls CAPC's ResolveTemplate makes:

- by name: `GetTemplateID(name, "executable", zoneID)` (listTemplates with name,
  templatefilter=executable and the failure domain's zone id), accepted only when exactly one row
  matches ("expected 1 Template with name X, but got N");
- by id: `GetTemplateByID(id, "executable")` (listTemplates with id and templatefilter=executable,
  no zone), accepted only when exactly one row matches; a name given as well must equal the name
  CloudStack returns.

These cases pin the template-resolution semantics that kubectl-capc must agree with: whatever
kubectl-capc concludes about a template in a zone (usable by CAPC, missing, ambiguous) has to be
what CAPC's client concludes against the same cloud. Facts they pin:

- a name is resolved per zone, and a copy in another zone does not count;
- names are unique per zone only case-insensitively (CloudStack's database collation), and two
  templates sharing a name in one zone make the name unusable for CAPC even though cloudstack-go
  itself picks one;
- readiness is not part of the resolution: a plain `executable` listing (no account+domainid)
  includes copies still downloading or failed (ListTemplatesCmd.listInReadyState), so CAPC resolves
  such a template and only the later VM deployment fails. kubectl-capc must check `isready` itself;
- the by-id path lists one row per zone, so a template present in two zones cannot be referenced by
  id (cloudstack-go: "There is more then one result for Template UUID").

The tests also show the double speaks the wire protocol cloudstack-go expects: its request signing
(signatureversion 3 with an RFC 3339 `expires`), response envelopes and error bodies.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.csdouble import CloudStackDouble, load_seed
from tests.csdouble.fixtures import EXAMPLE_SEED
from tests.csdouble.model import Template, Zone
from tests.csdouble.seed import add_template
from tests.support.csgo_support import NOT_READY_IN_ZONE, RUN_TIMEOUT_S, built_resolver, resolve, resolver_env

KUBE_128 = "ubuntu-2204-kube-v1.28.5"
KUBE_129 = "ubuntu-2204-kube-v1.29.3"


@pytest.fixture(scope="session")
def csgo() -> Path:
    return built_resolver()


def zones(double: CloudStackDouble) -> list[Zone]:
    return list(double.state.zones.values())


def only_template(double: CloudStackDouble, name: str) -> Template:
    [template] = double.state.templates_named(name)
    return template


def add(
    double: CloudStackDouble,
    name: str,
    zone_states: Mapping[str, Any],
    owner: Mapping[str, str] | None = None,
) -> Template:
    """Register a private template, zones given as {zone name: seed zone state}; owned by the caller's
    account unless `owner` ({account, domain} or {project}) says otherwise."""
    ostype = next(iter(double.state.ostypes))
    spec: dict[str, Any] = {"name": name, "ostype": ostype, "zones": dict(zone_states)}
    if owner is not None:
        spec["owner"] = dict(owner)
    return add_template(double.state, spec)


def listed(double: CloudStackDouble) -> list[dict[str, str]]:
    """The listTemplates parameters the double received (signing fields removed)."""
    return [call.params for call in double.state.calls if call.command == "listTemplates"]


# ----- by name, the path CAPC takes for `template.name` ------------------------------------------


@pytest.mark.parametrize("name", [KUBE_128, KUBE_129])
def test_example_scene_templates_resolve_by_name_in_every_zone(
    csgo: Path, cloudstack: CloudStackDouble, name: str
) -> None:
    template = only_template(cloudstack, name)
    assert len(zones(cloudstack)) == 2
    for zone in zones(cloudstack):
        outcome = resolve(csgo, cloudstack, "-name", name, "-zone-id", zone.id)
        assert outcome.exit_code == 0
        assert outcome.doc == {"id": template.id, "name": name, "count": 1}
    assert listed(cloudstack) == [
        {"name": name, "templatefilter": "executable", "zoneid": zone.id} for zone in zones(cloudstack)
    ]


def test_unknown_name_has_no_match(csgo: Path, cloudstack: CloudStackDouble) -> None:
    zone, name = zones(cloudstack)[0], "ubuntu-2204-kube-v1.30.0"
    outcome = resolve(csgo, cloudstack, "-name", name, "-zone-id", zone.id)
    assert outcome.doc["count"] == 0
    assert outcome.error.startswith(f"could not get Template ID from {name}: No match found for {name}: ")


def test_copy_in_another_zone_does_not_count(csgo: Path, cloudstack: CloudStackDouble) -> None:
    zone_a, zone_b = zones(cloudstack)
    template = add(cloudstack, "ubuntu-2204-kube-v1.30.1", {zone_a.name: "ready"})

    assert resolve(csgo, cloudstack, "-name", template.name, "-zone-id", zone_a.id).doc["id"] == template.id
    missing = resolve(csgo, cloudstack, "-name", template.name, "-zone-id", zone_b.id)
    assert missing.doc["count"] == 0
    assert f"No match found for {template.name}" in missing.error


def test_duplicate_name_in_one_zone_is_refused(csgo: Path, cloudstack: CloudStackDouble) -> None:
    zone_a, zone_b = zones(cloudstack)
    original = only_template(cloudstack, KUBE_128)
    add(cloudstack, KUBE_128, {zone_a.name: "ready"})

    outcome = resolve(csgo, cloudstack, "-name", KUBE_128, "-zone-id", zone_a.id)
    assert outcome.exit_code == 1
    assert outcome.doc == {"error": f"expected 1 Template with name {KUBE_128}, but got 2", "count": 2}
    # The other zone still holds a single copy, so the name stays usable there.
    assert resolve(csgo, cloudstack, "-name", KUBE_128, "-zone-id", zone_b.id).doc == {
        "id": original.id, "name": KUBE_128, "count": 1,
    }  # fmt: skip


def test_names_collide_case_insensitively(csgo: Path, cloudstack: CloudStackDouble) -> None:
    zone_a = zones(cloudstack)[0]
    add(cloudstack, KUBE_128.upper(), {zone_a.name: "ready"})

    outcome = resolve(csgo, cloudstack, "-name", KUBE_128, "-zone-id", zone_a.id)
    assert outcome.doc == {"error": f"expected 1 Template with name {KUBE_128}, but got 2", "count": 2}


@pytest.mark.parametrize("zone_state", list(NOT_READY_IN_ZONE.values()), ids=list(NOT_READY_IN_ZONE))
def test_not_ready_template_still_resolves_by_name(
    csgo: Path, cloudstack: CloudStackDouble, zone_state: object
) -> None:
    zone_a = zones(cloudstack)[0]
    template = add(cloudstack, "ubuntu-2204-kube-v1.30.2", {zone_a.name: zone_state})

    outcome = resolve(csgo, cloudstack, "-name", template.name, "-zone-id", zone_a.id)
    assert outcome.doc == {"id": template.id, "name": template.name, "count": 1}
    assert cloudstack.state.templates[template.id].zones[zone_a.id].state.value != "Ready"


def test_unknown_zone_is_a_parameter_error(csgo: Path, cloudstack: CloudStackDouble) -> None:
    zone_id = str(uuid.uuid4())
    outcome = resolve(csgo, cloudstack, "-name", KUBE_128, "-zone-id", zone_id)
    assert outcome.doc["count"] == -1
    assert outcome.error.startswith(f"could not get Template ID from {KUBE_128}: CloudStack API error 431 ")
    assert f"Invalid parameter zoneid value={zone_id} due to incorrect long value format" in outcome.error


# ----- by id, the path CAPC takes for `template.id` -----------------------------------------------


def test_single_zone_template_resolves_by_id(csgo: Path, cloudstack: CloudStackDouble) -> None:
    zone_a = zones(cloudstack)[0]
    template = add(cloudstack, "ubuntu-2204-kube-v1.30.3", {zone_a.name: "ready"})

    outcome = resolve(csgo, cloudstack, "-id", template.id)
    assert outcome.doc == {"id": template.id, "name": template.name, "count": 1}
    assert listed(cloudstack) == [{"id": template.id, "templatefilter": "executable"}]
    # CAPC's cross-check when the machine template also names it.
    assert resolve(csgo, cloudstack, "-id", template.id, "-name", template.name).exit_code == 0
    mismatch = resolve(csgo, cloudstack, "-id", template.id, "-name", KUBE_128)
    assert mismatch.doc == {
        "error": f"template name {KUBE_128} does not match name {template.name} "
        f"returned using UUID {template.id}",
        "count": 1,
    }


def test_template_in_two_zones_cannot_be_referenced_by_id(csgo: Path, cloudstack: CloudStackDouble) -> None:
    template = only_template(cloudstack, KUBE_129)
    assert len(template.zones) == 2

    outcome = resolve(csgo, cloudstack, "-id", template.id)
    assert outcome.doc == {
        "error": f"could not get Template by ID {template.id}: "
        f"There is more then one result for Template UUID: {template.id}!",
        "count": 2,
    }


def test_unknown_id_has_no_match(csgo: Path, cloudstack: CloudStackDouble) -> None:
    template_id = str(uuid.uuid4())
    outcome = resolve(csgo, cloudstack, "-id", template_id)
    # CloudStack answers 431 for an id it cannot map; cloudstack-go turns exactly that into "No match".
    assert outcome.doc == {
        "error": f"could not get Template by ID {template_id}: No match found for {template_id}: <nil>",
        "count": 0,
    }


# ----- scope and credentials ----------------------------------------------------------------------


def test_project_templates_need_the_project_id(csgo: Path, cloudstack: CloudStackDouble) -> None:
    zone = zones(cloudstack)[0]
    project = next(p for p in cloudstack.state.projects.values() if p.name == "capc-clusters")
    template = add(
        cloudstack, "ubuntu-2204-kube-v1.30.4", {zone.name: "ready"}, owner={"project": project.name}
    )

    outside = resolve(csgo, cloudstack, "-name", template.name, "-zone-id", zone.id)
    assert outside.doc["count"] == 0
    inside = resolve(csgo, cloudstack, "-name", template.name, "-zone-id", zone.id, "-project-id", project.id)
    assert inside.doc == {"id": template.id, "name": template.name, "count": 1}
    assert listed(cloudstack)[-1] == {
        "name": template.name, "templatefilter": "executable", "zoneid": zone.id, "projectid": project.id,
    }  # fmt: skip


def test_other_accounts_private_templates_are_invisible(csgo: Path) -> None:
    seed = load_seed(EXAMPLE_SEED)
    seed["credentials"] = {"account": "dev-team", "domain": "ROOT/capc"}
    with CloudStackDouble(seed) as double:
        zone = zones(double)[0]
        admins = add(double, "ubuntu-2204-kube-v1.30.5", {zone.name: "ready"}, owner={"account": "admin"})
        own = add(double, "ubuntu-2204-kube-v1.30.6", {zone.name: "ready"})

        assert resolve(csgo, double, "-name", admins.name, "-zone-id", zone.id).doc["count"] == 0
        assert resolve(csgo, double, "-name", own.name, "-zone-id", zone.id).doc["id"] == own.id
        # Public templates of other accounts (the example scene's node images) stay visible.
        public = only_template(double, KUBE_128)
        assert resolve(csgo, double, "-name", KUBE_128, "-zone-id", zone.id).doc["id"] == public.id


def test_wrong_secret_is_refused_without_leaking_keys(csgo: Path, cloudstack: CloudStackDouble) -> None:
    wrong_secret = "not-the-secret-" + uuid.uuid4().hex
    zone = zones(cloudstack)[0]
    outcome = resolve(csgo, cloudstack, "-name", KUBE_128, "-zone-id", zone.id, secret=wrong_secret)
    assert outcome.doc["count"] == -1
    assert outcome.error == (
        f"could not get Template ID from {KUBE_128}: CloudStack API error 401 (CSExceptionErrorCode: 0): "
        "unable to verify user credentials and/or request signature"
    )
    assert listed(cloudstack) == []


def test_unreachable_endpoint_error_hides_the_signed_query(csgo: Path, cloudstack: CloudStackDouble) -> None:
    endpoint = cloudstack.endpoint
    cloudstack.stop()
    env = resolver_env(endpoint, "key-" + uuid.uuid4().hex, "secret-" + uuid.uuid4().hex)
    run = subprocess.run([str(csgo), "-name", KUBE_128, "-zone-id", "z"], env=env, capture_output=True,
                         text=True, timeout=RUN_TIMEOUT_S)  # fmt: skip
    assert run.returncode == 1
    doc = json.loads(run.stdout)
    assert doc["count"] == -1
    assert "connection refused" in doc["error"]
    assert "?<redacted>" in doc["error"]
    for leaked in (env["CLOUDSTACK_KEY"], env["CLOUDSTACK_SECRET"], "apiKey=", "signature="):
        assert leaked not in run.stdout + run.stderr
