"""dib-lint: check element directories (see :mod:`dibpy.lint` for the rules)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from dibpy.cli import add_version, entry, examples, make_parser
from dibpy.elements import builtin_elements_dir
from dibpy.errors import ConfigError, did_you_mean
from dibpy.lint import ALIASES, RULES, lint, parse_rule_names, rules_table

PROG = "dib-lint"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = make_parser(
        prog,
        "Check every element in each ELEMENTS_DIR with diskimage-builder's "
        "dib-lint rules (and dibpy's: hook names that will really run, shellcheck, ...). "
        "A file opts out of rules with '# dib-lint: disable=RULE [RULE...]'; a project with "
        "'ignore = RULE [RULE...]' in the [dib-lint] section of tox.ini (the current "
        "directory's, and the nearest one above each ELEMENTS_DIR).",
        examples(
            (prog, "check elements/ here (or dibpy's own library)"),
            (f"{prog} --ignore E041 my-elements", "check my-elements, without one rule"),
            (f"{prog} --list-rules", "what each rule checks"),
        ),
    )
    add_version(p)
    p.add_argument(
        "dirs",
        nargs="*",
        metavar="ELEMENTS_DIR",
        help="directories holding elements (default: $ELEMENTS_DIR, colon-separated, "
        "else elements/ or diskimage_builder/elements/ here, else dibpy's built-in library)",
    )
    p.add_argument("--no-shellcheck", action="store_true", help="do not run shellcheck")
    p.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="RULE[,RULE]",
        help="do not report these rules (as tox.ini's [dib-lint] ignore)",
    )
    p.add_argument("--list-rules", action="store_true", help="list the rules and exit")
    p.add_argument("-q", "--quiet", action="store_true", help="print errors only, no warnings")
    return p


def check_rule_names(names: Sequence[str]) -> None:
    """``--ignore`` names must be rules (a typo would silently ignore nothing)."""
    known = set(RULES) | set(ALIASES)
    for name in sorted(parse_rule_names(" ".join(names))):
        if name not in RULES:
            hint = did_you_mean(name, known, n=1) or "dib-lint --list-rules lists them"
            raise ConfigError(f"--ignore: no rule called {name!r}", hint=hint)


def default_elements_dir(cwd: Path) -> Path:
    """``elements/`` or ``diskimage_builder/elements/`` here, as diskimage-builder's
    dib-lint is run from a project's top directory; else dibpy's built-in library."""
    for rel in ("elements", "diskimage_builder/elements"):
        if (cwd / rel).is_dir():
            return cwd / rel
    return builtin_elements_dir()


def main_args(argv: Sequence[str], prog: str = PROG) -> int:
    args = build_parser(prog).parse_args(argv)
    if args.list_rules:
        print(rules_table())
        return 0
    check_rule_names(args.ignore)
    if args.dirs:
        dirs = [Path(d) for d in args.dirs]
    elif os.environ.get("ELEMENTS_DIR"):
        dirs = [Path(d) for d in os.environ["ELEMENTS_DIR"].split(":") if d]
    else:
        dirs = [default_elements_dir(Path.cwd())]
    result = lint(dirs, shellcheck=not args.no_shellcheck, ignore=args.ignore)
    shown = result.errors if args.quiet else result.problems
    for problem in shown:
        print(problem)
    note = "".join(f" ({p}: [dib-lint] read)" for p in result.config_files)
    if not args.no_shellcheck and result.shellcheck is None:
        note += " (shellcheck not installed: skipped)"
    print(
        f"dib-lint: {result.elements} elements, {result.files} files: "
        f"{len(result.errors)} errors, {len(result.warnings)} warnings{note}",
        file=sys.stderr,
    )
    return 1 if result.errors else 0


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    return entry(lambda a: main_args(a, prog), prog, argv)
