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
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dibpy import yamlbuild
from dibpy.cli import add_version, entry, examples, make_parser
from dibpy.cli.element_info import params_rows, params_table
from dibpy.config import host_arch, parse_arch
from dibpy.elements import find_library, params, resolve
from dibpy.elements.resolve import default_elements
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
    what = p.add_mutually_exclusive_group()
    what.add_argument("--dry-run", action="store_true", help="print the commands, build nothing")
    what.add_argument(
        "--params",
        action="store_true",
        help="print each image's element parameters (value, source, element), build nothing",
    )
    p.add_argument("--json", action="store_true", help="with --params: print JSON")
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
    if args.json and not args.params:
        raise ConfigError("--json: only with --params")
    if args.dry_run:
        for e in entries:
            print(yamlbuild.command_line(e))
        return 0
    if args.params:
        print_params(entries, as_json=args.json)
        return 0
    return yamlbuild.build_all(entries, jobs=args.jobs, stop_on_failure=args.stop_on_failure)


def print_params(entries: Sequence[dict[str, Any]], *, as_json: bool) -> None:
    """element-info --params for each image: a variable its ``environment:`` sets
    comes from the "YAML file"."""
    images = []
    for e in entries:
        env = dict(os.environ)
        if e.get("clear"):
            # as disk-image-create -c keeps them
            keep = ("PATH", "HOME", "TERM", "USER", "LANG", "ELEMENTS_PATH", "TMP_DIR", "break")
            env = {k: v for k, v in env.items() if k in keep}
        yaml_env = {str(k): str(v) for k, v in e.get("environment", {}).items()}
        env.update(yaml_env)
        arch = parse_arch(str(e.get("arch") or host_arch()))
        names = default_elements(
            list(e.get("elements", [])),
            skip_base=bool(e.get("skip-base")),
            arch=arch,
            ramdisk_element=str(e.get("ramdisk-element") or "ramdisk")
            if e.get("ramdisk")
            else None,
        )
        res = resolve(names, find_library(env))
        rows = params.effective(res.elements, env, dict.fromkeys(yaml_env, "YAML file"))
        images.append((yamlbuild.image_name(e), rows))
    if as_json:
        json.dump(
            {"images": [{"imagename": n, "parameters": params_rows(r)} for n, r in images]},
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
        return
    for i, (name, rows) in enumerate(images):
        print(("\n" if i else "") + f"image {name}:")
        sys.stdout.write(params_table(rows))


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    return entry(lambda a: main_args(a, prog), prog, argv)
