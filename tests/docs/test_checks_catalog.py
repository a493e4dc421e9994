"""Every check has a unique, well-formed ID and is documented in docs/checks.md with its severity."""

from __future__ import annotations

import re
from pathlib import Path

from kubectl_capc.domain.checks import CHECKS

DOCS = Path(__file__).resolve().parents[2] / "docs" / "checks.md"


def _documented() -> dict[str, str]:
    """Check ID -> the severity its section states (`### CAPC-X000` then `**severity** — title`)."""
    text = DOCS.read_text()
    sections = re.findall(r"^### (CAPC-[A-Z]\d{3})\n\n\*\*(error|warning)\*\*", text, flags=re.MULTILINE)
    return dict(sections)


def test_ids_are_unique_and_well_formed() -> None:
    ids = [check.id for check in CHECKS]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"CAPC-[CSZTOUPWRG]\d{3}", check_id) for check_id in ids)


def test_every_check_is_documented_with_its_severity_and_nothing_else_is() -> None:
    assert _documented() == {check.id: check.severity.value for check in CHECKS}


def test_every_check_has_a_title_and_a_fix() -> None:
    for check in CHECKS:
        assert check.title and check.hint, check.id
        assert check.title in DOCS.read_text().replace("`", ""), check.id
