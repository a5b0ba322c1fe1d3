"""``dibpy convert IN OUT``: convert a disk image between formats, then check it."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from dibpy.cli import add_version, entry, examples, make_parser
from dibpy.config import parse_qemu_img_options
from dibpy.errors import ConfigError

PROG = "dibpy convert"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = make_parser(
        prog,
        "Convert a disk image (raw, qcow2, vhd, vhdx, vmdk, ova) to another "
        "format (or to a VMware VM: OUT.vmx beside OUT.vmdk) with the options and checks "
        "of the build's output types.  The output is written under a temporary name and "
        "only renamed into place once it passed its check.  Per-format variables "
        "(DIB_QCOW2_COMPAT, DIB_VHD_SUBFORMAT, DIB_OVA_*, ...) apply as in a build; "
        "see doc/outputs.md.",
        examples(
            (f"{prog} image.qcow2 image.vhd", "qcow2 to VHD (the format from the extension)"),
            (f"{prog} -O vmdk image.raw image.disk", "name the output format"),
            (f"{prog} image.qcow2 vm.vmx", "a VMware VM: vm.vmx beside vm.vmdk"),
        ),
    )
    add_version(p)
    p.add_argument(
        "input",
        help="the image to read (format detected from its signatures; a raw disk needs "
        "a partition table or filesystem, or -f raw)",
    )
    p.add_argument("output", help="the file to write")
    p.add_argument(
        "-O",
        "--output-format",
        dest="out_fmt",
        metavar="FMT",
        help="output format (default: from OUT's extension)",
    )
    p.add_argument(
        "-f",
        "--input-format",
        dest="in_fmt",
        metavar="FMT",
        help="input format (raw, qcow2, vhd, vhdx, vmdk, ova, vdi, qed, parallels)",
    )
    p.add_argument(
        "--qemu-img-options",
        default=os.environ.get("DIB_QEMU_IMG_OPTIONS", ""),
        metavar="OPTS",
        help="[FORMAT:]key=value,... (e.g. compat=0.10,subformat=fixed)",
    )
    p.add_argument("-u", "--uncompressed", action="store_true", help="no qcow2 compression")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.add_argument("--debug", action="store_true", help="tracebacks and debug logging")
    return p


def main_args(argv: Sequence[str], prog: str = PROG) -> int:
    from dibpy.convert import convert_image
    from dibpy.outputs import OutputOptions

    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.debug:
        from dibpy.log import setup_logging

        setup_logging(debug=1)
    try:
        qopts = parse_qemu_img_options(args.qemu_img_options)
    except ValueError as e:
        raise ConfigError(f"--qemu-img-options: {e}") from None
    opts = OutputOptions(
        uncompressed=args.uncompressed,
        qemu_img_options=qopts,
        environ=dict(os.environ),
        arch=os.environ.get("ARCH", "amd64"),
    )
    written = convert_image(
        Path(args.input),
        Path(args.output),
        out_format=args.out_fmt,
        in_format=args.in_fmt,
        opts=opts,
        force=args.force,
    )
    for w in written:
        print(w)
    return 0


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    return entry(lambda a: main_args(a, prog), prog, argv)


if __name__ == "__main__":
    sys.exit(main())
