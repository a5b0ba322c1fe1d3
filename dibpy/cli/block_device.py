"""dib-block-device: diskimage-builder's block-device command, step by step.

Each subcommand is its own process; what ``create`` makes is journalled (JSON) in
``<build-dir>/states/block-device/`` as it is made, so ``umount``/``cleanup`` in a later
process tear it down, even after ``create`` was killed half-way.

    dib-block-device --params FILE init|create|writefstab|umount|cleanup|delete
    dib-block-device --params FILE getval root-label|root-fstype|boot-label|mount-points|
                                          image-path|image-block-device|image-block-devices

The params file may also be given by DIB_BLOCK_DEVICE_PARAMS_YAML.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from dibpy import run
from dibpy.blockdev import GETVAL_SYMBOLS, BlockDevice, BlockDeviceParams, load_config
from dibpy.blockdev.config import BlockDeviceConfig, parse_yaml
from dibpy.blockdev.state import Journal
from dibpy.cli import add_version, entry
from dibpy.errors import ConfigError, DibpyError
from dibpy.log import LOG, setup_logging

PROG = "dib-block-device"
COMMANDS = ("init", "getval", "create", "writefstab", "umount", "cleanup", "delete")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Create and tear down disk images "
        "from a block-device config (diskimage-builder compatible).",
    )
    add_version(p)
    p.add_argument("--params", help="the params YAML (default: $DIB_BLOCK_DEVICE_PARAMS_YAML)")
    p.add_argument("--debug", "-x", action="store_true", help="log every command; tracebacks")
    p.add_argument("command", choices=COMMANDS)
    p.add_argument("symbol", nargs="?", help="for getval: " + ", ".join(GETVAL_SYMBOLS))
    return p


def _read_config(value: Any, params_file: Path) -> tuple[list[Any] | str, str]:
    """The params file's ``config``: a path to YAML (DIB), or the config inline."""
    if isinstance(value, list):
        return value, f"{params_file} (config)"
    if not value:
        raise ConfigError(
            f"{params_file}: no 'config' given", hint="config: must name the block-device YAML file"
        )
    path = Path(str(value))
    if not path.is_absolute():
        path = params_file.parent / path
    try:
        return path.read_text(), str(path)
    except OSError as e:
        raise ConfigError(f"{params_file}: config: cannot read {path}: {e.strerror}") from None


class Session:
    def __init__(self, params_file: Path) -> None:
        self.params_file = params_file
        self.params, self.raw_config = BlockDeviceParams.from_params_file(params_file, os.environ)
        self.saved = self.params.state_dir / "config.json"

    def config(self, *, host_checks: bool) -> BlockDeviceConfig:
        if self.saved.exists():
            saved = json.loads(self.saved.read_text())
            source: list[Any] | str = saved["config"]
            origin = saved["origin"]
        else:
            source, origin = _read_config(self.raw_config, self.params_file)
        return load_config(source, self.params, origin=origin, host_checks=host_checks)

    def device(self, *, host_checks: bool = False) -> BlockDevice:
        return BlockDevice(self.config(host_checks=host_checks), self.params)

    def init(self) -> None:
        source, origin = _read_config(self.raw_config, self.params_file)
        data = parse_yaml(source, origin) if isinstance(source, str) else source
        load_config(data, self.params, origin=origin, host_checks=True)
        self.saved.parent.mkdir(parents=True, exist_ok=True)
        self.saved.write_text(json.dumps({"config": data, "origin": origin}, indent=1))

    def create(self) -> None:
        bd = self.device(host_checks=True)
        with ExitStack() as stack:
            bd.create(stack)
            # success: the resources outlive this process; `umount` releases them
            stack.pop_all()

    def teardown(self, how: str) -> int:
        try:
            bd = self.device()
        except DibpyError as e:
            # without a usable config, the journal alone still says what to release
            LOG.warning("%s: cannot read the config (%s); releasing from the journal", how, e)
            journal = Journal.load(self.params.state_dir / "state.json")
            if how == "umount":
                journal.release_all(strict=True)
                return 0
            failures = journal.release_all(strict=False)
            return 1 if failures else 0
        if how == "umount":
            bd.umount()
            return 0
        failures = bd.delete() if how == "delete" else bd.cleanup()
        if failures:
            raise DibpyError(
                f"{how}: {len(failures)} resource(s) could not be released",
                hint="see the errors above; `losetup -a`, /proc/mounts",
            )
        return 0


def _main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(argv)
    setup_logging(debug=1 if args.debug else 0)
    params = args.params or os.environ.get("DIB_BLOCK_DEVICE_PARAMS_YAML")
    if not params:
        raise ConfigError(
            "no params file", hint="pass --params FILE or set DIB_BLOCK_DEVICE_PARAMS_YAML"
        )
    with run.signal_handlers():
        return _command(Session(Path(params)), args)


def _command(s: Session, args: argparse.Namespace) -> int:
    cmd = args.command
    if cmd == "getval":
        if not args.symbol:
            raise ConfigError("getval needs a symbol", hint=", ".join(GETVAL_SYMBOLS))
        print(s.device().getval(args.symbol))
        return 0
    if args.symbol:
        raise ConfigError(f"{cmd} takes no argument")
    if cmd == "init":
        s.init()
    elif cmd == "create":
        s.create()
    elif cmd == "writefstab":
        path = s.device().write_fstab(s.params.build_dir / "built" / "etc")
        LOG.info("wrote %s", path)
    else:
        return s.teardown(cmd)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return entry(_main, PROG, argv if argv is not None else sys.argv[1:])
