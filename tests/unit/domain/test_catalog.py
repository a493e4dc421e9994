"""The workload, capacity and GitOps checks have unique IDs, are in the catalogue and are documented."""

from __future__ import annotations

import re
from pathlib import Path

from kubectl_capc.domain.checks import CHECKS, capacity, gitops_owners, workload

DOCS = Path(__file__).resolve().parents[3] / "docs" / "checks.md"
DOMAIN_CHECKS = (*workload.CHECKS, *capacity.CHECKS, *gitops_owners.CHECKS)


def test_ids_are_unique_catalogued_and_documented_with_severity_and_title() -> None:
    ids = [check.id for check in DOMAIN_CHECKS]
    assert len(set(ids)) == len(ids)
    assert set(DOMAIN_CHECKS) <= set(CHECKS)
    text = DOCS.read_text()
    sections = re.findall(r"^### (CAPC-[A-Z]\d{3})\n\n\*\*(error|warning)\*\* — (.+)\.$", text, re.MULTILINE)
    titles = {cid: (sev, title.replace("`", "")) for cid, sev, title in sections}
    for check in DOMAIN_CHECKS:
        assert re.fullmatch(r"CAPC-[WRG]\d{3}", check.id)
        assert check.hint
        assert text.count(f"### {check.id}\n") == 1, check.id
        assert titles.get(check.id) == (check.severity.value, check.title), check.id
