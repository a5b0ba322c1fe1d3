"""What an output plugin is: the options it gets and the base class it extends.

Plugins (``dibpy.outputs.qemu``, ...) import from here, never from the package
(``dibpy.outputs``), which imports them to build its registry.
"""

from __future__ import annotations

import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from dibpy.errors import DibpyError

MIB = 1024 * 1024


@dataclass(frozen=True)
class OutputOptions:
    #: -u: no qcow2 compression
    uncompressed: bool = False
    #: --qemu-img-options / DIB_QEMU_IMG_OPTIONS: ``[OUTPUT:]key=value,...``
    qemu_img_options: str = ""
    #: the build's environment: per-format variables (DIB_QCOW2_COMPAT, DIB_VMMGR_*, ...)
    environ: Mapping[str, str] = field(default_factory=dict)
    #: the image's base name (no directory, no extension): names the disk inside an OVA,
    #: a VM-manager template, a docker tag
    image_name: str = ""
    #: --docker-target: REPOSITORY[:TAG] of a docker output
    docker_target: str = ""
    #: the build's architecture (ARCH): amd64, arm64, x86_64, ...
    arch: str = "amd64"


class OutputPlugin:
    """Base class of an output format.  One instance writes one output."""

    name: ClassVar[str] = ""
    #: file name suffix of the output (without the dot)
    extension: ClassVar[str] = ""
    #: True for formats made from the file tree (tar, squashfs, ...): the build calls
    #: write_tree() while the final filesystem is still mounted, instead of write()
    needs_tree: ClassVar[bool] = False
    #: host programs the format needs (checked before the build starts)
    programs: ClassVar[tuple[str, ...]] = ()
    #: True for outputs of several files that name each other (a split VMDK, a .vmx and
    #: its disk): written under their final names in a temporary directory, then each
    #: renamed into place (:mod:`dibpy.outputs.fileset`)
    file_set: ClassVar[bool] = False

    def write(self, raw: Path, dest: Path, opts: OutputOptions) -> None:
        raise NotImplementedError

    def write_tree(self, root: Path, dest: Path, opts: OutputOptions) -> None:
        raise NotImplementedError

    def check(self, dest: Path) -> None:
        """Raise a DibpyError if ``dest`` is not a valid file of this format.

        After :meth:`write`, the plugin also knows what it wrote (virtual size, options)
        and checks those; called on its own (``dibpy convert``) it checks the structure.
        """

    def finish(self, dest: Path, opts: OutputOptions) -> list[Path]:
        """Called once ``dest`` is in place: write companion files, return their paths."""
        return []

    def validate(self, opts: OutputOptions) -> None:
        """Raise ConfigError if the options cannot work for this format (before building)."""


def open_tar(path: Path, mode: Literal["r:", "r:*", "r:gz"], what: str) -> tarfile.TarFile:
    """Open a tar archive for reading; an unreadable one is a DibpyError naming ``what``.

    The caller owns the returned TarFile and closes it (``with open_tar(...) as tar``).
    """
    try:
        return tarfile.open(path, mode)  # noqa: SIM115
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DibpyError(f"{what} {path} is not a readable tar archive: {e}") from None
