"""The build-wide inputs of the block-device layer (diskimage-builder's params file)."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dibpy.blockdev.units import parse_size
from dibpy.errors import ConfigError


@dataclass(frozen=True)
class BlockDeviceParams:
    """Where things go and what the root filesystem looks like.

    ``mount_base`` is where ``/`` of the image is mounted (as in diskimage-builder, whose
    ``mount-base`` is the root mount point itself).  ``root_label`` None means the
    default: ``img-rootfs`` for xfs (its labels are at most 12 characters), else
    ``cloudimg-rootfs``.  ``image_size`` (bytes) is used by a ``local_loop`` whose config
    has no ``size``; None while unknown (``init`` runs before sizing).
    """

    image_dir: Path
    mount_base: Path
    build_dir: Path
    root_fs_type: str = "ext4"
    root_label: str | None = None
    image_size: int | None = None
    root_fs_opts: Sequence[str] = field(default_factory=tuple)
    arch: str = "amd64"
    #: logical block size of loop devices (DIB_BLOCK_SIZE): as in diskimage-builder, when
    #: set it wins over a local_loop's ``block_size``; None: the config's, else 512
    block_size: int | None = None

    @property
    def effective_root_label(self) -> str:
        if self.root_label:
            return self.root_label
        return "img-rootfs" if self.root_fs_type == "xfs" else "cloudimg-rootfs"

    @property
    def state_dir(self) -> Path:
        return self.build_dir / "states" / "block-device"

    @classmethod
    def from_params_file(
        cls, path: Path, environ: Mapping[str, str] | None = None
    ) -> tuple[BlockDeviceParams, Any]:
        """Read diskimage-builder's params YAML; returns the params and its ``config``."""
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as e:
            raise ConfigError(f"cannot read the params file {path}: {e.strerror}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the params file must be a YAML mapping")
        return cls.from_mapping(data, origin=str(path), environ=environ), data.get("config")

    @classmethod
    def from_mapping(
        cls,
        data: Mapping[str, Any],
        *,
        origin: str = "params",
        environ: Mapping[str, str] | None = None,
    ) -> BlockDeviceParams:
        env = environ or {}
        problems = []
        for key in ("image-dir", "mount-base", "build-dir"):
            if not data.get(key):
                problems.append(f"{origin}: missing {key!r}")
        if problems:
            from dibpy.errors import MultiError

            raise MultiError(
                problems, hint="the params file needs image-dir, mount-base and build-dir"
            )
        image_size = None
        if data.get("image-size") not in (None, ""):
            try:
                image_size = parse_size(data["image-size"])
            except ConfigError as e:
                raise ConfigError(f"{origin}: image-size: {e.message}", e.hint) from None
        opts = data.get("root-fs-opts") or ()
        if isinstance(opts, str):
            opts = shlex.split(opts)
        block_size = None
        if env.get("DIB_BLOCK_SIZE"):
            from dibpy.config import parse_block_size

            try:
                block_size = parse_block_size(env["DIB_BLOCK_SIZE"])
            except ValueError as e:
                raise ConfigError(f"environment variable DIB_BLOCK_SIZE: {e}") from None
        return cls(
            image_dir=Path(data["image-dir"]),
            mount_base=Path(data["mount-base"]),
            build_dir=Path(data["build-dir"]),
            root_fs_type=str(data.get("root-fs-type") or "ext4"),
            root_label=data.get("root-label") or None,
            image_size=image_size,
            root_fs_opts=tuple(str(o) for o in opts),
            arch=str(data.get("arch") or env.get("ARCH") or "amd64"),
            block_size=block_size,
        )
