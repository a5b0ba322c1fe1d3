"""``mkfs``: make a filesystem (or swap) on a block device.

Labels default to the node's name; FAT labels are upper-cased.  Length limits: ext2/3/4
16, xfs 12, vfat 11, swap 15, btrfs 255, ntfs 128.  Labels must be unique in the image
(fstab finds filesystems by label).  ``uuid`` defaults to a random one (FAT: a random
volume id).  ``opts`` are extra mkfs arguments.  Creates no resource to release.
"""

from __future__ import annotations

import re
import shlex
import uuid as uuidlib
from typing import ClassVar

from dibpy import run
from dibpy.blockdev.plugin import CreateContext, Node, ValidationContext

LABEL_MAX: dict[str, int] = {
    "ext2": 16,
    "ext3": 16,
    "ext4": 16,
    "xfs": 12,
    "vfat": 11,
    "swap": 16,
    "btrfs": 255,
    "ntfs": 128,
}

PROGRAMS: dict[str, str] = {
    "ext2": "mkfs.ext2",
    "ext3": "mkfs.ext3",
    "ext4": "mkfs.ext4",
    "xfs": "mkfs.xfs",
    "btrfs": "mkfs.btrfs",
    "vfat": "mkfs.vfat",
    "ntfs": "mkntfs",
    "swap": "mkswap",
}

_VFAT_ID = re.compile(r"^[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}$")


def canonical_type(fstype: str) -> str:
    """diskimage-builder's ``fat`` is ``vfat``."""
    return "vfat" if fstype == "fat" else fstype


def normalise_label(fstype: str, label: str) -> str:
    return label.upper() if canonical_type(fstype) == "vfat" else label


def mkfs_argv(
    fstype: str,
    device: str,
    label: str,
    uuid: str | None,
    opts: list[str],
    partition_start: int | None = None,
) -> list[str]:
    """The command that makes the filesystem (``opts`` go before the device)."""
    fstype = canonical_type(fstype)
    prog = PROGRAMS.get(fstype, f"mkfs.{fstype}")
    if fstype in ("ext2", "ext3", "ext4"):
        argv = [prog, "-F", "-q", "-L", label] + (["-U", uuid] if uuid else [])
    elif fstype == "xfs":
        argv = [prog, "-f", "-q", "-L", label] + (["-m", f"uuid={uuid}"] if uuid else [])
    elif fstype == "btrfs":
        argv = [prog, "-f", "-q", "-L", label] + (["-U", uuid] if uuid else [])
    elif fstype == "vfat":
        argv = [prog, "-n", label] + (["-i", uuid.replace("-", "")] if uuid else [])
    elif fstype == "ntfs":
        argv = [prog, "-Q", "-F", "-L", label]
        if partition_start is not None:
            argv += ["-p", str(partition_start)]
    elif fstype == "swap":
        argv = [prog, "-L", label] + (["-U", uuid] if uuid else [])
    else:
        # any other TYPE: mkfs.TYPE, labelled as diskimage-builder does (mkfs -t TYPE -L)
        argv = [prog, "-L", label]
    return argv + opts + [device]


class Mkfs(Node):
    plugin: ClassVar[str] = "mkfs"
    kind: ClassVar[str] = "filesystem"
    base_kinds: ClassVar[tuple[str, ...]] = ("blockdev",)

    @property
    def fstype(self) -> str:
        return canonical_type(str(self.config.get("type", "")))

    @property
    def label(self) -> str:
        return normalise_label(self.fstype, str(self.config.get("label") or self.name))

    @property
    def opts(self) -> list[str]:
        opts = self.config.get("opts") or []
        return shlex.split(opts) if isinstance(opts, str) else [str(o) for o in opts]

    def validate(self, ctx: ValidationContext) -> None:
        if not self.fstype:
            ctx.problem(
                self.path, "missing type (ext2, ext3, ext4, xfs, btrfs, vfat, ntfs or swap)"
            )
            return
        where = f"{self.path}.label" if "label" in self.config else self.path
        limit = LABEL_MAX.get(self.fstype, 0)
        if not limit:
            ctx.warn(self.path, f"the label length cannot be checked for {self.fstype}")
        elif len(self.label) > limit:
            what = "label" if "label" in self.config else "label (the node name)"
            ctx.problem(
                where,
                f"{what} {self.label!r} is {len(self.label)} characters; "
                f"{self.fstype} allows at most {limit}",
            )
        for other in ctx.nodes.values():
            if other.seq >= self.seq:
                continue
            if isinstance(other, Mkfs) and other.label == self.label:
                ctx.problem(
                    where,
                    f"filesystem label {self.label!r} is already used by "
                    f"{other.name} ({other.path}); labels must be unique",
                )
        if "opts" in self.config:
            try:
                self.opts  # noqa: B018 - parse to validate
            except ValueError as e:
                ctx.problem(f"{self.path}.opts", f"cannot split into arguments: {e}")
        u = self.config.get("uuid")
        if u is not None:
            if self.fstype == "vfat":
                if not _VFAT_ID.match(u):
                    ctx.warn(
                        f"{self.path}.uuid",
                        f"{u!r} is not a FAT volume id (8 hex digits, e.g. 1234-ABCD)",
                    )
            elif self.fstype == "ntfs":
                ctx.warn(f"{self.path}.uuid", "ntfs serial numbers cannot be set; ignored")
            else:
                try:
                    uuidlib.UUID(u)
                except ValueError:
                    ctx.warn(f"{self.path}.uuid", f"{u!r} is not a UUID: mkfs will refuse it")

    def host_problems(self) -> list[str]:
        prog = PROGRAMS.get(self.fstype, f"mkfs.{self.fstype}")
        missing = [prog] if run.which(prog) is None else []
        if self.fstype == "vfat":
            missing += [p for p in ("mcopy",) if run.which(p) is None]
        if self.fstype == "ntfs":
            missing += [p for p in ("ntfs-3g",) if run.which(p) is None]
        return [f"{m} is not installed (needed for {self.fstype})" for m in missing]

    def create(self, ctx: CreateContext) -> None:
        base = ctx.values(self.config["base"])
        device = base["device"]
        u = self.config.get("uuid")
        if u is None and self.fstype == "vfat":
            u = uuidlib.uuid4().hex[:8].upper()
        elif u is None and self.fstype != "ntfs":
            u = str(uuidlib.uuid4())
        start = base.get("start_sector") if self.fstype == "ntfs" else None
        run.run(
            mkfs_argv(self.fstype, device, self.label, u, self.opts, start),
            hint=f"check {self.path} (type, opts)",
        )
        actual = run.run(["blkid", "-p", "-s", "UUID", "-o", "value", device], check=False)
        ctx.publish(
            self.name,
            device=device,
            type=self.fstype,
            label=self.label,
            uuid=actual.stdout.strip() or u,
        )
