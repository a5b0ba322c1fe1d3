"""element-info: show the expanded element list of a build."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from dibpy import hookenv, run
from dibpy.cli import add_version, entry, examples, make_parser, mark
from dibpy.config import parse_arch
from dibpy.elements import find_library, params, resolve
from dibpy.elements.model import Element
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
    p.add_argument(
        "--params",
        action="store_true",
        help="print the variables the elements declare (parameters.yaml): name, effective "
        "value, where it comes from, element, description (with --json: as JSON)",
    )
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


#: variables whose values are secrets: --params says they are set, not what they are
SECRET = re.compile(r"PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|CREDENTIAL", re.I)
HIDDEN = "(set, hidden)"


def shown_value(r: params.Effective) -> str | None:
    """The value --params prints: a secret's (a password's) is never shown."""
    if r.value is not None and SECRET.search(r.name) and not r.name.endswith("_FILE"):
        return HIDDEN
    return r.value


def params_rows(rows: Sequence[params.Effective]) -> list[dict[str, object]]:
    """``--params --json``'s records."""
    return [
        {
            "name": r.name,
            "value": shown_value(r),
            "source": r.source,
            "element": r.parameter.element,
            "type": r.parameter.type,
            "default": r.parameter.default,
            "choices": list(r.parameter.choices),
            "required": r.parameter.required,
            "description": r.parameter.description,
        }
        for r in rows
    ]


def params_table(rows: Sequence[params.Effective]) -> str:
    """``--params``' table: name, value, source, element, description."""
    if not rows:
        return "(no element of this build declares parameters)\n"
    table = [("NAME", "VALUE", "SOURCE", "ELEMENT", "DESCRIPTION")]
    table += [
        (
            r.name,
            "-" if r.value is None else str(shown_value(r)),
            r.source,
            r.parameter.element,
            r.parameter.description,
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    lines = []
    for row in table:
        cells = [c.ljust(w) for c, w in zip(row[:4], widths, strict=True)]
        lines.append("  ".join([*cells, row[4]]).rstrip())
    return "\n".join(lines) + "\n"


def print_params(elements: Sequence[Element], environ: Mapping[str, str], *, as_json: bool) -> None:
    """Every declared parameter of ``elements`` with its effective value and source."""
    rows = params.effective(elements, environ)
    if as_json:
        json.dump({"parameters": params_rows(rows)}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(params_table(rows))


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
    if args.params:
        if args.env:
            raise ConfigError("--params and --env: give one", hint="--params --json for JSON")
        print_params(res.elements, os.environ, as_json=args.json)
    elif args.env:
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
