"""The documentation site builds without a warning, and its generated pages are current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dibpy import docgen
from tests.conftest import REPO


def test_generated_reference_pages_are_current() -> None:
    stale = [
        rel for rel, text in docgen.pages().items() if (REPO / "doc" / rel).read_text() != text
    ]
    assert not stale, f"stale: {stale}; run `python -m dibpy.docgen`"


def test_docgen_check_names_a_stale_page(tmp_path: Path) -> None:
    (tmp_path / "reference").mkdir()
    (tmp_path / "reference" / "options.md").write_text("old\n")
    r = subprocess.run(
        [sys.executable, "-m", "dibpy.docgen", "--check", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1
    assert "stale: reference/options.md, reference/elements.md" in r.stderr
    assert (tmp_path / "reference" / "options.md").read_text() == "old\n"


def test_every_setting_and_shipped_element_is_in_the_reference() -> None:
    from dibpy.config import SETTINGS
    from dibpy.elements import builtin_elements_dir

    options = docgen.options_page()
    for s in SETTINGS:
        for name in (*s.flags, *s.env_names):
            assert f"`{name}`" in options, name
    elements = docgen.elements_page()
    for d in builtin_elements_dir().iterdir():
        if d.is_dir():
            assert f"\n## {d.name}\n" in elements, d.name


def test_the_site_builds_with_warnings_as_errors(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "reference" / "elements.html").is_file()
    assert (tmp_path / "index.html").is_file()
