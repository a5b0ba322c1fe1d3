"""Data flows one way: the engine never reaches back up into the command-line layer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

DIBPY = Path(__file__).resolve().parents[2] / "dibpy"


def imports(source: str, package: str) -> set[str]:
    """Absolute names of every module ``source`` (a module of ``package``) imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                up = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{up}.{base}" if base else up
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return found


def package_of(path: Path) -> str:
    parts = path.relative_to(DIBPY.parent).with_suffix("").parts
    return ".".join(parts if path.name == "__init__.py" else parts[:-1])


def cli_imports(source: str, package: str) -> list[str]:
    return sorted(m for m in imports(source, package) if m.split(".")[:2] == ["dibpy", "cli"])


def test_nothing_outside_cli_imports_the_cli() -> None:
    engine = [p for p in DIBPY.rglob("*.py") if "cli" not in p.relative_to(DIBPY).parts]
    assert len(engine) > 20
    offenders = {
        str(p.relative_to(DIBPY.parent)): cli_imports(p.read_text(), package_of(p)) for p in engine
    }
    assert {k: v for k, v in offenders.items() if v} == {}


@pytest.mark.parametrize(
    ("line", "package"),
    [
        ("import dibpy.cli.main", "dibpy"),
        ("from dibpy.cli import entry", "dibpy"),
        ("from dibpy import cli", "dibpy"),
        ("from .cli.element_info import X", "dibpy"),
        ("from ..cli import entry", "dibpy.blockdev"),
    ],
)
def test_the_check_sees_every_spelling_of_an_import_of_the_cli(line: str, package: str) -> None:
    assert cli_imports(line, package)


def test_the_check_lets_other_imports_through() -> None:
    assert cli_imports("from dibpy import client, hooks\nimport dibpy.clixyz", "dibpy") == []
