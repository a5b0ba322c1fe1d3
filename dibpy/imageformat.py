"""What a file is, from its own bytes: disk-image formats by signature, raw disks by what
they hold, and whether the file is whole.

qemu-img's probe cannot be trusted on its own: a fixed VHD (raw data plus a 512-byte
footer) probes as raw, and anything it does not recognise, random bytes or a text file,
is "raw" too.  :func:`sniff` reads the signatures itself, the footer included, and calls a
file raw only when it holds a partition table or a filesystem (or the user says ``-f
raw``).  :func:`check_whole` then asks qemu-img (``info``, and ``check`` for the formats
that have one) and compares the file's size with what its header says must be there, so
a truncated image is refused instead of read as zeros.

Nothing here writes; every finding is a DibpyError naming the file.
"""

from __future__ import annotations

import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dibpy import run
from dibpy.errors import DibpyError

SECTOR = 512
#: dibpy's name of a format -> qemu-img's
QEMU_NAME = {"vhd": "vpc"}
#: qemu-img's name -> dibpy's
FROM_QEMU = {"vpc": "vhd"}
#: formats ``qemu-img check`` checks (the others answer 63, "not supported")
CHECKABLE = ("qcow2", "qed", "vdi", "vhdx", "vmdk", "parallels")
#: qemu-img check: 0 clean, 3 only leaked clusters (wasted space, the data is intact),
#: 63 no check for this format
CHECK_OK = (0, 3, 63)
RAW_HINT = "if it is a raw disk image, say so with -f raw"


@dataclass(frozen=True)
class Sniffed:
    #: dibpy's name: raw, qcow2, vhd, vhdx, vmdk, vdi, qed, parallels, ova, qcow
    fmt: str
    #: what gave it away, for messages (``"VHD footer (fixed disk) at the end"``)
    why: str


def vhd_footer(block: bytes) -> dict[str, int] | None:
    """The fields of a valid VHD footer (cookie and checksum right), else None."""
    if len(block) < SECTOR or block[:8] != b"conectix":
        return None
    total = sum(block[:64]) + sum(block[68:SECTOR])
    if (~total) & 0xFFFFFFFF != int.from_bytes(block[64:68], "big"):
        return None
    return {
        "data_offset": int.from_bytes(block[16:24], "big"),
        "current_size": int.from_bytes(block[48:56], "big"),
        "disk_type": int.from_bytes(block[60:64], "big"),
    }


VHD_TYPES = {2: "fixed", 3: "dynamic", 4: "differencing"}
VDI_SIGNATURE = 0xBEDA107F


def _head_signature(head: bytes) -> Sniffed | None:
    if head[:4] == b"QFI\xfb":
        version = int.from_bytes(head[4:8], "big")
        if version == 1:
            return Sniffed("qcow", "qcow version 1 header")
        return Sniffed("qcow2", f"qcow2 header (QFI\\xfb, version {version})")
    if head[:4] == b"QED\0":
        return Sniffed("qed", "QED header")
    if head[:8] == b"vhdxfile":
        return Sniffed("vhdx", "VHDX signature (vhdxfile)")
    if head[:4] in (b"KDMV", b"COWD"):
        return Sniffed("vmdk", f"VMDK sparse header ({head[:4].decode()})")
    if head.lstrip()[:21] == b"# Disk DescriptorFile":
        return Sniffed("vmdk", "VMDK descriptor")
    if len(head) >= 68 and int.from_bytes(head[64:68], "little") == VDI_SIGNATURE:
        return Sniffed("vdi", "VDI header")
    footer = vhd_footer(head[:SECTOR])
    if footer is not None:
        kind = VHD_TYPES.get(footer["disk_type"], f"type {footer['disk_type']}")
        return Sniffed("vhd", f"VHD footer copy ({kind} disk) at the start")
    if head[:16] in (b"WithoutFreeSpace", b"WithouFreSpacExt"):
        return Sniffed("parallels", "Parallels header")
    return None


def _is_ova(path: Path) -> bool:
    try:
        with tarfile.open(path, "r:") as tar:
            first = tar.next()
    except (tarfile.TarError, OSError, EOFError):
        return False
    return first is not None and first.name.endswith(".ovf")


def _raw_contents(path: Path, head: bytes) -> str | None:
    """What makes ``path`` a raw disk: a partition table or a filesystem, else None."""
    if head[512:520] == b"EFI PART" or head[4096:4104] == b"EFI PART":
        return "GPT partition table"
    if head[510:512] == b"\x55\xaa":
        return "MBR boot signature (0x55AA)"
    r = run.run(["blkid", "-p", "-o", "export", str(path)], check=False)
    found = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    if found.get("PTTYPE"):
        return f"{found['PTTYPE']} partition table (blkid)"
    if found.get("TYPE"):
        return f"{found['TYPE']} filesystem (blkid)"
    return None


def sniff(path: Path) -> Sniffed | None:
    """The format of ``path`` from its signatures; None when nothing says what it is."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8192)
        tail = b""
        if size >= 2 * SECTOR:
            f.seek(-SECTOR, os.SEEK_END)
            tail = f.read(SECTOR)
    found = _head_signature(head)
    if found is not None:
        return found
    # a fixed VHD is raw data with the footer as its last sector: look there before
    # trusting anything inside the data (its MBR, its filesystems)
    footer = vhd_footer(tail)
    if footer is not None:
        kind = VHD_TYPES.get(footer["disk_type"], f"type {footer['disk_type']}")
        return Sniffed("vhd", f"VHD footer ({kind} disk) at the end")
    if _is_ova(path):
        return Sniffed("ova", "tar archive with an OVF descriptor first")
    raw = _raw_contents(path, head)
    if raw is not None:
        return Sniffed("raw", raw)
    return None


def qemu_probe(path: Path) -> str:
    """qemu-img's own guess (its name), for files none of our signatures match."""
    r = run.run(["qemu-img", "info", "--output=json", str(path)], check=False)
    if r.returncode != 0:
        return "raw"
    try:
        return str(json.loads(r.stdout).get("format") or "raw")
    except json.JSONDecodeError:
        return "raw"


def detect(path: Path) -> Sniffed:
    """The format of ``path``, or a DibpyError naming the file when it is no disk image."""
    if not path.is_file():
        raise DibpyError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DibpyError(f"{path} is empty: not a disk image", hint=RAW_HINT)
    found = sniff(path)
    if found is not None:
        return found
    guess = qemu_probe(path)
    if guess != "raw":
        return Sniffed(FROM_QEMU.get(guess, guess), f"qemu-img probes it as {guess}")
    raise DibpyError(
        f"{path} is not a recognised disk image: no image-format signature, partition "
        "table or filesystem in it",
        hint=RAW_HINT,
    )


def qemu_info(path: Path | str, fmt: str | None) -> dict[str, Any]:
    """``qemu-img info`` of ``path`` read as ``fmt`` (dibpy's name; None for a json: spec)."""
    argv = ["qemu-img", "info", "--output=json"]
    if fmt is not None:
        argv += ["-f", QEMU_NAME.get(fmt, fmt)]
    r = run.run([*argv, str(path)], check=False)
    if r.returncode != 0:
        what = f"a {fmt} image" if fmt else "the disk"
        raise DibpyError(
            f"{path}: qemu-img cannot read it as {what}: {_tail(r.stderr or r.stdout)}",
            hint="the file is damaged or truncated" + (f", or not {fmt}" if fmt else ""),
        )
    info: dict[str, Any] = json.loads(r.stdout)
    return info


def _tail(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " / ".join(lines[-2:])[-300:] or "no message"


def _check_summary(text: str) -> str:
    """qemu-img check's first error and its count, from its many lines."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("ERROR", "Leaked", "qemu-img:"))]
    count = [line for line in lines if "errors were found" in line]
    if errors:
        return errors[0][:160] + (f"; {count[0].rstrip('.')}" if count else "")
    return count[0].rstrip(".") if count else _tail(text)


def check_whole(path: Path, fmt: str, spec: str | None = None) -> dict[str, Any]:
    """Refuse a damaged or truncated ``path`` (read as ``fmt``); returns qemu-img info.

    ``spec`` is qemu's ``json:`` name of a disk inside a container (an OVA's vmdk).
    """
    info = qemu_info(spec, None) if spec else qemu_info(path, fmt)
    qfmt = QEMU_NAME.get(fmt, fmt)
    if spec or qfmt in CHECKABLE:
        # a json: spec names its own driver (an OVA's disk is a vmdk)
        argv = ["qemu-img", "check", *(["-f", qfmt] if not spec else []), spec or str(path)]
        r = run.run(argv, check=False)
        if r.returncode not in CHECK_OK:
            raise DibpyError(
                f"{path} is a damaged {fmt} image (qemu-img check, status {r.returncode}: "
                f"{_check_summary(r.stdout + chr(10) + r.stderr)})",
                hint="is it truncated or still being written? (qemu-img check -r all "
                "repairs some damage, on a copy)",
            )
    size = path.stat().st_size
    needed, what = required_size(path, fmt)
    if needed > size:
        raise DibpyError(
            f"{path} is a truncated {fmt} image: {what} needs {needed} bytes, the file has {size}",
            hint="copy or download it again",
        )
    return info


def required_size(path: Path, fmt: str) -> tuple[int, str]:
    """The least file size the header or partition table of ``path`` implies, and whose."""
    with open(path, "rb") as f:
        head = f.read(8192)
    if fmt == "vdi" and len(head) >= 392:
        # qemu's vdi check does not look past the block map: the data blocks are
        # allocated in order, so the last one ends at offset_data + allocated * block size
        offset_data = int.from_bytes(head[344:348], "little")
        block_size = int.from_bytes(head[376:380], "little")
        allocated = int.from_bytes(head[388:392], "little")
        return offset_data + allocated * block_size, f"its header ({allocated} blocks)"
    if fmt == "raw":
        return raw_required_size(path, head)
    if fmt == "vhd" and path.stat().st_size >= 2 * SECTOR:
        with open(path, "rb") as f:
            f.seek(-SECTOR, os.SEEK_END)
            footer = vhd_footer(f.read(SECTOR))
        if footer is not None and footer["disk_type"] == 2:
            return footer["current_size"] + SECTOR, "its footer (a fixed disk's size)"
    return 0, ""


def raw_required_size(path: Path, head: bytes) -> tuple[int, str]:
    """A raw disk's partitions (and its GPT's backup header) must lie inside the file."""
    need, what = 0, ""
    for at in (512, 4096):
        if head[at : at + 8] == b"EFI PART":
            backup_lba = int.from_bytes(head[at + 32 : at + 40], "little")
            need, what = (backup_lba + 1) * at, "its GPT (backup header)"
            break
    r = run.run(["sfdisk", "--json", str(path)], check=False)
    if r.returncode != 0 or not r.stdout.strip():
        return need, what
    try:
        table = json.loads(r.stdout).get("partitiontable") or {}
    except json.JSONDecodeError:
        return need, what
    sector = int(table.get("sectorsize", SECTOR))
    for i, p in enumerate(table.get("partitions", []), 1):
        if str(p.get("type", "")).lower() == "ee":
            continue  # the protective MBR's one partition: covered by the GPT header
        end = (int(p.get("start", 0)) + int(p.get("size", 0))) * sector
        if end > need:
            need, what = end, f"partition {i}"
    return need, what
