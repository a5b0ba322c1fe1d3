"""``dibpy``: one command with every tool as a subcommand."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from dibpy import __version__

#: subcommand -> (module, function, one-line help)
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
}


def usage() -> str:
    width = max(len(c) for c in COMMANDS)
    lines = [f"usage: dibpy COMMAND [ARGS...]   (dibpy {__version__})", "", "commands:"]
    lines += [f"  {c:<{width}}  {h}" for c, (_, _, h) in COMMANDS.items()]
    return "\n".join(lines)


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
    return int(fn(args[1:]) or 0)
