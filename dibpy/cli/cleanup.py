"""``dibpy cleanup``: remove what builds killed outright (SIGKILL, a crash) left behind."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from dibpy.cli import add_version, entry, examples, make_parser
from dibpy.errors import ConfigError

PROG = "dibpy cleanup"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = make_parser(
        prog,
        "Find builds that died without cleaning up (from the notes every build "
        "leaves beside its TMP_DIR/dib_build.* directory) and remove their processes, "
        "mounts, loop devices, build directories and partial outputs. Live builds are "
        "not touched. Every build does this for its TMP_DIR before it starts.",
        examples(
            (prog, "clean up after dead builds in $TMP_DIR (else /tmp)"),
            (f"{prog} --tmp-dir /var/tmp/dib", "the builds that used another TMP_DIR"),
        ),
    )
    add_version(p)
    p.add_argument(
        "--tmp-dir",
        default=os.environ.get("TMP_DIR") or "/tmp",
        help="the TMP_DIR the builds used (default: $TMP_DIR, else /tmp)",
    )
    return p


def main_args(argv: Sequence[str], prog: str = PROG) -> int:
    args = build_parser(prog).parse_args(argv)
    tmp = Path(args.tmp_dir)
    if not tmp.is_dir():
        raise ConfigError(f"--tmp-dir {tmp}: not a directory")
    from dibpy.recovery import clean_dead

    cleaned = clean_dead(tmp)
    for d in cleaned:
        print(f"cleaned up {d}")
    if not cleaned:
        print(f"nothing to clean up in {tmp}")
    return 0


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    return entry(lambda a: main_args(a, prog), prog, argv)
