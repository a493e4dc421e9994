"""Every domain check has a unique ID of a new family and is documented in docs/checks.md."""

from __future__ import annotations

import re
from pathlib import Path

from kubectl_capc.checks import CHECKS as EXISTING
from kubectl_capc.domain import capacity, gitops_owners, workload

DOCS = Path(__file__).resolve().parents[3] / "docs" / "checks.md"
DOMAIN_CHECKS = (*workload.CHECKS, *capacity.CHECKS, *gitops_owners.CHECKS)


def test_ids_are_new_unique_and_documented_with_severity_and_title() -> None:
    ids = [check.id for check in DOMAIN_CHECKS]
    assert len(set(ids)) == len(ids)
    assert not set(ids) & {check.id for check in EXISTING}
    text = DOCS.read_text()
    sections = re.findall(r"^### (CAPC-[A-Z]\d{3})\n\n\*\*(error|warning)\*\* — (.+)\.$", text, re.MULTILINE)
    titles = {cid: (sev, title.replace("`", "")) for cid, sev, title in sections}
    for check in DOMAIN_CHECKS:
        assert re.fullmatch(r"CAPC-[WRG]\d{3}", check.id)
        assert check.hint
        assert text.count(f"### {check.id}\n") == 1, check.id
        assert titles.get(check.id) == (check.severity.value, check.title), check.id
