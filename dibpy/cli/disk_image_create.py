"""disk-image-create / ramdisk-image-create: diskimage-builder's options, dibpy's engine."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

from dibpy import DIB_COMPAT_VERSION, events, progress
from dibpy.cli import entry, examples, make_parser, mark, mark_file, output_types
from dibpy.config import SETTINGS, arch_aliases, build_config
from dibpy.errors import ConfigError
from dibpy.log import setup_logging


def _default_text(value: object) -> str | None:
    if value is None or value == () or value == "" or value is False:
        return None
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, Path):
        home = str(Path.home())
        text = str(value)
        return "~" + text[len(home) :] if text.startswith(home + "/") else text
    return str(value)


def epilog_sections() -> list[str]:
    """The output types, architectures and variables, from the code that reads them."""
    types = ", ".join(output_types())
    arches = ", ".join(
        a if not aliases else f"{a} ({', '.join(aliases)})"
        for a, aliases in sorted(arch_aliases().items())
    )
    rows = []
    for s in SETTINGS:
        if not s.env:
            continue
        where = f" ({s.flags[0]})" if s.flags else ""
        default = s.field.metadata.get("doc_default") or _default_text(s.default)
        rows.append(f"  {s.env}{where}" + (f"  [default: {default}]" if default else ""))
    rows.append("  DIB_QUIET  1: warnings and errors only on the console (0: all)")
    rows.append("  DIBPY_PROGRESS  json: the event stream (--progress=json); 0: no status line")
    return [
        f"output types (-t, comma-separated; default qcow2):\n  {types}",
        "architectures (-a; default: the host's):\n"
        + textwrap.fill(arches, 76, initial_indent="  ", subsequent_indent="  "),
        "environment (a flag wins over its variable):\n" + "\n".join(rows),
        "The variables the elements read, with their values: element-info --params ELEMENTS.",
    ]


def build_parser(prog: str = "disk-image-create") -> argparse.ArgumentParser:
    ramdisk = "ramdisk" in prog
    what = "a ramdisk (kernel and initramfs)" if ramdisk else "a disk image"
    name = prog
    ex = (
        examples(
            (f"{name} -o ironic-agent ironic-python-agent-ramdisk debian", "an IPA ramdisk"),
            (f"{name} -o deploy -a arm64 ubuntu", "a ramdisk for arm64"),
        )
        if ramdisk
        else examples(
            (f"{name} -o debian debian-minimal vm", "a Debian qcow2 disk image for a VM"),
            (
                f"DIB_RELEASE=trixie {name} -t raw,qcow2 -o trixie debian-minimal vm",
                "another release, two output types",
            ),
            (
                f"{name} -o dev --boot-test debian-minimal vm devuser",
                "build, then boot it in QEMU to a login prompt",
            ),
            (f"{name} -q -o quiet debian-minimal vm", "warnings and errors only"),
            (
                f"{name} --progress=json --progress-file events.jsonl -o ci debian-minimal vm",
                "for CI: one JSON event a line (build, phases, hooks, cache, outputs)",
            ),
        )
    )
    p = make_parser(
        prog,
        f"Build {what} from a list of elements (diskimage-builder compatible).",
        ex,
        epilog_sections(),
    )
    for s in SETTINGS:
        if not s.flags:
            continue
        kw: dict[str, object] = {"dest": s.dest, "help": s.help}
        if s.kind == "flag":
            kw["action"] = "store_true"
        elif s.kind == "count":
            kw["action"] = "count"
        elif s.kind == "append":
            kw["action"] = "append"
            kw["metavar"] = s.metavar
        else:
            kw["metavar"] = s.metavar
        action = p.add_argument(*s.flags, **kw)  # type: ignore[arg-type]
        if s.dest == "image_types":
            mark(action, "types")
        elif s.dest == "arch":
            mark(action, "arches")
        elif s.dest in ("image_name", "logfile"):
            mark_file(action)
        elif s.dest == "image_cache":
            mark_file(action, directory=True)
    p.add_argument(
        "-q",
        "--quiet",
        action="count",
        default=0,
        help="warnings and errors only on the console (-qq: errors only); as DIB_QUIET=1",
    )
    p.add_argument(
        "-v", "--verbose", action="count", default=0, help="debug messages on the console too"
    )
    p.add_argument(
        "--progress",
        choices=events.MODES,
        help="auto: a status line on a terminal; off: none; json: the event stream, one "
        "JSON object a line (as DIBPY_PROGRESS=json; see doc/events.md)",
    )
    mark_file(
        p.add_argument(
            "--progress-file",
            metavar="PATH",
            help="with --progress=json: write the events to PATH (a file, FIFO or "
            "/dev/fd/N) instead of standard error",
        )
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    # diskimage-builder prints its bare version; scripts parse it (dibpy --version: ours)
    p.add_argument("--version", action="version", version=DIB_COMPAT_VERSION)
    mark(
        p.add_argument("elements", nargs="*", metavar="ELEMENT", help="elements to build with"),
        "elements",
    )
    return p


def console_level(quiet: int, verbose: int, environ: Mapping[str, str], logfile: bool) -> int:
    """The console's log level: -v and -q win over DIB_QUIET, which wins over
    diskimage-builder's rule that a log file alone means a quiet console."""
    if verbose:
        return logging.DEBUG
    if quiet:
        return logging.WARNING if quiet == 1 else logging.ERROR
    quiet_env = environ.get("DIB_QUIET", "")
    if quiet_env:
        return logging.WARNING if quiet_env == "1" else logging.INFO
    return logging.WARNING if logfile else logging.INFO


def _main(argv: Sequence[str], prog: str, ramdisk: bool) -> int:
    parser = build_parser(prog)
    args = parser.parse_intermixed_args(argv)
    if args.clear_env:
        keep = ("PATH", "HOME", "TERM", "USER", "LANG", "ELEMENTS_PATH", "TMP_DIR", "break")
        environ = {k: v for k, v in os.environ.items() if k in keep}
    else:
        environ = dict(os.environ)
    mode = events.mode_from(args.progress, os.environ)
    if mode != "auto":
        # JSON lines or nothing: no terminal status line drawn between them
        progress.set_enabled(False)
    if mode != "json":
        if args.progress_file:
            raise ConfigError("--progress-file: only with --progress=json (or DIBPY_PROGRESS=json)")
        _build(args, argv, environ, ramdisk)
        return 0
    with events.session(args.progress_file), events.build_events(args.elements, argv) as end:
        end["outputs"] = _build(args, argv, environ, ramdisk)
    return 0


def _build(
    args: argparse.Namespace, argv: Sequence[str], environ: dict[str, str], ramdisk: bool
) -> list[Path]:
    values = vars(args)
    cfg = build_config(values, args.elements, environ, ramdisk=ramdisk, argv=list(argv))
    setup_logging(
        debug=1 if (args.debug or cfg.debug_trace or args.verbose) else 0,
        logfile=str(cfg.logfile) if cfg.logfile else None,
        console_level=console_level(args.quiet, args.verbose, environ, cfg.logfile is not None),
        timestamps=False if environ.get("DIB_NO_TIMESTAMP", "0") == "1" else None,
    )
    from dibpy import run
    from dibpy.build import build

    with run.signal_handlers():
        result = build(cfg)
    for out in result.outputs:
        print(out)
    if cfg.boot_test:
        from dibpy.boottest import boot_built_image

        image, res = boot_built_image(result.outputs, cfg.arch)
        print(f"{image}: login prompt after {res.seconds_to_prompt:.1f} s ({res.accel})")
    return list(result.outputs)


def main(argv: Sequence[str] | None = None, prog: str = "disk-image-create") -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    return entry(lambda a: _main(a, prog, False), prog, args)


def ramdisk_main(argv: Sequence[str] | None = None, prog: str = "ramdisk-image-create") -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    return entry(lambda a: _main(a, prog, True), prog, args)
