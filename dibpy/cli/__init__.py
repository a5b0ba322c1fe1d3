"""Command-line entry points: argument parsing only, then hand over to the engine."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from dibpy.errors import DibpyError, Interrupted
from dibpy.log import setup_logging

LOG = logging.getLogger("dibpy")

Main = Callable[[Sequence[str]], int | None]


def _lister(what: str) -> dict[str, Any]:
    import shtab

    spec: dict[str, Any] = shtab.cmd(f"dibpy completion --list {what} 2>/dev/null")
    return spec


def mark(action: argparse.Action, what: str) -> None:
    """Shell completion (``dibpy completion``, made by shtab): complete ``action``'s
    values from ``dibpy completion --list WHAT`` at each completion."""
    action.complete = _lister(what)  # type: ignore[attr-defined]


def mark_file(action: argparse.Action, directory: bool = False) -> None:
    """Shell completion: ``action`` takes a file (or a directory) name."""
    import shtab

    action.complete = shtab.DIRECTORY if directory else shtab.FILE  # type: ignore[attr-defined]


def output_types() -> list[str]:
    """The -t types: dibpy's own and every installed ``dibpy.output`` plugin's (only
    dibpy's for the man pages, which must not depend on what else is installed).  The
    plugins are named from their entry points, not loaded: ``--help`` must work, and
    stay quick, even beside a plugin that is broken (a build using it says so)."""
    from importlib.metadata import entry_points

    from dibpy import outputs

    names = set(outputs.BUILTINS)
    if not static_docs():
        names |= {ep.name for ep in entry_points(group=outputs.GROUP)}
    return sorted(names)


def static_docs() -> bool:
    """True while the man pages are generated: help text must then not depend on this
    host or on the plugins installed beside dibpy."""
    return bool(os.environ.get("DIBPY_STATIC_DOCS"))


class HelpFormatter(argparse.HelpFormatter):
    """Fills prose paragraphs to the terminal's width, keeps indented lines (examples,
    tables) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out: list[str] = []
        prose: list[str] = []

        def flush() -> None:
            if prose:
                out.append(
                    textwrap.fill(
                        " ".join(prose), width, initial_indent=indent, subsequent_indent=indent
                    )
                )
                prose.clear()

        for line in text.splitlines():
            if not line.strip():
                flush()
                out.append("")
            elif line.startswith(" ") or line.endswith(":"):
                flush()
                out.append(indent + line)
            else:
                prose.append(line.strip())
        flush()
        return "\n".join(out)


def examples(*pairs: tuple[str, str]) -> str:
    """The ``examples:`` section of a command's epilog: each command line, then what it does."""
    lines = ["examples:"]
    for cmd, what in pairs:
        lines += [f"  {cmd}", f"      {what}"]
    return "\n".join(lines)


def make_parser(
    prog: str,
    description: str,
    examples_text: str,
    epilog: Iterable[str] = (),
    **kw: object,
) -> argparse.ArgumentParser:
    """Every command's parser: its description, then after the options the given epilog
    sections and its examples (``--help`` and the man pages show the same)."""
    sections = [*epilog, examples_text]
    return argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog="\n\n".join(s for s in sections if s),
        formatter_class=HelpFormatter,
        **kw,  # type: ignore[arg-type]
    )


def add_version(parser: argparse.ArgumentParser) -> None:
    """--version on every command: dibpy's version and the diskimage-builder it follows
    (disk-image-create prints diskimage-builder's bare version instead, for scripts)."""
    from dibpy import DIB_COMPAT_VERSION, __version__

    parser.add_argument(
        "--version",
        action="version",
        version=f"%(prog)s (dibpy {__version__}; diskimage-builder {DIB_COMPAT_VERSION})",
    )


def wants_traceback(argv: Sequence[str]) -> bool:
    return (
        "--debug" in argv
        or any(a == "-x" or (a.startswith("-x") and set(a[1:]) == {"x"}) for a in argv)
        or bool(os.environ.get("DIBPY_TRACEBACK"))
    )


def entry(fn: Main, prog: str, argv: Sequence[str] | None = None) -> int:
    """Run a command's main; expected failures are one line plus a hint, exit non-zero."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not logging.getLogger("dibpy").handlers:
        setup_logging()
    try:
        rc = fn(args)
        return int(rc or 0)
    except DibpyError as e:
        if wants_traceback(args):
            LOG.exception("%s: error", prog)
        print(f"{prog}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return Interrupted.exit_code
    except BrokenPipeError:
        return 1
