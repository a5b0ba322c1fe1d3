"""``dibpy completion bash|zsh``: shell completion for every dibpy command, made by shtab
from the commands' own argument parsers.

Element names (for disk-image-create, ramdisk-image-create, element-info and their
``dibpy`` subcommands) and output types (``-t``) are not fixed: the script asks
``dibpy completion --list elements|types`` each time, which reads ELEMENTS_PATH, the
installed element packages and dibpy's own library, and the installed output plugins.

    eval "$(dibpy completion bash)"     # in ~/.bashrc
    eval "$(dibpy completion zsh)"      # in ~/.zshrc, after compinit

(zsh: eval, not source: the script registers its functions with compdef only when
evaluated.)
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from dibpy.cli import add_version, entry, examples, make_parser, output_types

PROG = "dibpy completion"
SHELLS = ("bash", "zsh")
LISTS = ("elements", "types", "arches")


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = make_parser(
        prog,
        "Print a shell completion script for every dibpy command (disk-image-create, "
        "ramdisk-image-create, element-info, dib-block-device, dib-run-parts, dib-lint, "
        "diskimage-builder and dibpy): options, subcommands, element names from the "
        "element path and output types.",
        examples(
            (f'eval "$({prog} bash)"', "in ~/.bashrc: complete in bash"),
            (f'eval "$({prog} zsh)"', "in ~/.zshrc, after compinit: complete in zsh"),
            (f"{prog} --list elements", "the element names completion offers"),
        ),
    )
    add_version(p)
    p.add_argument("shell", nargs="?", choices=SHELLS, help="the shell: bash or zsh")
    p.add_argument(
        "--list",
        choices=LISTS,
        help="print the element names, output types or architectures, one a line",
    )
    return p


def element_names(environ: dict[str, str] | None = None) -> list[str]:
    """Every element a build could use: ELEMENTS_PATH (directories that do not exist are
    passed over: completion must not fail), installed element packages, dibpy's own."""
    from dibpy.elements import find_library

    env = dict(os.environ if environ is None else environ)
    env["ELEMENTS_PATH"] = ":".join(
        p for p in env.get("ELEMENTS_PATH", "").split(":") if p and Path(p).is_dir()
    )
    return sorted(find_library(env).elements)


def listing(what: str) -> list[str]:
    if what == "elements":
        return element_names()
    if what == "types":
        return output_types()
    from dibpy.config import arch_aliases

    return sorted(arch_aliases())


def script(shell: str) -> str:
    """The completion script of every command for ``shell``."""
    import shtab

    from dibpy.cli.manpages import pages

    parts = []
    for name, (factory, _) in pages().items():
        if name.startswith("dibpy-"):
            continue  # part of dibpy's own completion
        parser = factory()
        parser.prog = name
        parts.append(shtab.complete(parser, shell=shell))
    return "\n\n".join(parts) + "\n"


def main_args(argv: Sequence[str], prog: str = PROG) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.list:
        for item in listing(args.list):
            print(item)
        return 0
    if args.shell is None:
        parser.error("give a shell (bash or zsh), or --list")
    sys.stdout.write(script(args.shell))
    return 0


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    return entry(lambda a: main_args(a, prog), prog, argv)


if __name__ == "__main__":
    sys.exit(main())
