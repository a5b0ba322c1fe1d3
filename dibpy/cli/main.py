"""``dibpy``: one command with every tool as a subcommand."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from dibpy import __version__

#: subcommand -> (module, function, one-line help); each module's ``build_parser(prog)``
#: makes its parser, each function takes ``(argv, prog=...)``
COMMANDS: dict[str, tuple[str, str, str]] = {
    "build": ("dibpy.cli.disk_image_create", "main", "build a disk image (disk-image-create)"),
    "ramdisk": ("dibpy.cli.disk_image_create", "ramdisk_main", "build a ramdisk"),
    "element-info": ("dibpy.cli.element_info", "main", "expand and show elements"),
    "run-parts": ("dibpy.cli.run_parts", "main", "run the hooks of one directory"),
    "block-device": ("dibpy.cli.block_device", "main", "the block-device tool"),
    "lint": ("dibpy.cli.lint", "main", "check elements"),
    "boot-test": ("dibpy.cli.boot_test", "main", "boot an image in QEMU, wait for login"),
    "convert": ("dibpy.cli.convert", "main", "convert a disk image between formats"),
    "info": ("dibpy.cli.info", "main", "describe a disk image (partitions, filesystems, OS)"),
    "cache": ("dibpy.cli.cache", "main", "list, show, prune or clear the tree cache"),
    "cleanup": ("dibpy.cli.cleanup", "main", "remove what builds killed outright left behind"),
    "completion": ("dibpy.cli.completion", "main", "print a bash or zsh completion script"),
}


EXAMPLES = (
    ("dibpy build -o debian debian-minimal vm", "build a Debian qcow2 image"),
    ("dibpy boot-test debian.qcow2", "boot it to a login prompt"),
    ("dibpy info debian.qcow2", "what is in it"),
    ("dibpy COMMAND --help", "one command's options"),
)


def usage() -> str:
    width = max(len(c) for c in COMMANDS)
    lines = [f"usage: dibpy COMMAND [ARGS...]   (dibpy {__version__})", "", "commands:"]
    lines += [f"  {c:<{width}}  {h}" for c, (_, _, h) in COMMANDS.items()]
    lines += ["", "examples:"]
    for cmd, what in EXAMPLES:
        lines += [f"  {cmd}", f"      {what}"]
    return "\n".join(lines)


def sub_parser(cmd: str) -> argparse.ArgumentParser:
    """The parser of ``dibpy CMD`` (its program name is ``dibpy CMD``)."""
    module = COMMANDS[cmd][0]
    factory = importlib.import_module(module).build_parser
    parser: argparse.ArgumentParser = factory(f"dibpy {cmd}")
    return parser


def build_parser() -> argparse.ArgumentParser:
    """``dibpy`` as one argparse parser with a subparser per command: for the man page
    and shell completion (running a command imports only that command's module)."""
    from dibpy.cli import HelpFormatter, add_version, examples

    p = argparse.ArgumentParser(
        prog="dibpy",
        description="Build disk images from diskimage-builder elements; every dibpy tool "
        "as a subcommand.",
        epilog=examples(*EXAMPLES),
        formatter_class=HelpFormatter,
    )
    add_version(p)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd, (_, _, helptext) in COMMANDS.items():
        child = sub_parser(cmd)
        # the command's own parser's arguments (its -h among them), text and formatter
        sub.add_parser(
            cmd,
            parents=[child],
            add_help=False,
            help=helptext,
            description=child.description,
            epilog=child.epilog,
            formatter_class=child.formatter_class,
        )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if args[0] == "--version":
        print(f"dibpy {__version__}")
        return 0
    cmd = args[0]
    if cmd not in COMMANDS:
        from dibpy.errors import did_you_mean

        hint = did_you_mean(cmd, COMMANDS) or "run 'dibpy --help' for the list"
        print(f"dibpy: error: unknown command {cmd!r}\n  hint: {hint}", file=sys.stderr)
        return 2
    module, func, _ = COMMANDS[cmd]
    fn = getattr(importlib.import_module(module), func)
    return int(fn(args[1:], prog=f"dibpy {cmd}") or 0)
