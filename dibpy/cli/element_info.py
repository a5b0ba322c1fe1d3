"""element-info: show the expanded element list of a build."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from dibpy import hookenv, run
from dibpy.cli import add_version, entry, examples, make_parser, mark
from dibpy.config import parse_arch
from dibpy.elements import find_library, resolve
from dibpy.elements.resolve import default_elements, to_dot
from dibpy.errors import ConfigError

PROG = "element-info"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = make_parser(
        prog,
        "Expand a list of elements (with their dependencies) and show where each one lives.",
        examples(
            (f"{prog} debian-minimal vm", "the elements of a build, in order, with their paths"),
            (f"{prog} --expand-defaults --json debian-minimal vm", "as a build sees them, JSON"),
            (f"{prog} --graph deps.svg debian-minimal vm", "draw the dependency graph"),
        ),
        ["Elements are looked up in ELEMENTS_PATH, then in dibpy's own library."],
    )
    add_version(p)
    mark(p.add_argument("elements", nargs="+", help="element names"), "elements")
    out = p.add_mutually_exclusive_group()
    out.add_argument(
        "--env",
        action="store_true",
        help="print eval-able IMAGE_ELEMENT, IMAGE_ELEMENT_YAML and get_image_element_array",
    )
    out.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--graph", metavar="FILE", help="write the dependency graph (.dot, .svg, .png)")
    p.add_argument(
        "--expand-defaults",
        action="store_true",
        help="apply disk-image-create's defaults (add base, block-device-mbr for vm)",
    )
    p.add_argument("-n", "--skip-base", action="store_true", help="with --expand-defaults: no base")
    mark(p.add_argument("-a", "--arch", default="amd64", help="target architecture"), "arches")
    p.add_argument(
        "--no-os-check", action="store_true", help="do not require an operating-system element"
    )
    return p


def write_graph(dot: str, target: Path) -> None:
    suffix = target.suffix.lower().lstrip(".")
    if suffix in ("", "dot", "gv"):
        try:
            target.write_text(dot)
        except OSError as e:
            raise ConfigError(
                f"--graph {target}: cannot write it: {e.strerror}",
                hint="give a path in an existing, writable directory",
            ) from None
        return
    if suffix not in ("svg", "png", "pdf"):
        raise ConfigError(
            f"--graph {target}: unknown format {suffix!r}", hint="use .dot, .svg or .png"
        )
    if shutil.which("dot") is None:
        raise ConfigError(
            f"--graph {target}: writing {suffix.upper()} needs graphviz's 'dot'",
            hint="install graphviz, or write a .dot file",
        )
    run.run(["dot", f"-T{suffix}", "-o", str(target)], input=dot)


def main_args(argv: Sequence[str], prog: str = PROG) -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        args.arch = parse_arch(args.arch)
    except ValueError as bad:
        raise ConfigError(f"-a: {bad}") from None
    library = find_library()
    requested = list(args.elements)
    if args.expand_defaults:
        requested = default_elements(requested, skip_base=args.skip_base, arch=args.arch)
    res = resolve(requested, library, require_os=not args.no_os_check)
    names = res.names
    paths = {e.name: str(e.path) for e in res.elements}
    if args.graph:
        write_graph(to_dot(res), Path(args.graph))
    if args.env:
        sys.stdout.write(hookenv.element_info_script(names, paths))
    elif args.json:
        json.dump(
            {
                "elements": [
                    {"name": e.name, "path": str(e.path), "origin": e.origin} for e in res.elements
                ],
                "provided": res.provided_by,
                "elements_path": library.elements_path,
            },
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
    else:
        width = max(len(n) for n in names)
        for e in res.elements:
            print(f"{e.name:<{width}}  {e.path}")
    return 0


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    return entry(lambda a: main_args(a, prog), prog, argv)
