"""``dibpy boot-test``: boot an image in QEMU and wait for a login prompt."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from dibpy.boottest import (
    ACCELS,
    DISK_INTERFACES,
    PASSWORD_VARIABLE,
    BootTest,
    BootTestError,
    default_console_log,
    login_for,
)
from dibpy.cli import add_version, entry, examples, make_parser
from dibpy.errors import ConfigError, DibpyError

PROG = "dibpy boot-test"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = make_parser(
        prog,
        "Boot a disk image (or a kernel and ramdisk) in QEMU, wait for a login "
        "prompt on the serial console, optionally log in and run a command.  The image is "
        "never modified (QEMU writes to a temporary snapshot).",
        examples(
            (f"{prog} image.qcow2", "boot to the login prompt, print how long it took"),
            (
                f"{PASSWORD_VARIABLE}=secret {prog} --user devuser --command 'uname -r' "
                "image.qcow2",
                "log in (the password from the environment, not the command line), run",
            ),
            (
                f"{prog} --drive config-drive.iso image.qcow2",
                "boot with a config drive attached as a second (read-only) disk",
            ),
            (
                f"{prog} --kernel vmlinuz --initrd ramdisk.initramfs --append console=ttyS0",
                "boot a kernel and ramdisk",
            ),
        ),
        [
            "secrets:\n  The password is read, in this order, from --password-file FILE (its "
            f"first line), --password (visible in ps: avoid) or {PASSWORD_VARIABLE}.  It is "
            "typed on the serial console and never logged."
        ],
    )
    add_version(p)
    p.add_argument("image", nargs="?", help="the disk image (optional with --kernel)")
    p.add_argument("--format", dest="fmt", metavar="F", help="image format (default: detect)")
    p.add_argument("--uefi", action="store_true", help="boot with OVMF UEFI firmware")
    p.add_argument(
        "--timeout", type=float, default=300, metavar="S", help="seconds to the login prompt"
    )
    p.add_argument(
        "--command-timeout",
        type=float,
        default=120,
        metavar="S",
        help="seconds to log in and run the command",
    )
    p.add_argument("--memory", type=int, default=1024, metavar="MB", help="guest memory")
    p.add_argument("--cpus", type=int, default=2, help="virtual CPUs")
    p.add_argument("--user", help="log in as this user")
    p.add_argument(
        "--password",
        help="the user's password (any user can read it in ps: prefer --password-file "
        f"or {PASSWORD_VARIABLE})",
    )
    p.add_argument(
        "--password-file", metavar="FILE", help="read the user's password from FILE's first line"
    )
    p.add_argument(
        "--ready",
        metavar="REGEX",
        help="wait for this on the console instead of a login prompt (a guest with no getty)",
    )
    p.add_argument("--command", help="run this in the guest after logging in; must exit 0")
    p.add_argument("--console-log", metavar="FILE", help="where to save the serial console")
    p.add_argument(
        "--drive",
        dest="drives",
        action="append",
        default=[],
        metavar="FILE",
        help="attach FILE too, read-only, as a raw virtio disk (a config drive); repeatable",
    )
    p.add_argument("--kernel", metavar="K", help="boot this kernel directly")
    p.add_argument("--initrd", metavar="I", help="with --kernel: this ramdisk")
    p.add_argument("--append", metavar="A", help="with --kernel: this kernel command line")
    p.add_argument("--accel", choices=ACCELS, help="accelerator (default: KVM if it works)")
    p.add_argument(
        "--disk-interface", choices=DISK_INTERFACES, default="virtio", help="how to attach"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="show the console as it goes")
    p.add_argument("--debug", action="store_true", help="tracebacks and debug logging")
    return p


def main_args(argv: Sequence[str], prog: str = PROG) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.image is None and args.kernel is None:
        raise ConfigError("nothing to boot", hint="give an IMAGE, or --kernel (and --initrd)")
    login = login_for(args.user, args.password, args.password_file, os.environ)
    if args.command is not None and args.user is None:
        raise ConfigError("--command needs --user and --password to log in first")
    if args.debug:
        from dibpy.log import setup_logging

        setup_logging(debug=1)
    target = Path(args.image if args.image is not None else args.kernel)
    log = Path(args.console_log) if args.console_log else default_console_log(target)
    test = BootTest(
        image=args.image,
        fmt=args.fmt,
        uefi=args.uefi,
        kernel=args.kernel,
        initrd=args.initrd,
        append=args.append,
        memory_mb=args.memory,
        cpus=args.cpus,
        timeout=args.timeout,
        command_timeout=args.command_timeout,
        login=login,
        command=args.command,
        console_log=log,
        accel=args.accel,
        disk_interface=args.disk_interface,
        echo_console=args.verbose,
        ready=args.ready,
        extra_drives=args.drives,
    )
    try:
        result = test.run()
    except BootTestError as e:
        # one line for the terminal; the console log has the rest
        raise DibpyError(f"{e.summary} (console log: {log})", e.hint) from None
    reached = "ready pattern" if args.ready is not None else "login prompt"
    print(f"{reached} after {result.seconds_to_prompt:.1f} s ({result.accel})")
    if result.command_output is not None:
        sys.stdout.write(result.command_output)
        if result.command_output and not result.command_output.endswith("\n"):
            sys.stdout.write("\n")
    print(f"console log: {log}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    return entry(lambda a: main_args(a, prog), prog, argv)
