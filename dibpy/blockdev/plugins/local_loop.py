"""``local_loop``: a sparse ``<directory>/<name>.raw`` attached to a loop device.

Resources: the image file (removed if ``create`` does not finish; afterwards it is the
product and only ``delete`` removes it) and the loop device (detached on umount).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from dibpy import loopdev, run
from dibpy.blockdev import resources
from dibpy.blockdev.plugin import CreateContext, Node, ValidationContext
from dibpy.blockdev.units import human, parse_size
from dibpy.errors import ConfigError


@resources.releaser("image-file")
def _release_image(entry: dict[str, Any]) -> None:
    Path(entry["path"]).unlink(missing_ok=True)


class LocalLoop(Node):
    plugin: ClassVar[str] = "local_loop"
    kind: ClassVar[str] = "blockdev"
    base_kinds: ClassVar[tuple[str, ...]] = ()
    needs_base: ClassVar[bool] = False

    @property
    def image_path(self) -> Path:
        directory = self.config.get("directory")
        return Path(directory or self.params.image_dir) / f"{self.name}.raw"

    @property
    def block_size(self) -> int:
        return int(self.params.block_size or self.config.get("block_size") or 512)

    def size_bytes(self) -> int | None:
        if "size" in self.config:
            try:
                n = parse_size(self.config["size"])
            except ConfigError:
                return None
        elif self.params.image_size is not None:
            n = self.params.image_size
        else:
            return None
        bs = self.block_size
        return -(-n // bs) * bs

    def validate(self, ctx: ValidationContext) -> None:
        if "/" in self.name or "\0" in self.name:
            # the name becomes <directory>/<name>.raw: a slash would put the image file
            # (and what the build writes there) outside the build
            ctx.problem(
                f"{self.path}.name",
                f"{self.name!r} must be a plain file name (no '/'): the image file is "
                "<directory>/<name>.raw; use directory: to put it elsewhere",
            )
        if "size" in self.config:
            try:
                n = parse_size(self.config["size"])
            except ConfigError as e:
                ctx.problem(f"{self.path}.size", e.message)
                return
            if n < 1024 * 1024:
                ctx.problem(f"{self.path}.size", f"{human(n)} is too small for a disk image")
        if self.block_size not in (512, 4096):
            ctx.problem(f"{self.path}.block_size", "must be 512 or 4096 (DIB_BLOCK_SIZE)")

    def host_problems(self) -> list[str]:
        return [f"{t} is not installed" for t in ("losetup",) if run.which(t) is None]

    def create(self, ctx: CreateContext) -> None:
        size = self.size_bytes()
        if size is None:
            raise ConfigError(
                f"{self.path}: local_loop {self.name} has no size and no image size was given",
                hint="set size: in the config, or image-size in the params file",
            )
        path = self.image_path
        path.parent.mkdir(parents=True, exist_ok=True)
        with resources.signals_deferred():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            ctx.acquire("image-file", self.name, path=str(path))
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)
        with resources.signals_deferred():
            device = loopdev.attach_loop(path, sector_size=self.block_size)
            ctx.acquire("loop", self.name, device=device, file=str(path))
        ctx.publish(
            self.name, device=device, file=str(path), size=size, sector_size=self.block_size
        )
