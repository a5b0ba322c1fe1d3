"""dib-block-device: diskimage-builder's block-device command, step by step.

Each subcommand is its own process; what ``create`` makes is journalled (JSON) in
``<build-dir>/states/block-device/`` as it is made, so ``umount``/``cleanup`` in a later
process tear it down, even after ``create`` was killed half-way.

    dib-block-device --params FILE init|create|writefstab|umount|cleanup|delete
    dib-block-device --params FILE getval root-label|root-fstype|boot-label|mount-points|
                                          image-path|image-block-device|image-block-devices

The params file may also be given by DIB_BLOCK_DEVICE_PARAMS_YAML.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from dibpy import run
from dibpy.blockdev import GETVAL_SYMBOLS
from dibpy.blockdev.session import Session
from dibpy.cli import add_version, entry, examples, make_parser
from dibpy.errors import ConfigError
from dibpy.log import LOG, setup_logging

PROG = "dib-block-device"
COMMANDS = ("init", "getval", "create", "writefstab", "umount", "cleanup", "delete")


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = make_parser(
        prog,
        "Create and tear down disk images "
        "from a block-device config (diskimage-builder compatible).",
        examples(
            (f"{prog} --params params.yaml init", "read and check the config"),
            (f"{prog} --params params.yaml create", "make the partitions and filesystems"),
            (f"{prog} --params params.yaml getval root-label", "print one value"),
            (f"{prog} --params params.yaml umount", "unmount (cleanup: detach too)"),
        ),
        ["The params file may also be given by DIB_BLOCK_DEVICE_PARAMS_YAML."],
    )
    add_version(p)
    p.add_argument("--params", help="the params YAML (default: $DIB_BLOCK_DEVICE_PARAMS_YAML)")
    p.add_argument("--debug", "-x", action="store_true", help="log every command; tracebacks")
    p.add_argument("command", choices=COMMANDS, metavar="COMMAND", help=", ".join(COMMANDS))
    p.add_argument("symbol", nargs="?", help="for getval: " + ", ".join(GETVAL_SYMBOLS))
    return p


def _main(argv: Sequence[str], prog: str = PROG) -> int:
    args = build_parser(prog).parse_args(argv)
    setup_logging(debug=1 if args.debug else 0)
    params = args.params or os.environ.get("DIB_BLOCK_DEVICE_PARAMS_YAML")
    if not params:
        raise ConfigError(
            "no params file", hint="pass --params FILE or set DIB_BLOCK_DEVICE_PARAMS_YAML"
        )
    with run.signal_handlers():
        return _command(Session(Path(params)), args)


def _command(s: Session, args: argparse.Namespace) -> int:
    cmd = args.command
    if cmd == "getval":
        if not args.symbol:
            raise ConfigError("getval needs a symbol", hint=", ".join(GETVAL_SYMBOLS))
        print(s.device().getval(args.symbol))
        return 0
    if args.symbol:
        raise ConfigError(f"{cmd} takes no argument")
    if cmd == "init":
        s.init()
    elif cmd == "create":
        s.create()
    elif cmd == "writefstab":
        path = s.device().write_fstab(s.params.build_dir / "built" / "etc")
        LOG.info("wrote %s", path)
    else:
        return s.teardown(cmd)
    return 0


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    return entry(lambda a: _main(a, prog), prog, argv if argv is not None else sys.argv[1:])
