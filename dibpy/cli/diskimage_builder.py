"""diskimage-builder FILE...: build images described in YAML, like diskimage-builder's command.

Each file is a YAML list of image entries, validated with a JSON schema (every error is
reported with its file and YAML path before anything runs).  Entries are keyed by
``imagename``: an entry without one belongs to the previous entry's image (the first to
``image``), and an entry naming an image seen before, in any file, merges into it (lists
append, mappings update, other values replace).  Each merged entry runs one
``disk-image-create`` (``ramdisk-image-create`` for ``ramdisk: true``) of the dibpy this
command belongs to, in a child Python process.  With ``-j N`` up to N images build at
once, each with its own environment and its own TMP_DIR, their log lines prefixed with
the image name.  Unlike diskimage-builder's, ``image-extra-size`` and
``mkfs-journal-size`` work.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from dibpy import yamlbuild
from dibpy.cli import add_version, entry, examples, make_parser
from dibpy.errors import ConfigError

PROG = "diskimage-builder"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = make_parser(
        prog,
        __doc__.splitlines()[0],
        examples(
            (f"{prog} images.yaml", "build every image the file describes"),
            (f"{prog} -j 2 --stop-on-failure a.yaml b.yaml", "two at once; stop at a failure"),
            (f"{prog} --dry-run images.yaml", "print the disk-image-create commands"),
        ),
    )
    add_version(p)
    p.add_argument("--dry-run", action="store_true", help="print the commands, build nothing")
    p.add_argument(
        "--stop-on-failure",
        action="store_true",
        help="start no further image once one has failed",
    )
    p.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="build up to N images at once, each isolated, output prefixed with its name",
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="YAML image lists")
    return p


def main_args(argv: Sequence[str], prog: str = PROG) -> int:
    args = build_parser(prog).parse_args(argv)
    if args.jobs < 1:
        raise ConfigError(f"-j {args.jobs}: needs at least 1")
    entries = yamlbuild.load_entries(args.files)
    if args.dry_run:
        for e in entries:
            print(yamlbuild.command_line(e))
        return 0
    return yamlbuild.build_all(entries, jobs=args.jobs, stop_on_failure=args.stop_on_failure)


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    return entry(lambda a: main_args(a, prog), prog, argv)
