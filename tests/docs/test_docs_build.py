"""The documentation site builds with mkdocs in strict mode (any warning fails), as the test command runs
it, and strict mode really catches what it should: a broken link fails the build."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
CONFIG = REPO / "mkdocs.yml"


def build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
         "--site-dir", str(site)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def nav_pages(config: Path) -> list[str]:
    """The Markdown files mkdocs.yml's nav lists (each nav entry is `{title: page}`)."""
    document = yaml.safe_load(config.read_text())
    return [page for entry in document["nav"] for page in entry.values()]


def test_docs_build_in_strict_mode(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = build(CONFIG, site)
    assert result.returncode == 0, result.stderr
    for page in nav_pages(CONFIG):
        built = site / ("index.html" if page == "index.md" else f"{page.removesuffix('.md')}/index.html")
        assert built.is_file(), f"{page} was not built"
    assert (site / "rbac.yaml").read_bytes() == (DOCS / "rbac.yaml").read_bytes()


def test_every_page_is_in_the_nav() -> None:
    pages = sorted(path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md"))
    listed = nav_pages(CONFIG)
    missing = [page for page in pages if page not in listed]
    assert not missing, f"add these pages to the nav of mkdocs.yml: {missing}"


def test_strict_mode_fails_on_a_broken_link(tmp_path: Path) -> None:
    shutil.copytree(DOCS, tmp_path / "docs")
    shutil.copy(CONFIG, tmp_path / "mkdocs.yml")
    index = tmp_path / "docs" / "index.md"
    index.write_text(index.read_text() + "\nSee [the missing page](no-such-page.md).\n")
    result = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0
    assert "no-such-page.md" in result.stderr
