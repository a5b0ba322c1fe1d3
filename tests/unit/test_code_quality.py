"""Linters are tests: ruff (format and check), mypy (strict, on dibpy/), shellcheck on our
scripts, dib-lint on elements/.

Each tool is looked up next to the running Python (the venv's bin) and then on PATH; a
test is skipped only when its tool is not installed.  A failure shows the tool's output.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / "bin"


def tool(name: str) -> str:
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (not beside {sys.executable}, not on PATH)")
    return found


def check(argv: list[str]) -> None:
    r = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)
    assert r.returncode == 0, f"$ {' '.join(argv)}  (exit {r.returncode})\n{r.stdout}{r.stderr}"


def test_ruff_format() -> None:
    check([tool("ruff"), "format", "--check", "--diff", "dibpy", "tests", "bench"])


def test_ruff_check() -> None:
    check([tool("ruff"), "check", "--no-fix", "dibpy", "tests", "bench"])


def test_mypy_strict() -> None:
    # the configuration (strict, files = dibpy) comes from pyproject.toml
    check([tool("mypy")])


def test_shellcheck_on_our_scripts() -> None:
    # the elements' hooks are shellchecked by dib-lint (below); these are the rest
    scripts = [REPO / "dev", REPO / ".ci" / "run", *sorted((REPO / "bench").glob("dib-standins/*"))]
    lib = REPO / "dibpy" / "lib"
    scripts += sorted(p for p in lib.iterdir() if p.is_file())
    scripts += sorted((lib / "bin").iterdir())
    check([tool("shellcheck"), "-s", "bash", *map(str, scripts)])


def test_dib_lint_on_our_elements() -> None:
    elements = REPO / "elements"
    if not elements.is_dir() or not any(p.is_dir() for p in elements.iterdir()):
        pytest.skip("elements/ holds no elements yet")
    check([sys.executable, str(BIN / "dib-lint"), str(elements)])


COMMANDS = sorted(p.name for p in BIN.iterdir() if p.is_file() and os.access(p, os.X_OK))


@pytest.mark.parametrize("command", COMMANDS)
def test_unknown_option_is_one_clear_error(command: str) -> None:
    r = subprocess.run(
        [sys.executable, str(BIN / command), "--no-such-option-xyz"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip(), "no message on stderr"
