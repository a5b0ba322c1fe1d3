"""``mount``: mount a filesystem at ``mount_point`` under the mount base.

Mounts are ordered as diskimage-builder orders them: by mount point as a string (so
``/`` before ``/boot`` before ``/boot/efi``, a parent always before its children, and
swap's ``none`` last); each mount comes after the previous one in that order.
Resources: the mount (released by sync, fstrim, umount).  FAT filesystems are never
kernel-mounted: the mount point is a plain staging directory in the parent filesystem,
copied in with ``mcopy`` and emptied at umount.  NTFS is mounted with ntfs-3g (FUSE).
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from dibpy import mounts, run
from dibpy.blockdev import resources
from dibpy.blockdev.plugin import CreateContext, Node, ValidationContext


def mount_sort_key(mount_point: str) -> str:
    return mount_point if mount_point == "none" else posixpath.normpath(mount_point)


class Mount(Node):
    plugin: ClassVar[str] = "mount"
    kind: ClassVar[str] = "mount"
    base_kinds: ClassVar[tuple[str, ...]] = ("filesystem",)

    @property
    def mount_point(self) -> str:
        mp = str(self.config["mount_point"])
        return mp if mp == "none" else posixpath.normpath(mp)

    @property
    def swap(self) -> bool:
        return self.mount_point == "none"

    def after(self, nodes: Mapping[str, Node]) -> list[str]:
        mine = mount_sort_key(self.mount_point)
        earlier = [
            (mount_sort_key(n.mount_point), n.name)
            for n in nodes.values()
            if isinstance(n, Mount) and mount_sort_key(n.mount_point) < mine
        ]
        return [max(earlier)[1]] if earlier else []

    def target(self, mount_base: Path) -> Path:
        return mount_base / self.mount_point.lstrip("/")

    def fstype(self, nodes: Mapping[str, Node]) -> str:
        return str(nodes[self.config["base"]].config.get("type", ""))

    def validate(self, ctx: ValidationContext) -> None:
        mp = str(self.config["mount_point"])
        fstype = self.fstype(ctx.nodes)
        if mp == "none":
            if fstype != "swap":
                ctx.problem(f"{self.path}.mount_point", "only swap may have mount_point none")
            return
        if fstype == "swap":
            ctx.problem(f"{self.path}.mount_point", "swap cannot be mounted; use none")
        if not mp.startswith("/"):
            ctx.problem(f"{self.path}.mount_point", f"{mp!r} is not an absolute path")
        if ".." in mp.split("/"):
            ctx.problem(f"{self.path}.mount_point", f"{mp!r} must not contain '..'")
        for other in ctx.nodes.values():
            if other.seq >= self.seq:
                continue
            if isinstance(other, Mount) and other.mount_point == self.mount_point:
                ctx.problem(
                    f"{self.path}.mount_point",
                    f"{self.mount_point} is already mounted by {other.name} ({other.path})",
                )

    def create(self, ctx: CreateContext) -> None:
        if self.swap:
            return
        fs = ctx.values(self.config["base"])
        target = self.target(ctx.params.mount_base)
        target.mkdir(parents=True, exist_ok=True)
        fstype = fs["type"]
        if fstype == "vfat":
            ctx.acquire("vfat-stage", self.name, path=str(target), device=fs["device"])
        elif fstype == "ntfs":
            with resources.signals_deferred():
                run.run(["ntfs-3g", fs["device"], target])
                ctx.acquire("mount", self.name, path=str(target), device=fs["device"])
        else:
            with resources.signals_deferred():
                mounts.mount_only(["-t", fstype, fs["device"]], target)
                ctx.acquire("mount", self.name, path=str(target), device=fs["device"])
        ctx.publish(self.name, path=str(target), mount_point=self.mount_point)
