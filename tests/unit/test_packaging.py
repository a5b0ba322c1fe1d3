"""`pip install .` into a fresh venv gives every command, with the element library inside."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

COMMANDS = (
    "disk-image-create",
    "ramdisk-image-create",
    "element-info",
    "dib-block-device",
    "dib-run-parts",
    "dib-lint",
    "diskimage-builder",
    "dibpy",
)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    r = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(REPO)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0 and "No matching distribution" in r.stderr:
        pytest.skip(f"the package index is unreachable: {r.stderr.strip()[-300:]}")
    assert r.returncode == 0, r.stderr
    return venv


def test_every_command_is_installed(installed: Path) -> None:
    for cmd in COMMANDS:
        assert (installed / "bin" / cmd).is_file(), cmd


def test_installed_element_info_env_on_shipped_elements(installed: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ELEMENTS_PATH"}
    r = subprocess.run(
        [str(installed / "bin" / "element-info"), "--env", "debian-minimal", "vm"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    script = r.stdout + 'echo "$IMAGE_ELEMENT"\n'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    names = out.stdout.split()
    assert "debian-minimal" in names and "debootstrap" in names
    # the paths point into the installed package, not this checkout
    assert str(installed) in r.stdout and str(REPO / "elements") not in r.stdout
    # hooks keep their executable bits in the installed copy
    lib = next(installed.glob("lib/python*/site-packages/dibpy/library"))
    hooks = [p for p in lib.glob("*/root.d/*") if p.is_file()]
    assert hooks and all(os.access(p, os.X_OK) for p in hooks)


def test_man_pages_are_installed_and_man_finds_them(installed: Path) -> None:
    pages = installed / "share" / "man" / "man1"
    assert sorted(p.name for p in pages.glob("*.1")) == sorted(
        p.name for p in (REPO / "man" / "man1").glob("*.1")
    )
    # man finds pages beside the commands on PATH (bin/../share/man)
    env = {
        "PATH": f"{installed / 'bin'}:/usr/bin:/bin",
        "MANWIDTH": "80",
        "MANPAGER": "cat",
        "PAGER": "cat",
        "HOME": str(installed),
    }
    r = subprocess.run(["man", "disk-image-create"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "disk-image-create" in r.stdout and "EXAMPLES" in r.stdout


def test_pending_or_bad_usage_is_one_line(installed: Path) -> None:
    r = subprocess.run(
        [str(installed / "bin" / "dibpy"), "no-such-command"], capture_output=True, text=True
    )
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and "unknown command" in r.stderr


def test_every_command_answers_version() -> None:
    """disk-image-create as diskimage-builder (bare, for scripts); the rest name dibpy."""
    from dibpy import DIB_COMPAT_VERSION, __version__
    from dibpy.cli.main import COMMANDS as SUBCOMMANDS

    venv_bin = Path(sys.executable).parent
    calls = [[str(venv_bin / c)] for c in COMMANDS]
    calls += [[str(venv_bin / "dibpy"), sub] for sub in SUBCOMMANDS]
    for argv in calls:
        r = subprocess.run([*argv, "--version"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, (argv, r.stderr)
        name = Path(argv[0]).name
        if name in ("disk-image-create", "ramdisk-image-create") or argv[1:] in (
            ["build"],
            ["ramdisk"],
        ):
            assert r.stdout == f"{DIB_COMPAT_VERSION}\n", (argv, r.stdout)
        else:
            assert f"dibpy {__version__}" in r.stdout, (argv, r.stdout)
