"""The committed man pages are what the parsers generate, and man renders them."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from dibpy.cli import manpages
from tests.conftest import REPO

MAN_DIR = REPO / "man" / "man1"


def test_man_pages_are_current(tmp_path: Path) -> None:
    manpages.generate(tmp_path)
    fresh = {p.name: p.read_text() for p in tmp_path.glob("*.1")}
    committed = {p.name: p.read_text() for p in MAN_DIR.glob("*.1")}
    assert sorted(fresh) == sorted(committed), "run: python -m dibpy.cli.manpages"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale man pages {stale}: run python -m dibpy.cli.manpages"


def test_every_console_script_has_a_page() -> None:
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    scripts = [
        line.split("=", 1)[0].strip()
        for line in cfg["options.entry_points"]["console_scripts"].strip().splitlines()
    ]
    for name in scripts:
        assert (MAN_DIR / f"{name}.1").is_file(), name


def test_pages_do_not_depend_on_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    a = manpages.render("disk-image-create")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("TMP_DIR", "/somewhere/else")
    assert manpages.render("disk-image-create") == a
    assert os.environ["COLUMNS"] == "200"


@pytest.mark.skipif(shutil.which("man") is None, reason="man-db is not installed")
@pytest.mark.parametrize("page", sorted(p.name for p in MAN_DIR.glob("*.1")))
def test_man_renders_the_page_without_warnings(page: str) -> None:
    r = subprocess.run(
        ["man", "--warnings", "-l", str(MAN_DIR / page)],
        capture_output=True,
        text=True,
        env={**os.environ, "MANWIDTH": "80", "MANPAGER": "cat", "PAGER": "cat"},
    )
    assert r.returncode == 0, r.stderr
    # "cannot adjust line": a long usage line troff cannot justify, harmless
    warnings = [w for w in r.stderr.splitlines() if w and "cannot adjust" not in w]
    assert not warnings, warnings
    name = page.removesuffix(".1")
    assert name.upper() in r.stdout and "NAME" in r.stdout and "SYNOPSIS" in r.stdout
    assert "EXAMPLES" in r.stdout
