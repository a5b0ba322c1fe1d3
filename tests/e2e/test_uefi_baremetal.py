"""One hybrid image (block-device-efi + baremetal), booted three ways.

``debian-minimal vm block-device-efi baremetal devuser`` gives a GPT disk with an ESP
(written with mtools, no vfat driver on the host), a BIOS boot partition and root;
GRUB for BIOS on the disk and GRUB for UEFI in the ESP; and, from ``baremetal``,
``NAME.vmlinuz`` and ``NAME.initrd`` beside the image.  The same file boots under
SeaBIOS and under OVMF, and its kernel and initrd boot it with QEMU's -kernel.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dibpy.boottest import BootResult, BootTest
from tests.e2e.boot_helpers import (
    LOGIN,
    Outputs,
    boot_together,
    build,
    initramfs_modules,
    result_of,
)

ELEMENTS = ["debian-minimal", "vm", "block-device-efi", "baremetal", "devuser"]


@pytest.fixture(scope="module")
def hybrid(tmp_path_factory: pytest.TempPathFactory, image_cache: Path) -> Outputs:
    out = tmp_path_factory.mktemp("uefi") / "hybrid"
    return build("disk-image-create", out, ELEMENTS, image_cache)


def test_outputs_beside_the_image(hybrid: Outputs) -> None:
    assert hybrid.file(".qcow2").is_file()
    assert "baremetal: wrote" in hybrid.log
    kernel, initrd = hybrid.file(".vmlinuz"), hybrid.file(".initrd")
    # a bzImage and a compressed cpio, not an empty or wrong file
    assert kernel.read_bytes()[0x202:0x206] == b"HdrS", kernel
    assert initrd.stat().st_size > 1024 * 1024, initrd


@pytest.fixture(scope="module")
def booted(hybrid: Outputs) -> dict[str, BootResult | Exception]:
    """The three boots, two at a time; each test below asserts on its own."""
    return boot_together(
        {
            "bios": BootTest(
                image=hybrid.file(".qcow2"),
                uefi=False,
                login=LOGIN,
                command="test ! -d /sys/firmware/efi && echo FIRMWARE=bios; "
                "findmnt -n -o FSTYPE /boot/efi",
                timeout=600,
                console_log=hybrid.file(".bios.console.log"),
            ),
            "uefi": BootTest(
                image=hybrid.file(".qcow2"),
                uefi=True,
                login=LOGIN,
                command="test -d /sys/firmware/efi && echo FIRMWARE=uefi; "
                "ls /boot/efi/EFI/BOOT/; findmnt -n -o FSTYPE /boot/efi",
                timeout=600,
                console_log=hybrid.file(".uefi.console.log"),
            ),
            "kernel": BootTest(
                image=hybrid.file(".qcow2"),
                kernel=hybrid.file(".vmlinuz"),
                initrd=hybrid.file(".initrd"),
                append="root=LABEL=cloudimg-rootfs console=ttyS0",
                login=LOGIN,
                command="cat /proc/cmdline; findmnt -n -o SOURCE,FSTYPE /",
                timeout=600,
                console_log=hybrid.file(".kernel.console.log"),
            ),
        }
    )


def test_boots_under_seabios(booted: dict[str, BootResult | Exception]) -> None:
    res = result_of(booted, "bios")
    assert res.command_output is not None
    assert "FIRMWARE=bios" in res.command_output, res.command_output
    assert "vfat" in res.command_output, res.command_output


def test_boots_under_ovmf(booted: dict[str, BootResult | Exception]) -> None:
    res = result_of(booted, "uefi")
    assert res.command_output is not None
    assert "FIRMWARE=uefi" in res.command_output, res.command_output
    assert "BOOTX64.EFI" in res.command_output, res.command_output
    assert "vfat" in res.command_output, res.command_output


def test_baremetal_kernel_and_initrd_boot_the_disk(
    booted: dict[str, BootResult | Exception],
) -> None:
    out = result_of(booted, "kernel").command_output
    assert out is not None
    # the kernel line is ours (not GRUB's), and the disk's root is mounted
    assert out.splitlines()[0].strip() == "root=LABEL=cloudimg-rootfs console=ttyS0", out
    assert "/dev/vda3 ext4" in out, out


def test_baremetal_initrd_keeps_broad_hardware_support(hybrid: Outputs) -> None:
    """With baremetal in the build the vm element leaves initramfs-tools' MODULES=most:
    bare-metal RAID/HBA drivers and every root filesystem are there."""
    modules = initramfs_modules(hybrid.file(".initrd"))
    assert {"megaraid_sas", "mpt3sas", "ahci", "nvme", "xfs", "btrfs"} <= modules
    assert "vm: element baremetal is in the build" in hybrid.log


@pytest.fixture(scope="module")
def vm_efi(tmp_path_factory: pytest.TempPathFactory, image_cache: Path) -> Outputs:
    """A plain vm image on a GPT disk with an ESP: the smaller vm initramfs."""
    out = tmp_path_factory.mktemp("vm-efi") / "vm-efi"
    return build(
        "disk-image-create",
        out,
        ["debian-minimal", "vm", "block-device-efi", "devuser"],
        image_cache,
    )


def test_vm_image_boots_under_ovmf_from_nvme(vm_efi: Outputs) -> None:
    """The vm element's smaller initramfs finds an NVMe root disk under UEFI."""
    res = BootTest(
        image=vm_efi.file(".qcow2"),
        uefi=True,
        disk_interface="nvme",
        login=LOGIN,
        command="test -d /sys/firmware/efi && echo FIRMWARE=uefi; findmnt -n -o SOURCE /",
        timeout=600,
        console_log=vm_efi.file(".console.log"),
    ).run()
    assert res.command_output is not None
    assert "FIRMWARE=uefi" in res.command_output, res.command_output
    assert "/dev/nvme0n1p" in res.command_output, res.command_output
    print(f"login prompt after {res.seconds_to_prompt:.1f} s ({res.accel})")
