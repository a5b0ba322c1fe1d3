"""Every command line the docs show parses with dibpy's own parsers.

The code blocks (fenced, or indented by four spaces) of doc/**/*.md and README.md are
scanned for lines running disk-image-create, ramdisk-image-create, element-info or dibpy
(after an optional ``$`` prompt and ``VAR=value`` assignments; ``\\`` continuations
joined).  Each one must parse (no unknown option, no missing argument), its -t types must
be known output types and its elements must exist (elements/, dibpy/library/, the test
fixtures, doc/examples/elements/), or be a placeholder such as ELEMENT.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

COMMANDS = ("disk-image-create", "ramdisk-image-create", "element-info", "dibpy")
FENCE = re.compile(r"^(\s*)(```|~~~)")
ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def doc_files() -> list[Path]:
    return sorted((REPO / "doc").rglob("*.md")) + [REPO / "README.md"]


def command_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, joined command line) of each fenced-block line in ``path``."""
    lines = path.read_text().splitlines()
    inside = False
    prompts = False  # a block with "$ " prompts: only those lines are commands
    pending = ""
    start = 0
    for n, raw in enumerate(lines, 1):
        if FENCE.match(raw):
            inside = not inside
            pending = ""
            if inside:
                block = []
                for later in lines[n:]:
                    if FENCE.match(later):
                        break
                    block.append(later.strip())
                prompts = any(b.startswith("$ ") for b in block)
            continue
        indented = (
            not inside
            and raw.startswith("    ")
            and (n == 1 or not lines[n - 2].strip() or lines[n - 2].startswith("    "))
        )
        if not inside and not indented:
            pending = ""
            continue
        line = raw.strip()
        if prompts and not pending and not line.startswith("$ "):
            continue
        if pending:
            line = pending + " " + line
        else:
            start = n
        if line.endswith("\\"):
            pending = line[:-1].rstrip()
            continue
        pending = ""
        yield start, line


def split(line: str) -> list[str] | None:
    """The words from the command name on, or None if the line does not run one."""
    text = line[2:] if line.startswith("$ ") else line
    text = text.split(" #", 1)[0].rstrip()
    if re.search(r"\S {3,}\S", text):  # a table or a program's output in columns
        return None
    # only the first command of a pipeline or a && chain
    text = re.split(r"\s(?:\||&&|;|>|2>)\s", text, maxsplit=1)[0]
    try:
        words = shlex.split(text)
    except ValueError:
        return None
    words = [w for w in words if not re.match(r"^\d*[<>]", w)]  # redirections
    while words and ASSIGN.match(words[0]):
        words.pop(0)
    if words and words[0] == "sudo":
        words.pop(0)
    if not words or words[0] not in COMMANDS:
        return None
    if len(words) > 1 and words[1].endswith(":"):  # a program's message, not a command
        return None
    return words


def all_commands() -> list[tuple[str, list[str]]]:
    found = []
    for path in doc_files():
        for n, line in command_lines(path):
            words = split(line)
            if words:
                found.append((f"{path.relative_to(REPO)}:{n}", words))
    return found


COMMAND_LINES = all_commands()


def known_elements() -> set[str]:
    roots = [
        REPO / "elements",
        REPO / "dibpy" / "library",
        REPO / "tests" / "fixtures",
        REPO / "doc" / "examples" / "elements",
    ]
    names = set()
    for root in roots:
        for readme in root.rglob("README*"):
            names.add(readme.parent.name)
        for marker in root.rglob("element-deps"):
            names.add(marker.parent.name)
    return names


ELEMENTS = known_elements()


def placeholder(name: str) -> bool:
    """ELEMENT, MY_ELEMENT, <element>, ..., $VAR: names a reader replaces."""
    return (
        name.isupper()
        or name.startswith(("<", "$", "["))
        or "..." in name
        or name.replace("-", "_").isupper()
    )


def parse(words: list[str]) -> argparse.Namespace:
    from dibpy.cli import disk_image_create, element_info, main

    cmd, rest = words[0], words[1:]
    if cmd == "dibpy":
        if not rest or rest[0].startswith("-"):
            return main.build_parser().parse_args(rest)
        assert rest[0] in main.COMMANDS, f"no dibpy command {rest[0]!r}"
        parser = main.sub_parser(rest[0])
        cmd = {"build": "disk-image-create", "ramdisk": "ramdisk-image-create"}.get(
            rest[0], rest[0]
        )
        rest = rest[1:]
    elif cmd == "element-info":
        parser = element_info.build_parser()
    else:
        parser = disk_image_create.build_parser(cmd)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            ns = parser.parse_args(rest)
    except SystemExit as e:
        if e.code == 0:  # --help, --version
            return argparse.Namespace(_cmd=cmd)
        raise AssertionError(err.getvalue().strip().splitlines()[-1]) from None
    ns._cmd = cmd
    return ns


def test_the_docs_show_commands() -> None:
    """The scan finds the commands (a broken scanner would make the next test vacuous)."""
    cmds = {words[0] for _, words in COMMAND_LINES}
    assert {"disk-image-create", "element-info", "dibpy"} <= cmds, cmds
    assert len(COMMAND_LINES) >= 15


@pytest.mark.parametrize(("where", "words"), COMMAND_LINES, ids=[w for w, _ in COMMAND_LINES])
def test_doc_command_parses(where: str, words: list[str]) -> None:
    from dibpy.cli import output_types

    line = shlex.join(words)
    try:
        ns = parse(words)
    except AssertionError as e:
        pytest.fail(f"{where}: {line}: {e}")
    types = set(output_types())
    given = getattr(ns, "image_types", None) or []
    for t in [given] if isinstance(given, str) else given:
        for one in str(t).split(","):
            assert placeholder(one) or one in types, f"{where}: {line}: unknown -t {one}"
    if ns._cmd in ("disk-image-create", "ramdisk-image-create", "element-info"):
        missing = [
            e
            for e in getattr(ns, "elements", None) or []
            if e not in ELEMENTS and not placeholder(e)
        ]
        assert not missing, f"{where}: {line}: no element {', '.join(missing)}"


def test_a_wrong_option_in_a_doc_is_caught() -> None:
    with pytest.raises(AssertionError, match="unrecognized arguments|invalid choice"):
        parse(["disk-image-create", "--no-such-option", "-o", "x", "vm"])
    assert split("$ DIB_RELEASE=trixie disk-image-create -t raw -o x vm 2>log") == [
        "disk-image-create",
        "-t",
        "raw",
        "-o",
        "x",
        "vm",
    ]
    assert split("dibpy boot-test: error: no login prompt") is None
