"""dib-run-parts: run the hooks of one directory, the way a build runs a phase."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from dibpy.cli import add_version, entry, examples, make_parser, mark_file
from dibpy.errors import ConfigError
from dibpy.hooks import ORIGINS_FILE, environment_files, run_hooks, scan_dir, warn_skipped

PROG = "dib-run-parts"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = make_parser(
        prog,
        "Run every executable file in DIR whose name matches ^[0-9A-Za-z_-]+$, "
        "in sort -n order, after sourcing DIR/../environment.d/*.",
        examples(
            (f"{prog} /tmp/in_target.d/install.d", "run one phase's hooks"),
            (f"{prog} --list elements/base/install.d", "show the order they would run in"),
        ),
    )
    add_version(p)
    p.add_argument("--list", action="store_true", help="print the hooks that would run, in order")
    mark_file(p.add_argument("dir", metavar="DIR", help="the directory of hooks"), directory=True)
    return p


def main_args(argv: Sequence[str], prog: str = PROG) -> int:
    args = build_parser(prog).parse_args(argv)
    d = Path(args.dir)
    if not d.is_dir():
        raise ConfigError(f"{d} is not a directory", hint="dib-run-parts DIR runs the hooks in DIR")
    origins: dict[str, str] = {}
    of = d.parent / ORIGINS_FILE
    if of.is_file():
        import json

        prefix = d.name + "/"
        origins = {
            k[len(prefix) :]: v
            for k, v in json.loads(of.read_text()).items()
            if k.startswith(prefix)
        }
    scan = scan_dir(d, origins)
    warn_skipped(d.name, scan, origins)
    if args.list:
        for h in scan.hooks:
            print(h.path)
        return 0
    run_hooks(d.name, scan.hooks, environment_files(d.parent / "environment.d"), dict(os.environ))
    return 0


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    return entry(lambda a: main_args(a, prog), prog, argv)
