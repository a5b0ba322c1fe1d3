"""``partitioning``: an MBR or GPT table written with ``sfdisk``, and its partitions.

The layout (start and size of every partition, in sectors) is computed here, so the
same numbers drive validation (do the partitions fit?), the sfdisk script, and the
offset-loop fallback.  Partitions are reached without udev or device-mapper:
``partx -a`` adds ``/dev/loopNpM``; if that node does not appear, the partition gets its
own loop device over the same bytes (``losetup -o OFF --sizelimit LEN``).

Sizes are absolute (``8MiB``) or a percentage of the space that remains after the
partitions before it (``100%`` = the rest).  Starts are aligned to ``align`` (1MiB).
On MBR, partitions flagged ``primary`` are primary, the others logical (inside one
extended partition after the primaries), as in diskimage-builder.

Resources: the kernel's partition entries (``partx -d`` at umount) and, in the
fallback, one loop device per partition.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from dibpy import loopdev, run
from dibpy.blockdev import resources
from dibpy.blockdev.params import BlockDeviceParams
from dibpy.blockdev.plugin import CreateContext, Node, RawNode, ValidationContext
from dibpy.blockdev.units import human, is_percent, parse_rel_size, parse_size
from dibpy.errors import ConfigError, DibpyError
from dibpy.log import LOG

#: sgdisk type codes -> GPT partition type GUIDs
GPT_TYPES: dict[str, str] = {
    "0700": "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7",  # Microsoft basic data
    "0C01": "E3C9E316-0B5C-4DB8-817D-F92DF00215AE",  # Microsoft reserved
    "2700": "DE94BBA4-06D1-4D40-A16A-BFD50179D6AC",  # Windows recovery
    "4100": "9E1A2D38-C612-4316-AA26-8B49521E5A8B",  # PowerPC PReP boot
    "8200": "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F",  # Linux swap
    "8300": "0FC63DAF-8483-4772-8E79-3D69D8477DE4",  # Linux filesystem
    "8302": "933AC7E1-2EB4-4F13-B844-0E14E2AEF915",  # Linux /home
    "8303": "44479540-F297-41B2-9AF7-D131D5F0458A",  # Linux root (x86)
    "8304": "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",  # Linux root (x86-64)
    "8305": "B921B045-1DF0-41C3-AF44-4C6F280D3FAE",  # Linux root (ARM64)
    "8310": "4D21B016-B534-45C2-A9FB-5C16E091FD2D",  # Linux /var
    "8E00": "E6D6D379-F507-44C2-A23C-238F2A3DF928",  # Linux LVM
    "EA00": "BC13C2FF-59E6-4262-A352-B275FD6F7172",  # XBOOTLDR
    "EF00": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",  # EFI system partition
    "EF01": "024DEE41-33E7-11D3-9D69-0008C781F39F",  # MBR partition scheme
    "EF02": "21686148-6449-6E6F-744E-656564454649",  # BIOS boot partition
    "FD00": "A19D880F-05FC-4D3B-A006-743F0F84911E",  # Linux RAID
}

_GUID = re.compile(r"^[0-9A-Fa-f]{8}-([0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}$")
_HEX4 = re.compile(r"^[0-9A-Fa-f]{4}$")
_MBR_EXTENDED = 0x05
ALIGN_DEFAULT = 1024 * 1024
MBR_MAX_BYTES = (2**32 - 1) * 512


def gpt_type(value: object) -> str:
    """A GPT type GUID from an sgdisk code (``EF00``) or a GUID; raises ConfigError."""
    if value is None:
        return GPT_TYPES["8300"]
    s = f"{value:04X}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
    if _GUID.match(s):
        return s.upper()
    code = _gpt_code(s)
    if code is not None:
        # sgdisk (which diskimage-builder calls) gives a code it does not know the
        # Linux filesystem type; validation warns about it
        return GPT_TYPES.get(code, GPT_TYPES["8300"])
    known = ", ".join(sorted(GPT_TYPES))
    raise ConfigError(
        f"unknown GPT partition type {value!r}", hint=f"use a type GUID or one of the codes {known}"
    )


def _gpt_code(s: str) -> str | None:
    """An sgdisk type code (``EF00``, ``0x4100``) in canonical form, or None."""
    s = s.strip()
    if s[:2].lower() == "0x":
        s = s[2:]
    if re.fullmatch(r"[0-9A-Fa-f]{1,4}", s):
        return s.upper().rjust(4, "0")
    return None


def gpt_type_unknown(value: object) -> bool:
    """Whether ``value`` is a well-formed sgdisk code missing from GPT_TYPES."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        s = "8300" if value is None else f"{value:04X}"
    else:
        s = str(value)
    if _GUID.match(s):
        return False
    code = _gpt_code(s)
    return code is not None and code not in GPT_TYPES


def mbr_type(value: object) -> int:
    """An MBR type byte from an int (``0x83`` in YAML), ``"83"``/``"0x83"`` or ``"8300"``."""
    if value is None:
        return 0x83
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    else:
        s = str(value).strip().lower().removeprefix("0x")
        if re.fullmatch(r"[0-9a-f]{4}", s) and s.endswith("00"):
            s = s[:2]
        if not re.fullmatch(r"[0-9a-f]{1,2}", s):
            raise ConfigError(
                f"{value!r} is not an MBR partition type",
                hint="use a type byte such as 0x83, 0xef, 0x0c, 0x07 (or sgdisk's 8300)",
            )
        n = int(s, 16)
    if not 0 < n < 256 or n in (0x05, 0x0F, 0x85):
        raise ConfigError(f"{value!r} is not a usable MBR partition type")
    return n


@dataclass(frozen=True)
class PartSpec:
    name: str
    size: object
    flags: frozenset[str]
    type: object
    path: str


@dataclass(frozen=True)
class PartGeom:
    """Where one partition is, in sectors.  ``type`` is what sfdisk's ``type=`` takes."""

    name: str
    number: int
    start: int
    size: int
    type: str
    bootable: bool = False
    logical: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"number": self.number, "start": self.start, "size": self.size}


class LayoutError(ConfigError):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path


def _up(n: int, a: int) -> int:
    return -(-n // a) * a


def layout(
    label: str,
    parts: Sequence[PartSpec],
    disk_bytes: int,
    sector_size: int = 512,
    align_bytes: int = ALIGN_DEFAULT,
) -> list[PartGeom]:
    """Compute every partition's place; raises LayoutError naming the bad partition.

    Returns the partitions plus, for MBR with logical partitions, the extended one
    (named ``""``).
    """
    ss = sector_size
    align = max(1, align_bytes // ss)
    total = disk_bytes // ss
    if label == "gpt":
        last = total - 1 - (1 + -(-16384 // ss))  # backup header and entry array
    else:
        if disk_bytes > MBR_MAX_BYTES:
            raise LayoutError("", f"an MBR disk can be at most 2TiB, not {human(disk_bytes)}")
        last = total - 1
    out: list[PartGeom] = []
    cursor = align
    number = 0
    extended_at: int | None = None
    logical_no = 4
    seen_logical = False
    for spec in parts:
        logical = label == "mbr" and "primary" not in spec.flags
        if logical and not seen_logical:
            seen_logical = True
            extended_at = _up(cursor, align)
            cursor = extended_at + 1
        elif not logical and seen_logical:
            raise LayoutError(
                spec.path,
                "a primary partition cannot follow logical ones "
                "on MBR; list primary partitions first",
            )
        start = _up(cursor + (1 if logical and out and out[-1].logical else 0), align)
        remaining = (last + 1 - start) * ss
        if remaining <= 0:
            raise LayoutError(
                f"{spec.path}.size",
                f"partition {spec.name} does not fit: no space left on the "
                f"{human(disk_bytes)} disk",
            )
        try:
            want = parse_rel_size(spec.size, remaining)
        except ConfigError as e:
            raise LayoutError(f"{spec.path}.size", e.message) from None
        if is_percent(spec.size):
            sectors = (want // ss) // align * align
            if start + sectors > last + 1:
                sectors = last + 1 - start
        else:
            sectors = -(-want // ss)
        if sectors <= 0:
            raise LayoutError(f"{spec.path}.size", f"partition {spec.name} would be empty")
        if start + sectors > last + 1:
            raise LayoutError(
                f"{spec.path}.size",
                f"partition {spec.name} does not fit: it needs {human(sectors * ss)} but "
                f"only {human(max(0, remaining))} remain on the {human(disk_bytes)} disk",
            )
        if logical:
            logical_no += 1
            num = logical_no
        else:
            number += 1
            num = number
        if label == "gpt":
            ptype = gpt_type(spec.type)
        else:
            try:
                ptype = f"{mbr_type(spec.type):x}"
            except ConfigError as e:
                raise LayoutError(f"{spec.path}.type", e.message) from None
        out.append(PartGeom(spec.name, num, start, sectors, ptype, "boot" in spec.flags, logical))
        cursor = start + sectors
    if extended_at is not None:
        if number >= 4:
            raise LayoutError(
                parts[0].path,
                "MBR has room for 3 primary partitions when "
                "there are logical ones; flag fewer as primary",
            )
        out.append(
            PartGeom("", number + 1, extended_at, last + 1 - extended_at, f"{_MBR_EXTENDED:x}")
        )
    elif label == "mbr" and number > 4:
        raise LayoutError(parts[4].path, "MBR has room for only 4 primary partitions")
    if label == "gpt" and number > 128:
        raise LayoutError(parts[128].path, "GPT has room for 128 partitions")
    return out


def sfdisk_script(label: str, geoms: Sequence[PartGeom], sector_size: int = 512) -> str:
    """The sfdisk input that writes this table (partitions in number order)."""
    lines = [f"label: {'gpt' if label == 'gpt' else 'dos'}", "unit: sectors"]
    if sector_size != 512:
        lines.append(f"sector-size: {sector_size}")
    lines.append("")
    for g in sorted(geoms, key=lambda g: g.number):
        fields = [f"start={g.start}", f"size={g.size}", f"type={g.type}"]
        if label == "gpt":
            fields.append(f'name="{g.name}"')
            if g.bootable:
                fields.append('attrs="LegacyBIOSBootable"')
        elif g.bootable:
            fields.append("bootable")
        lines.append(", ".join(fields))
    return "\n".join(lines) + "\n"


class Partition(Node):
    """One partition: a block device for the nodes built on it."""

    plugin: ClassVar[str] = "partitioning"
    kind: ClassVar[str] = "blockdev"
    base_kinds: ClassVar[tuple[str, ...]] = ()
    needs_base: ClassVar[bool] = False

    def __init__(
        self,
        name: str,
        config: dict[str, Any],
        path: str,
        params: BlockDeviceParams,
        table: Partitioning,
        previous: str | None,
    ) -> None:
        super().__init__(name, config, path, params)
        self.table = table
        self.previous = previous

    @property
    def bases(self) -> list[str]:
        return []

    def after(self, nodes: Mapping[str, Node]) -> list[str]:
        return [self.table.name] + ([self.previous] if self.previous else [])

    def spec(self) -> PartSpec:
        return PartSpec(
            self.name,
            self.config.get("size"),
            frozenset(self.config.get("flags") or ()),
            self.config.get("type"),
            self.path,
        )

    def create(self, ctx: CreateContext) -> None:
        table = ctx.values(self.table.name)
        geom = table["partitions"][self.name]
        ss = table["sector_size"]
        node = resources.partition_node(table["device"], geom["number"])
        if table.get("partx") and resources.wait_for_node(node):
            device = node
        else:
            backing = table.get("file") or table["device"]
            LOG.info(
                "partition %s: %s did not appear; using an offset loop device", self.name, node
            )
            with resources.signals_deferred():
                device = loopdev.attach_loop(
                    backing, sector_size=ss, offset=geom["start"] * ss, sizelimit=geom["size"] * ss
                )
                ctx.acquire("loop", self.name, device=device, file=str(backing))
        ctx.publish(
            self.name,
            device=device,
            start_sector=geom["start"],
            size=geom["size"] * ss,
            sector_size=ss,
            number=geom["number"],
        )


class Partitioning(Node):
    plugin: ClassVar[str] = "partitioning"
    kind: ClassVar[str] = "table"
    base_kinds: ClassVar[tuple[str, ...]] = ("blockdev",)

    partitions: list[Partition]

    @classmethod
    def from_config(cls, raw: RawNode, params: BlockDeviceParams) -> list[Node]:
        table = cls(raw.name, raw.config, raw.path, params)
        table.partitions = []
        previous: str | None = None
        for j, part in enumerate(raw.config["partitions"]):
            p = Partition(
                part["name"], part, f"{raw.path}.partitions[{j}]", params, table, previous
            )
            table.partitions.append(p)
            previous = p.name
        return [table, *table.partitions]

    @property
    def label(self) -> str:
        return str(self.config["label"])

    @property
    def align_bytes(self) -> int:
        return parse_size(self.config.get("align", ALIGN_DEFAULT))

    def validate(self, ctx: ValidationContext) -> None:
        try:
            align = self.align_bytes
        except ConfigError as e:
            ctx.problem(f"{self.path}.align", e.message)
            return
        if align <= 0 or align % 512:
            ctx.problem(f"{self.path}.align", "must be a positive multiple of 512 bytes")
            return
        for p in self.partitions:
            if self.label == "gpt" and "primary" in (p.config.get("flags") or ()):
                ctx.problem(f"{p.path}.flags", "the primary flag is for MBR, not GPT")
            try:
                if not is_percent(p.config.get("size")):
                    parse_size(p.config.get("size"))
            except ConfigError as e:
                ctx.problem(f"{p.path}.size", e.message)
            try:
                if self.label == "gpt":
                    gpt_type(p.config.get("type"))
                    if gpt_type_unknown(p.config.get("type")):
                        ctx.warn(
                            f"{p.path}.type",
                            f"unknown sgdisk type code {p.config.get('type')!r}; "
                            "it gets the Linux filesystem type (8300), as sgdisk does",
                        )
                else:
                    try:
                        mbr_type(p.config.get("type"))
                    except ConfigError as e:
                        # diskimage-builder accepts this and fails when it writes the table
                        ctx.warn(f"{p.path}.type", f"{e.message}; writing the table will fail")
            except ConfigError as e:
                ctx.problem(f"{p.path}.type", e.message + (f" ({e.hint})" if e.hint else ""))
        if ctx.problems:
            return
        base = ctx.nodes[self.config["base"]]
        size = base.size_bytes()
        sector = getattr(base, "block_size", 512)
        if size is None:
            return  # checked again by create(), once the image size is known
        try:
            layout(self.label, [p.spec() for p in self.partitions], size, sector, align)
        except LayoutError as e:
            ctx.problem(e.path or self.path, e.message)

    def host_problems(self) -> list[str]:
        return [
            f"{t} is not installed (util-linux/fdisk)"
            for t in ("sfdisk", "partx")
            if run.which(t) is None
        ]

    def create(self, ctx: CreateContext) -> None:
        base = ctx.values(self.config["base"])
        device = base["device"]
        ss = int(base.get("sector_size", 512))
        size = base.get("size") or int(run.output(["blockdev", "--getsize64", device]))
        try:
            geoms = layout(
                self.label, [p.spec() for p in self.partitions], size, ss, self.align_bytes
            )
        except LayoutError as e:
            raise ConfigError(f"{e.path or self.path}: {e.message}") from None
        script = sfdisk_script(self.label, geoms, ss)
        LOG.debug("sfdisk script for %s:\n%s", device, script)
        run.run(
            ["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", "--wipe", "always", device],
            input=script,
        )
        partx_ok = False
        if not os.environ.get("DIBPY_BLOCKDEV_NO_PARTX"):
            with resources.signals_deferred():
                ctx.acquire("partx", self.name, device=device, file=base.get("file"))
            partx_ok = resources.partx_add(device)
        ctx.publish(
            self.name,
            device=device,
            file=base.get("file"),
            sector_size=ss,
            label=self.label,
            partx=partx_ok,
            partitions={g.name: g.to_json() for g in geoms if g.name},
        )
        if not partx_ok and not base.get("file"):
            raise DibpyError(f"cannot reach the partitions of {device}: partx -a failed")
