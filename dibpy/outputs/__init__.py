"""Output formats: one plugin per format in the ``dibpy.output`` stevedore group.

Every plugin turns the build's one raw image into its format at a temporary path and
checks the result; the build renames it into place only when the check passed, so a
failed or interrupted build never leaves a half-written output file.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from dibpy.errors import ConfigError

LOG = logging.getLogger("dibpy")
GROUP = "dibpy.output"


@dataclass(frozen=True)
class OutputOptions:
    uncompressed: bool = False
    qemu_img_options: str = ""


class OutputPlugin:
    """Base class of an output format."""

    name: ClassVar[str] = ""
    #: file name suffix of the output (without the dot)
    extension: ClassVar[str] = ""
    #: True for formats made from the file tree (tar, squashfs, ...): the build calls
    #: write_tree() while the final filesystem is still mounted, instead of write()
    needs_tree: ClassVar[bool] = False

    def write(self, raw: Path, dest: Path, opts: OutputOptions) -> None:
        raise NotImplementedError

    def write_tree(self, root: Path, dest: Path, opts: OutputOptions) -> None:
        raise NotImplementedError

    def check(self, dest: Path) -> None:
        """Raise a DibpyError if ``dest`` is not a valid file of this format."""


@functools.cache
def _manager() -> Any:
    from stevedore import ExtensionManager

    def _fail(_m: object, ep: object, exc: BaseException) -> None:
        raise ConfigError(f"output plugin {getattr(ep, 'name', ep)!r} failed to load: {exc}")

    return ExtensionManager(GROUP, invoke_on_load=False, on_load_failure_callback=_fail)


def _builtin() -> dict[str, type[OutputPlugin]]:
    from dibpy.outputs.qemu import Qcow2, Raw

    return {"raw": Raw, "qcow2": Qcow2}


def available() -> dict[str, type[OutputPlugin]]:
    plugins = dict(_builtin())
    for ext in _manager().extensions:
        plugins[ext.name] = ext.plugin
    return plugins


def get(name: str) -> OutputPlugin:
    plugins = available()
    if name not in plugins:
        from dibpy.elements.resolve import did_you_mean

        hint = did_you_mean(name, plugins) or f"available: {', '.join(sorted(plugins))}"
        raise ConfigError(f"-t {name}: unknown output type", hint=hint)
    return plugins[name]()
