"""``dibpy cleanup``: remove what builds killed outright (SIGKILL, a crash) left behind."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from dibpy.cli import add_version, entry
from dibpy.errors import ConfigError


def main_args(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(
        prog="dibpy cleanup",
        description="Find builds that died without cleaning up (from the notes every build "
        "leaves beside its TMP_DIR/dib_build.* directory) and remove their processes, "
        "mounts, loop devices, build directories and partial outputs. Live builds are "
        "not touched. Every build does this for its TMP_DIR before it starts.",
    )
    add_version(p)
    p.add_argument(
        "--tmp-dir",
        default=os.environ.get("TMP_DIR") or "/tmp",
        help="the TMP_DIR the builds used (default: $TMP_DIR, else /tmp)",
    )
    args = p.parse_args(argv)
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


def main(argv: Sequence[str] | None = None) -> int:
    return entry(main_args, "dibpy cleanup", argv)
