"""ramdisk-image-create: NAME.kernel + NAME.initramfs from the target's own kernel and tree.

The initramfs holds the whole Debian tree; booted with QEMU's -kernel/-initrd and no
disk at all, systemd runs from RAM and the devuser can log in on the serial console.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dibpy.boottest import BootTest
from tests.e2e.boot_helpers import LOGIN, Outputs, build


@pytest.fixture(scope="module")
def ramdisk(tmp_path_factory: pytest.TempPathFactory, image_cache: Path) -> Outputs:
    out = tmp_path_factory.mktemp("ramdisk") / "rd"
    return build("ramdisk-image-create", out, ["debian-minimal", "devuser"], image_cache)


def test_kernel_and_initramfs_and_no_image(ramdisk: Outputs) -> None:
    kernel, initramfs = ramdisk.file(".kernel"), ramdisk.file(".initramfs")
    assert kernel.read_bytes()[0x202:0x206] == b"HdrS", kernel
    assert initramfs.read_bytes()[:2] == b"\x1f\x8b", "the initramfs is not gzip"
    # ramdisk mode: no disk image of any type
    leftovers = sorted(p.name for p in ramdisk.base.parent.glob(ramdisk.base.name + ".*"))
    assert leftovers == ["rd.d", "rd.initramfs", "rd.kernel"], leftovers


def test_ramdisk_boots_from_ram_to_a_login(ramdisk: Outputs) -> None:
    res = BootTest(
        kernel=ramdisk.file(".kernel"),
        initrd=ramdisk.file(".initramfs"),
        append="console=ttyS0",
        memory_mb=3072,
        login=LOGIN,
        command="echo RAMDISK-ROOT=$(findmnt -n -o FSTYPE /); . /etc/os-release; echo ID=$ID",
        timeout=600,
        console_log=ramdisk.file(".console.log"),
    ).run()
    out = res.command_output
    assert out is not None
    assert "ID=debian" in out, out
    # the root is the kernel's rootfs (tmpfs or ramfs): nothing came from a disk
    assert "RAMDISK-ROOT=rootfs" in out or "RAMDISK-ROOT=tmpfs" in out, out
