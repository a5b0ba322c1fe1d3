"""Every shipped layout and example, made by the real dib-block-device on loop devices,
then looked at from outside: sfdisk, blkid -p, fsck -n, mtools, ntfs-3g tools."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .helpers import REPO, Cli, blkid, partition_device, partitions, sh, table

ELEMENTS = REPO / "elements"
EXAMPLES = REPO / "doc" / "examples"
ROOT_GUID = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
ESP_GUID = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
BIOS_GUID = "21686148-6449-6E6F-744E-656564454649"


def full_cycle(cli: Cli, files: dict[str, str]) -> None:
    """init, create, fill through the mounts, writefstab, umount, cleanup."""
    cli.run("init")
    cli.run("create")
    assert Path(cli.getval("image-path")) == cli.image
    assert cli.getval("image-block-device").startswith("/dev/loop")
    for rel, text in files.items():
        p = cli.mnt / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    cli.run("writefstab")
    cli.run("umount")
    assert cli.live() == []
    cli.run("cleanup")
    assert not (cli.build / "states" / "block-device").exists()
    assert cli.image.exists()


def check_ext4_root(
    image: Path, part: dict[str, object], label: str, fstype: str = "ext4", sector: int = 512
) -> None:
    with partition_device(image, part, sector) as dev:
        info = blkid(dev)
        assert info["TYPE"] == fstype and info["LABEL"] == label
        sh(f"fsck.{fstype}", "-n", "-f", dev)
        assert sh("debugfs", "-R", "cat /etc/hello", dev) == "hello root\n"


def test_mbr(tmp_path: Path, no_leaks: None) -> None:
    cli = Cli(tmp_path, ELEMENTS / "block-device-mbr" / "block-device-default.yaml", "256MiB")
    full_cycle(cli, {"etc/hello": "hello root\n"})
    t = table(cli.image)
    assert t["label"] == "dos"
    (root,) = t["partitions"]
    assert root["start"] == 2048 and root["bootable"] is True and root["type"] == "83"
    check_ext4_root(cli.image, root, "cloudimg-rootfs")
    fstab = (cli.build / "built" / "etc" / "fstab").read_text()
    assert fstab == "LABEL=cloudimg-rootfs / ext4 defaults 0 1\n"


def test_gpt_xfs_root(tmp_path: Path, no_leaks: None) -> None:
    cli = Cli(
        tmp_path,
        ELEMENTS / "block-device-gpt" / "block-device-default.yaml",
        "512MiB",
        **{"root-fs-type": "xfs"},
    )
    cli.run("init")
    assert cli.getval("root-label") == "img-rootfs"
    assert cli.getval("root-fstype") == "xfs"
    cli.run("create")
    (cli.mnt / "hello").write_text("hi\n")
    cli.run("umount")
    cli.run("cleanup")
    bsp, root = partitions(cli.image)
    assert (bsp["type"], bsp["size"], bsp["name"]) == (BIOS_GUID, 8 * 2048, "BSP")
    assert root["type"] == ROOT_GUID
    with partition_device(cli.image, root) as dev:
        assert blkid(dev)["TYPE"] == "xfs"
        sh("xfs_repair", "-n", dev)


def test_efi(tmp_path: Path, no_leaks: None) -> None:
    cli = Cli(tmp_path, ELEMENTS / "block-device-efi" / "block-device-default.yaml", "1GiB")
    full_cycle(cli, {"etc/hello": "hello root\n", "boot/efi/EFI/BOOT/grub.cfg": "menu\n"})
    assert cli.getval("mount-points") == "/|/boot/efi"
    esp, bsp, root = partitions(cli.image)
    assert (esp["type"], esp["size"]) == (ESP_GUID, 550 * 2048)
    assert bsp["type"] == BIOS_GUID
    check_ext4_root(cli.image, root, "cloudimg-rootfs")
    with partition_device(cli.image, esp) as dev:
        info = blkid(dev)
        assert info["TYPE"] == "vfat" and info["LABEL"] == "MKFS_ESP"
        sh("fsck.vfat", "-n", dev)
        env_free = ["env", "MTOOLS_SKIP_CHECK=1"]
        assert "grub" in sh(*env_free, "mdir", "-i", dev, "::/EFI/BOOT")
        assert sh(*env_free, "mtype", "-i", dev, "::/EFI/BOOT/grub.cfg") == "menu\n"
        # the staged copy was emptied, so nothing of the ESP stays in the root fs
    with partition_device(cli.image, root) as dev:
        listing = sh("debugfs", "-R", "ls -l /boot/efi", dev)
        assert "grub" not in listing and "EFI" not in listing
    fstab = (cli.build / "built" / "etc" / "fstab").read_text().splitlines()
    assert fstab == [
        "LABEL=cloudimg-rootfs / ext4 defaults 0 1",
        "LABEL=MKFS_ESP /boot/efi vfat defaults 0 2",
    ]


def test_efi_4k_sectors(tmp_path: Path, no_leaks: None) -> None:
    yml = ELEMENTS / "block-device-efi-4k" / "block-device-default.yaml"
    cli = Cli(tmp_path, yml, "1GiB")
    full_cycle(cli, {"etc/hello": "hello root\n", "boot/efi/EFI/BOOT/grub.cfg": "menu\n"})
    # the GPT is in 4 KiB sectors: read as 512-byte sectors there is none
    as_512 = subprocess.run(["sfdisk", "--json", str(cli.image)], capture_output=True, text=True)
    assert '"label":"gpt"' not in as_512.stdout.replace(" ", "")
    loop = sh("losetup", "--show", "-f", "-r", "--sector-size", "4096", str(cli.image)).strip()
    try:
        out = sh("sfdisk", "--json", loop)
    finally:
        sh("losetup", "-d", loop)
    esp, bsp, root = json.loads(out)["partitiontable"]["partitions"]
    assert (esp["type"], esp["size"]) == (ESP_GUID, 500 * 256)
    assert (bsp["type"], bsp["size"]) == (BIOS_GUID, 8 * 256)
    assert root["type"] == ROOT_GUID
    check_ext4_root(cli.image, root, "cloudimg-rootfs", sector=4096)
    with partition_device(cli.image, esp, sector=4096) as dev:
        sh("fsck.vfat", "-n", dev)
        # FAT's own logical sector size is the disk's
        assert sh("env", "MTOOLS_SKIP_CHECK=1", "mtype", "-i", dev, "::/EFI/BOOT/grub.cfg") == (
            "menu\n"
        )
        with open(dev, "rb") as f:
            assert int.from_bytes(f.read(13)[11:13], "little") == 4096


def test_efi_without_partx(tmp_path: Path, no_leaks: None) -> None:
    """Partitions reached through offset loop devices when partx nodes are unavailable."""
    cli = Cli(
        tmp_path,
        ELEMENTS / "block-device-efi" / "block-device-default.yaml",
        "1GiB",
        env={"DIBPY_BLOCKDEV_NO_PARTX": "1"},
    )
    cli.run("init")
    cli.run("create")
    loops = [e for e in cli.live() if e["kind"] == "loop"]
    assert len(loops) == 4  # the disk and one per partition (ESP, BSP, root)
    (cli.mnt / "etc").mkdir()
    (cli.mnt / "etc" / "hello").write_text("hello root\n")
    (cli.mnt / "boot" / "efi" / "x.txt").write_text("x\n")
    cli.run("umount")
    cli.run("cleanup")
    esp, _, root = partitions(cli.image)
    check_ext4_root(cli.image, root, "cloudimg-rootfs")
    with partition_device(cli.image, esp) as dev:
        assert sh("env", "MTOOLS_SKIP_CHECK=1", "mtype", "-i", dev, "::/x.txt") == "x\n"


def test_windows_gpt_example(tmp_path: Path, no_leaks: None) -> None:
    cli = Cli(tmp_path, EXAMPLES / "block-device-windows-gpt.yaml")
    full_cycle(cli, {"Users/readme.txt": "ntfs data\n", "efi/EFI/Microsoft/Boot/bcd": "b\n"})
    esp, msr, data = partitions(cli.image)
    assert (esp["type"], esp["size"]) == (ESP_GUID, 100 * 2048)
    assert (msr["type"], msr["size"]) == ("E3C9E316-0B5C-4DB8-817D-F92DF00215AE", 128 * 2048)
    assert data["type"] == "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
    with partition_device(cli.image, esp) as dev:
        info = blkid(dev)
        assert info["TYPE"] == "vfat" and info["LABEL"] == "SYSTEM"
        assert info.get("VERSION") == "FAT32"
        out = sh("env", "MTOOLS_SKIP_CHECK=1", "mtype", "-i", dev, "::/EFI/Microsoft/Boot/bcd")
        assert out == "b\n"
    with partition_device(cli.image, data) as dev:
        info = blkid(dev)
        assert info["TYPE"] == "ntfs" and info["LABEL"] == "Windows"
        assert "Volume Name: Windows" in sh("ntfsinfo", "-m", dev)
        assert sh("ntfscat", dev, "/Users/readme.txt") == "ntfs data\n"
        # the ESP's staging directory was emptied before the NTFS volume was unmounted
        assert "Microsoft" not in sh("ntfsls", dev, "-p", "/efi")


def test_mbr_classic_example(tmp_path: Path, no_leaks: None) -> None:
    cli = Cli(tmp_path, EXAMPLES / "block-device-mbr-classic.yaml")
    full_cycle(cli, {"etc/hello": "hello root\n"})
    assert cli.image.stat().st_size == 256 * 1024 * 1024
    (root,) = partitions(cli.image)
    assert root["start"] * 512 == 1024 * 1024
    assert root["bootable"] is True
    check_ext4_root(cli.image, root, "classic-root", fstype="ext2")


def test_delete_removes_the_image(tmp_path: Path, no_leaks: None) -> None:
    cli = Cli(tmp_path, ELEMENTS / "block-device-mbr" / "block-device-default.yaml", "64MiB")
    cli.run("init")
    cli.run("create")
    cli.run("delete")
    assert not cli.image.exists()


def test_lvm_layout(tmp_path: Path, no_leaks: None) -> None:
    from dibpy.blockdev.resources import device_mapper_problem

    cli = Cli(
        tmp_path,
        ELEMENTS / "block-device-efi-lvm" / "block-device-default.yaml",
        "2GiB",
        **{"root-fs-type": "xfs"},
    )
    why = device_mapper_problem()
    if why:
        # here validation must refuse, clearly, before anything is made
        r = cli.run("init", check=False)
        assert r.returncode != 0
        assert "LVM needs device-mapper" in r.stderr and "/dev/mapper/control" in r.stderr
        assert not cli.image.exists()
        pytest.skip(f"LVM layout not created: {why}")
    full_cycle(cli, {"etc/hello": "hello root\n", "var/log/x": "v\n", "home/u/x": "h\n"})
    assert cli.getval("mount-points") == "/|/home|/var|/boot/efi"
