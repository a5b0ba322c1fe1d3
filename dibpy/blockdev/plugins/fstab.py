"""``fstab``: the ``/etc/fstab`` line of a mount (written by ``writefstab``)."""

from __future__ import annotations

from typing import ClassVar

from dibpy.blockdev.plugin import CreateContext, Node


class Fstab(Node):
    plugin: ClassVar[str] = "fstab"
    kind: ClassVar[str] = "fstab"
    base_kinds: ClassVar[tuple[str, ...]] = ("mount",)

    @property
    def options(self) -> str:
        return str(self.config.get("options", "defaults"))

    @property
    def dump_freq(self) -> int:
        return int(self.config.get("dump-freq", 0))

    @property
    def fsck_passno(self) -> int:
        return int(self.config.get("fsck-passno", 2))

    def create(self, ctx: CreateContext) -> None:
        """Nothing to make: the line is written by writefstab."""
