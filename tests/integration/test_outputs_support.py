"""Real small disk images for the output, convert and info tests (helpers, no tests).

Images are assembled without loop devices where possible: each filesystem is made in
its own file (``mkfs.ext4 -d`` populates it from a directory; FAT is filled with mtools)
and copied into the partitioned sparse disk at its offset.  xfs is populated through a
loop device and a mount that the helper releases before returning.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

MIB = 1024 * 1024
GRUB_BOOT_IMG = Path("/usr/lib/grub/i386-pc/boot.img")
GRUB_EFI_DIR = Path("/usr/lib/grub/x86_64-efi")

OS_RELEASE = 'PRETTY_NAME="Dibpy Test Linux 7"\nNAME="Dibpy Test"\nID=dibpytest\nVERSION_ID=7\n'


def sh(*argv: str | Path, input: bytes | None = None) -> str:
    r = subprocess.run([str(a) for a in argv], input=input, capture_output=True, check=False)
    assert r.returncode == 0, f"{argv}: {r.stderr.decode()[-800:]}"
    return r.stdout.decode()


def make_tree(root: Path) -> Path:
    """A tiny OS tree: os-release (Debian-style symlink), files, /proc and /sys content."""
    (root / "usr/lib").mkdir(parents=True, exist_ok=True)
    (root / "usr/lib/os-release").write_text(OS_RELEASE)
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc/os-release").symlink_to("../usr/lib/os-release")
    (root / "etc/hostname").write_text("testhost\n")
    (root / "bin").mkdir(exist_ok=True)
    (root / "bin/hello").write_text("#!/bin/sh\necho hello\n")
    (root / "bin/hello").chmod(0o755)
    (root / "boot/grub").mkdir(parents=True, exist_ok=True)
    (root / "boot/grub/grub.cfg").write_text("set timeout=1\n")
    (root / "var/data").mkdir(parents=True, exist_ok=True)
    # some incompressible data so compression and sparse handling are exercised
    (root / "var/data/blob").write_bytes(bytes(range(256)) * 4096)
    for d in ("proc", "sys"):
        (root / d).mkdir(exist_ok=True)
        (root / d / "must-not-be-copied").write_text("kernel stuff\n")
    return root


@dataclass
class Part:
    fstype: str | None  # ext4, xfs, vfat, None (no filesystem), "bios" (BIOS boot)
    size_mib: int
    label: str = ""
    esp: bool = False
    tree: Path | None = None


@dataclass
class Disk:
    path: Path
    layout: str
    parts: list[Part]
    offsets: list[int] = field(default_factory=list)


def _mkfs_file(part: Part, img: Path, work: Path) -> None:
    size = part.size_mib * MIB
    with open(img, "wb") as f:
        f.truncate(size)
    if part.fstype == "ext4":
        argv: list[str | Path] = ["mkfs.ext4", "-q", "-F"]
        if part.label:
            argv += ["-L", part.label]
        if part.tree:
            argv += ["-d", part.tree]
        sh(*argv, img)
    elif part.fstype == "vfat":
        argv = ["mkfs.vfat"]
        if part.label:
            argv += ["-n", part.label]
        sh(*argv, img)
        if part.esp:
            efi = work / "BOOTX64.EFI"
            if GRUB_EFI_DIR.is_dir():
                sh(
                    "grub-mkimage",
                    "-O",
                    "x86_64-efi",
                    "-p",
                    "/EFI/BOOT",
                    "-o",
                    efi,
                    "part_gpt",
                    "fat",
                )
            else:
                efi.write_bytes(b"MZ" + bytes(1022))
            env_img = f"{img}"
            sh("mmd", "-i", env_img, "::/EFI", "::/EFI/BOOT")
            sh("mcopy", "-i", env_img, efi, "::/EFI/BOOT/BOOTX64.EFI")
    elif part.fstype == "xfs":
        argv = ["mkfs.xfs", "-q", "-f"]
        if part.label:
            argv += ["-L", part.label]
        sh(*argv, img)
        if part.tree:
            _fill_by_mount(img, part.tree)
    elif part.fstype == "btrfs":
        argv = ["mkfs.btrfs", "-q", "-f"]
        if part.label:
            argv += ["-L", part.label]
        if part.tree:
            argv += ["-r", part.tree]
        sh(*argv, img)


def _fill_by_mount(img: Path, tree: Path) -> None:
    with contextlib.ExitStack() as stack:
        dev = sh("losetup", "-f", "--show", img).strip()
        stack.callback(subprocess.run, ["losetup", "-d", dev], check=False)
        mnt = Path(tempfile.mkdtemp(prefix="dibpy-test-mnt-"))
        stack.callback(mnt.rmdir)
        sh("mount", dev, mnt)
        stack.callback(subprocess.run, ["umount", str(mnt)], check=False)
        sh("cp", "-a", f"{tree}/.", f"{mnt}/")


def make_disk(
    path: Path, layout: str, parts: list[Part], *, grub_mbr: bool = False, extra_mib: int = 1
) -> Disk:
    """A sparse disk with an MBR ("dos") or GPT table and the given partitions."""
    total = 1 + sum(p.size_mib for p in parts) + extra_mib
    with open(path, "wb") as f:
        f.truncate(total * MIB)
    lines = [f"label: {'gpt' if layout == 'gpt' else 'dos'}"]
    start = 1
    offsets = []
    for p in parts:
        if layout == "gpt":
            t = {"vfat": "U" if p.esp else "L", "bios": "21686148-6449-6E6F-744E-656564454649"}
            ptype = t.get(p.fstype or "", "L")
        else:
            ptype = "ef" if p.esp else ("c" if p.fstype == "vfat" else "83")
        lines.append(f"start={start * 2048}, size={p.size_mib * 2048}, type={ptype}")
        offsets.append(start * MIB)
        start += p.size_mib
    sh("sfdisk", "-q", path, input=("\n".join(lines) + "\n").encode())
    work = Path(tempfile.mkdtemp(prefix="dibpy-test-fs-"))
    try:
        for p, off in zip(parts, offsets, strict=True):
            if p.fstype in (None, "bios"):
                continue
            img = work / "fs.img"
            _mkfs_file(p, img, work)
            sh(
                "dd",
                f"if={img}",
                f"of={path}",
                "bs=1M",
                f"seek={off // MIB}",
                "conv=notrunc,sparse",
                "status=none",
            )
            img.unlink()
    finally:
        sh("rm", "-rf", work)
    if grub_mbr:
        boot = GRUB_BOOT_IMG.read_bytes()[:440] if GRUB_BOOT_IMG.exists() else b""
        assert boot, "grub-pc-bin is not installed"
        with open(path, "r+b") as f:
            f.write(boot)
    return Disk(path, layout, parts, offsets)


def sha256_prefix(path: Path, length: int) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        left = length
        while left > 0:
            chunk = f.read(min(left, 4 * MIB))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()
