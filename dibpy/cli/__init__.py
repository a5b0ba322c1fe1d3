"""Command-line entry points: argument parsing only, then hand over to the engine."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from dibpy.errors import DibpyError, Interrupted
from dibpy.log import setup_logging

LOG = logging.getLogger("dibpy")

Main = Callable[[Sequence[str]], int | None]


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
