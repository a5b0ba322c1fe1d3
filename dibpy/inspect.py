"""``dibpy info``: describe a disk image without booting it and without device-mapper.

The image is read as raw bytes: a raw image directly, any other format through a sparse
temporary raw copy made by ``qemu-img convert`` (removed at the end).  From that:

- the partition table with ``sfdisk --json``;
- each partition's filesystem, label and UUID with ``blkid -p -O OFFSET -S SIZE``;
- the bootloader: GRUB (or another) boot code in the MBR, a BIOS boot partition,
  ``EFI/BOOT/*.efi`` on an EFI system partition (read with mtools at its offset),
  ``grub.cfg`` on a filesystem;
- the OS: ``os-release`` read from ext2/3/4 with ``debugfs`` at the partition's offset;
  other filesystems (xfs, btrfs) are mounted read-only from a loop device limited to the
  partition (``losetup -r -o OFFSET --sizelimit SIZE``), detached before returning.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dibpy import imageformat, loopdev, mounts, run
from dibpy.errors import DibpyError

ESP_GPT = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
BIOS_BOOT_GPT = "21686148-6449-6E6F-744E-656564454649"
ESP_MBR = ("ef", "0xef")
EXT = ("ext2", "ext3", "ext4")
#: boot code signatures in the first 440 bytes of a disk
BOOT_CODE = ((b"GRUB", "GRUB"), (b"SYSLINUX", "SYSLINUX"), (b"EXTLINUX", "EXTLINUX"))


def qemu_info(path: Path, fmt: str | None = None) -> dict[str, Any]:
    """``qemu-img info`` of ``path`` read as ``fmt`` (never qemu's probe once we know)."""
    return imageformat.qemu_info(path, fmt)


def ova_disk_spec(path: Path) -> str | None:
    """qemu's ``json:`` name of the first disk inside an OVA, or None if not an OVA."""
    import tarfile

    if not tarfile.is_tarfile(path):
        return None
    with tarfile.open(path, "r:") as tar:
        members = tar.getmembers()
        if not members or not members[0].name.endswith(".ovf"):
            return None
        for m in members:
            if m.name.endswith(".vmdk"):
                spec = {
                    "driver": "vmdk",
                    "file": {
                        "driver": "raw",
                        "offset": m.offset_data,
                        "size": m.size,
                        "file": {"driver": "file", "filename": str(path.resolve())},
                    },
                }
                return "json:" + json.dumps(spec)
    return None


def detect_format(path: Path) -> str:
    """The format of an image from its own signatures (:mod:`dibpy.imageformat`): raw,
    qcow2, vhd, vhdx, vmdk, vdi, qed, parallels or ova.  A file that is no disk image
    is a DibpyError naming it."""
    return imageformat.detect(path).fmt


def check_input(path: Path, fmt: str) -> dict[str, Any]:
    """Refuse a damaged or truncated image; returns qemu-img info of it (its disk, for an
    OVA)."""
    if not path.is_file():
        raise DibpyError(f"{path}: no such file")
    if fmt == "ova":
        spec = ova_disk_spec(path)
        if spec is None:
            raise DibpyError(f"{path} is not an OVA: no OVF descriptor first, or no .vmdk in it")
        return imageformat.check_whole(path, fmt, spec)
    return imageformat.check_whole(path, fmt)


@contextlib.contextmanager
def raw_view(path: Path, fmt: str | None = None) -> Iterator[Path]:
    """A raw view of the image: the file itself if raw, else a temporary sparse raw copy.

    The copy lives in a temporary directory (``TMPDIR``) removed when the block exits.
    """
    fmt = fmt or detect_format(path)
    if fmt == "raw":
        yield path
        return
    tmp = Path(tempfile.mkdtemp(prefix="dibpy-info-"))
    try:
        out = tmp / "disk.raw"
        if fmt == "ova":
            spec = ova_disk_spec(path)
            assert spec is not None
            run.run(["qemu-img", "convert", "-O", "raw", spec, str(out)])
        else:
            qfmt = imageformat.QEMU_NAME.get(fmt, fmt)
            run.run(["qemu-img", "convert", "-f", qfmt, "-O", "raw", str(path), str(out)])
        yield out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def partitions(raw: Path) -> dict[str, Any] | None:
    r = run.run(["sfdisk", "--json", str(raw)], check=False)
    if r.returncode != 0 or not r.stdout.strip():
        return None
    table = json.loads(r.stdout).get("partitiontable") or {}
    sector = int(table.get("sectorsize", 512))
    parts = []
    for i, p in enumerate(table.get("partitions", []), 1):
        m = re.search(r"(\d+)$", p.get("node", ""))
        parts.append(
            {
                "number": int(m.group(1)) if m else i,
                "start": int(p["start"]) * sector,
                "size": int(p["size"]) * sector,
                "type": str(p.get("type", "")),
                "uuid": p.get("uuid"),
                "name": p.get("name"),
                "bootable": bool(p.get("bootable", False)),
            }
        )
    return {"label": table.get("label"), "id": table.get("id"), "partitions": parts}


def probe_fs(raw: Path, offset: int, size: int) -> dict[str, str]:
    r = run.run(
        ["blkid", "-p", "-O", str(offset), "-S", str(size), "-o", "export", str(raw)],
        check=False,
    )
    out: dict[str, str] = {}
    for line in r.stdout.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out[k] = v
    return out


def boot_code(raw: Path) -> str | None:
    with open(raw, "rb") as f:
        code = f.read(440)
    if len(code) < 440 or not any(code):
        return None
    for sig, name in BOOT_CODE:
        if sig in code:
            return name
    return "unknown boot code"


def efi_files(raw: Path, offset: int) -> list[str]:
    """``*.efi`` files under /EFI of the FAT filesystem at ``offset`` (mtools, no mount)."""
    env = {"MTOOLS_SKIP_CHECK": "1"}
    r = run.run(["mdir", "-/", "-b", "-i", f"{raw}@@{offset}", "::/EFI"], env=env, check=False)
    if r.returncode != 0:
        return []
    return sorted(
        "/" + line.strip().lstrip(":").lstrip("/")
        for line in r.stdout.splitlines()
        if line.strip().lower().endswith(".efi")
    )


def _debugfs(spec: str, request: str) -> run.Result:
    return run.run(["debugfs", "-R", request, spec], check=False)


def debugfs_read(raw: Path, offset: int, path: str, depth: int = 8) -> str | None:
    """Read ``path`` (following symlinks) from the ext filesystem at ``offset``."""
    spec = f"{raw}?offset={offset}"
    for _ in range(depth):
        st = _debugfs(spec, f"stat {path}")
        if "Type: symlink" in st.stdout:
            m = re.search(r'Fast link dest: "(.*)"', st.stdout)
            target = m.group(1) if m else None
            if target is None:
                cat = _debugfs(spec, f"cat {path}")
                target = cat.stdout.strip()
            path = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
            continue
        if "Type: regular" not in st.stdout:
            return None
        cat = _debugfs(spec, f"cat {path}")
        return cat.stdout if cat.returncode == 0 else None
    return None


def debugfs_exists(raw: Path, offset: int, path: str) -> bool:
    st = _debugfs(f"{raw}?offset={offset}", f"stat {path}")
    return "Inode:" in st.stdout


@contextlib.contextmanager
def mounted_ro(raw: Path, offset: int, size: int, fstype: str) -> Iterator[Path]:
    """Mount the filesystem at ``offset`` read-only; the loop device and mount are ours
    for the block only (unmounted and detached on exit, even on error)."""
    with contextlib.ExitStack() as stack:
        dev = loopdev.attach_loop(raw, offset=offset, sizelimit=size, read_only=True)
        mounts.push_cleanup(stack, loopdev.detach_loop, dev, str(raw), what=f"detaching {dev}")
        mnt = Path(tempfile.mkdtemp(prefix="dibpy-info-mnt-"))
        stack.callback(shutil.rmtree, mnt, ignore_errors=True)
        opts = "ro,norecovery" if fstype == "xfs" else "ro"
        mounts.mount(["-t", fstype, "-o", opts, dev], mnt, stack, f"the {fstype} filesystem")
        yield mnt


def _read_in(root: Path, path: str, depth: int = 8) -> str | None:
    """Read ``path`` inside a mounted tree, resolving symlinks within ``root``."""
    for _ in range(depth):
        p = root / path.lstrip("/")
        if p.is_symlink():
            target = os.readlink(p)
            path = posixpath.normpath(
                target
                if target.startswith("/")
                else posixpath.join(posixpath.dirname(path), target)
            )
            continue
        return p.read_text(errors="replace") if p.is_file() else None
    return None


def parse_os_release(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, v = line.split("=", 1)
        v = v.strip()
        if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
            v = v[1:-1]
        out[k.strip()] = v
    return out


OS_RELEASE = ("/etc/os-release", "/usr/lib/os-release")
GRUB_CFG = ("/boot/grub/grub.cfg", "/boot/grub2/grub.cfg", "/grub/grub.cfg", "/grub2/grub.cfg")


def _look_inside(raw: Path, fs: dict[str, Any], notes: list[str]) -> None:
    """Fill ``fs['os']`` and ``fs['grub_cfg']`` from the filesystem's files."""
    fstype = fs.get("type")
    offset, size = fs["offset"], fs["size"]
    found: dict[str, Any] = {}
    if fstype in EXT:
        for p in OS_RELEASE:
            text = debugfs_read(raw, offset, p)
            if text:
                found["os"] = parse_os_release(text)
                break
        found["grub_cfg"] = [p for p in GRUB_CFG if debugfs_exists(raw, offset, p)]
    elif fstype in ("xfs", "btrfs"):
        try:
            with mounted_ro(raw, offset, size, fstype) as mnt:
                for p in OS_RELEASE:
                    text = _read_in(mnt, p)
                    if text:
                        found["os"] = parse_os_release(text)
                        break
                found["grub_cfg"] = [p for p in GRUB_CFG if (mnt / p.lstrip("/")).is_file()]
        except DibpyError as e:
            notes.append(f"could not mount the {fstype} filesystem at {offset}: {e.message}")
    fs.update({k: v for k, v in found.items() if v})


def describe(path: Path, fmt: str | None = None) -> dict[str, Any]:
    """Everything ``dibpy info`` reports about an image, as a JSON-ready dict.

    ``fmt`` is the user's word for the format (``-f``), else it is detected; a file that
    is no disk image, or a damaged one, is a DibpyError naming it.
    """
    fmt = fmt or detect_format(path)
    qinfo = check_input(path, fmt)
    st = path.stat()
    result: dict[str, Any] = {
        "path": str(path),
        "format": fmt,
        "virtual_size": int(qinfo.get("virtual-size", 0)),
        "file_size": st.st_size,
        "allocated_size": st.st_blocks * 512,
        "format_specific": (qinfo.get("format-specific") or {}).get("data"),
        "partition_table": None,
        "filesystems": [],
        "bootloader": [],
        "os": None,
        "notes": [],
    }
    notes: list[str] = result["notes"]
    with raw_view(path, fmt) as raw:
        size = raw.stat().st_size
        table = partitions(raw)
        result["partition_table"] = table
        areas: list[tuple[int | None, int, int, str]] = []
        if table and table["partitions"]:
            areas = [(p["number"], p["start"], p["size"], p["type"]) for p in table["partitions"]]
        else:
            areas = [(None, 0, size, "")]
        code = boot_code(raw) if table else None
        if code:
            result["bootloader"].append({"type": "bios", "name": code, "where": "MBR boot code"})
        for number, start, length, ptype in areas:
            probe = probe_fs(raw, start, length)
            fs: dict[str, Any] = {
                "partition": number,
                "offset": start,
                "size": length,
                "type": probe.get("TYPE"),
                "label": probe.get("LABEL"),
                "uuid": probe.get("UUID"),
            }
            if ptype.upper() == BIOS_BOOT_GPT:
                result["bootloader"].append(
                    {"type": "bios", "name": "BIOS boot partition", "where": f"partition {number}"}
                )
            if fs["type"] is None and probe.get("PTTYPE") is None:
                if ptype.upper() != BIOS_BOOT_GPT:
                    result["filesystems"].append(fs)
                continue
            if fs["type"] == "vfat":
                is_esp = ptype.upper() == ESP_GPT or ptype.lower() in ESP_MBR
                fs["esp"] = is_esp
                efis = efi_files(raw, start)
                if efis:
                    fs["efi"] = efis
                    result["bootloader"].append(
                        {"type": "uefi", "name": ", ".join(efis), "where": f"partition {number}"}
                    )
            elif fs["type"] == "LVM2_member":
                notes.append(
                    f"partition {number} is an LVM physical volume: its volumes are not read "
                    "(that needs device-mapper)"
                )
            else:
                _look_inside(raw, fs, notes)
            if fs.get("grub_cfg"):
                result["bootloader"].append(
                    {"type": "config", "name": "GRUB configuration", "where": fs["grub_cfg"][0]}
                )
            if fs.get("os") and result["os"] is None:
                result["os"] = {**fs["os"], "partition": number}
            result["filesystems"].append(fs)
    return result


def human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)


def render(d: dict[str, Any]) -> str:
    """The human-readable report."""
    lines = [
        f"image:          {d['path']}",
        f"format:         {d['format']}",
        f"virtual size:   {human(d['virtual_size'])} ({d['virtual_size']} bytes)",
        f"allocated size: {human(d['allocated_size'])} (file {human(d['file_size'])})",
    ]
    t = d["partition_table"]
    if t:
        lines.append(f"partition table: {t['label']} (id {t['id']})")
        for p in t["partitions"]:
            flags = " bootable" if p.get("bootable") else ""
            name = f" name={p['name']}" if p.get("name") else ""
            lines.append(
                f"  {p['number']}: start {p['start']} size {human(p['size'])} "
                f"type {p['type']}{name}{flags}"
            )
    else:
        lines.append("partition table: none")
    lines.append("filesystems:")
    for fs in d["filesystems"]:
        where = f"partition {fs['partition']}" if fs["partition"] else "whole disk"
        lines.append(
            f"  {where}: {fs['type'] or 'unknown'} label={fs.get('label') or '-'} "
            f"uuid={fs.get('uuid') or '-'}"
        )
    if not d["filesystems"]:
        lines.append("  none found")
    lines.append("bootloader:")
    for b in d["bootloader"]:
        lines.append(f"  {b['type']}: {b['name']} ({b['where']})")
    if not d["bootloader"]:
        lines.append("  none found")
    os_ = d["os"]
    if os_:
        name = os_.get("PRETTY_NAME") or os_.get("NAME") or os_.get("ID")
        lines.append(f"os:             {name} (partition {os_.get('partition') or '-'})")
    else:
        lines.append("os:             not found")
    lines += [f"note: {n}" for n in d["notes"]]
    return "\n".join(lines)
