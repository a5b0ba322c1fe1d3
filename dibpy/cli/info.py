"""``dibpy info IMAGE``: format, sizes, partitions, filesystems, bootloader and OS."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from dibpy.cli import add_version, entry, examples, make_parser

PROG = "dibpy info"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = make_parser(
        prog,
        "Describe a disk image (raw, qcow2, vhd, vhdx, vmdk, ova) without "
        "booting it: format, virtual and allocated size, partition table, filesystems "
        "with labels and UUIDs, the bootloader and the OS inside (os-release).  Non-raw "
        "images are read through a temporary sparse raw copy in TMPDIR.  A damaged or "
        "truncated image, or a file that is no disk image, is refused.",
        examples(
            (f"{prog} image.qcow2", "partitions, filesystems, bootloader and OS"),
            (f"{prog} --json image.raw | jq .partitions", "the same as JSON"),
        ),
    )
    add_version(p)
    p.add_argument("image", help="the disk image")
    p.add_argument(
        "-f",
        "--format",
        dest="fmt",
        metavar="FMT",
        help="the image's format (default: from its signatures; a raw disk needs a "
        "partition table or filesystem, or -f raw)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--debug", action="store_true", help="tracebacks and debug logging")
    return p


def main_args(argv: Sequence[str], prog: str = PROG) -> int:
    from dibpy.inspect import describe, render

    args = build_parser(prog).parse_args(argv)
    if args.debug:
        from dibpy.log import setup_logging

        setup_logging(debug=1)
    from dibpy.convert import INPUT_ALIASES, INPUTS
    from dibpy.errors import ConfigError

    fmt = args.fmt and INPUT_ALIASES.get(args.fmt, args.fmt)
    if fmt is not None and fmt not in INPUTS:
        raise ConfigError(f"-f {args.fmt}: not a format dibpy info reads ({', '.join(INPUTS)})")
    d = describe(Path(args.image), fmt)
    if args.json:
        print(json.dumps(d, indent=2))
    else:
        print(render(d))
    return 0


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    return entry(lambda a: main_args(a, prog), prog, argv)


if __name__ == "__main__":
    sys.exit(main())
