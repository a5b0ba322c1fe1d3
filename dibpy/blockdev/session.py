"""A dib-block-device session: one step of diskimage-builder's block-device command.

Each step (``init``, ``create``, ``umount``, ...) is its own process.  ``init`` checks the
config and saves it in ``<state_dir>/config.json``, so later steps use the config it
checked; ``create`` hands the resources it made to the journal (``state.json``), which
outlives the process, and ``umount``/``cleanup``/``delete`` in a later process release
them, from the journal alone if the config cannot be read any more.  dibpy.cli.block_device
is the argument parsing around it.
"""

from __future__ import annotations

import json
import os
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from dibpy.blockdev.config import BlockDeviceConfig, load_config, parse_yaml
from dibpy.blockdev.device import BlockDevice
from dibpy.blockdev.params import BlockDeviceParams
from dibpy.blockdev.state import Journal
from dibpy.errors import ConfigError, DibpyError
from dibpy.log import LOG


def read_config(value: Any, params_file: Path) -> tuple[list[Any] | str, str]:
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
    """The block device a params file describes, across the separate steps."""

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
            source, origin = read_config(self.raw_config, self.params_file)
        return load_config(source, self.params, origin=origin, host_checks=host_checks)

    def device(self, *, host_checks: bool = False) -> BlockDevice:
        return BlockDevice(self.config(host_checks=host_checks), self.params)

    def init(self) -> None:
        source, origin = read_config(self.raw_config, self.params_file)
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
