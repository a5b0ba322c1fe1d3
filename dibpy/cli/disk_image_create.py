"""disk-image-create / ramdisk-image-create: diskimage-builder's options, dibpy's engine."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from dibpy import DIB_COMPAT_VERSION
from dibpy.cli import entry
from dibpy.config import SETTINGS, build_config
from dibpy.log import setup_logging


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Build a disk image from a list of elements (diskimage-builder compatible).",
        epilog="Environment: DIB_RELEASE, DIB_DISTRIBUTION_MIRROR, DIB_IMAGE_CACHE, "
        "ELEMENTS_PATH, DIB_BLOCK_DEVICE_CONFIG, FS_TYPE, DIB_ROOT_LABEL, TMP_DIR, "
        "OVERWRITE_OLD_IMAGE, DIB_DEBUG_TRACE, DIB_OFFLINE, DIB_STRICT, "
        "break=before-PHASE|after-PHASE|after-error.  The variables the elements read: "
        "element-info --params ELEMENTS.",
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
        p.add_argument(*s.flags, **kw)  # type: ignore[arg-type]
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    # diskimage-builder prints its bare version; scripts parse it (dibpy --version: ours)
    p.add_argument("--version", action="version", version=DIB_COMPAT_VERSION)
    p.add_argument("elements", nargs="*", metavar="ELEMENT", help="elements to build with")
    return p


def _main(argv: Sequence[str], prog: str, ramdisk: bool) -> int:
    parser = build_parser(prog)
    args = parser.parse_intermixed_args(argv)
    values = vars(args)
    if values.get("clear_env"):
        keep = ("PATH", "HOME", "TERM", "USER", "LANG", "ELEMENTS_PATH", "TMP_DIR", "break")
        environ = {k: v for k, v in os.environ.items() if k in keep}
    else:
        environ = dict(os.environ)
    cfg = build_config(values, args.elements, environ, ramdisk=ramdisk, argv=list(argv))
    # diskimage-builder: a log file alone means a quiet console; DIB_QUIET=0 keeps both
    quiet_env = environ.get("DIB_QUIET", "")
    quiet = quiet_env == "1" if quiet_env else cfg.logfile is not None
    setup_logging(
        debug=1 if (args.debug or cfg.debug_trace) else 0,
        logfile=str(cfg.logfile) if cfg.logfile else None,
        quiet=quiet,
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
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    return entry(lambda a: _main(a, "disk-image-create", False), "disk-image-create", args)


def ramdisk_main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    return entry(lambda a: _main(a, "ramdisk-image-create", True), "ramdisk-image-create", args)
