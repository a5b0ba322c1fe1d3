"""replace-partition's root.d hook on real images: a qcow2 made here (MBR, an ESP, /boot
and the root, as a cloud image), and a raw image with 4096-byte sectors, each copied out
into a fresh image root with real qemu-img, sfdisk, losetup and mount; missing variables
stop it with one line.  Nothing is left attached or mounted."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from dibpy.hookenv import LIB_DIR
from tests.conftest import REPO, mounts_under, require_loop, write
from tests.integration.test_elements_centos import MIB, make_cloud_image, mkfs_ext4

ELEMENTS = REPO / "elements"
HOOK = ELEMENTS / "replace-partition/root.d/10-local-image-extract"
IMAGE_VARS = {
    "DISTRO_NAME": "centos",
    "DIB_RELEASE": "7",
    "EFI_BOOT_DIR": "EFI/centos",
    "DIB_INIT_SYSTEM": "systemd",
    "DIB_BLOCK_DEVICE": "efi",
}


def loops() -> str:
    return subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout


def run_hook(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    hooks = tmp_path / "hooks"
    hooks.mkdir(exist_ok=True)
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    full = {"PATH": os.environ["PATH"], "TARGET_ROOT": str(root), "TMP_HOOKS_PATH": str(hooks),
            "TMP_BUILD_DIR": str(tmp_path), "_LIB": str(LIB_DIR), **env}  # fmt: skip
    r = subprocess.run(["bash", str(HOOK)], env=full, capture_output=True, text=True, check=False)
    return r, root


def test_the_whole_tree_of_the_old_image_is_the_new_root(tmp_path: Path) -> None:
    require_loop()
    before = loops()
    image = make_cloud_image(tmp_path / "img")
    r, root = run_hook(tmp_path, DIB_LOCAL_IMAGE=str(image), **IMAGE_VARS)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (root / "etc/cloud-image-marker").read_text() == "from the cloud image root\n"
    assert (root / "boot/vmlinuz-3.10.0-fake.x86_64").read_text() == "not a kernel\n"
    assert (root / "boot/efi/EFI/centos/grubx64.efi").read_text() == "fake efi binary\n"
    assert (root / "etc/fstab").read_text() == "# filesystems: written when the image is made\n"
    assert loops() == before and not mounts_under(tmp_path)


def test_an_image_with_4096_byte_sectors(tmp_path: Path) -> None:
    require_loop()
    tree = tmp_path / "tree"
    write(tree / "etc/os-release", "ID=debian\n")
    write(tree / "etc/fstab", "LABEL=old / ext4 defaults 0 1\n")
    write(tree / "srv/data", "kept as it was\n")
    fs = tmp_path / "root.img"
    mkfs_ext4(tree, fs, 32 * MIB, "old")
    raw = tmp_path / "disk4k.raw"
    with open(raw, "wb") as f:
        f.truncate(2 * MIB + fs.stat().st_size)
    # in 4096-byte sectors: the partition starts at 1 MiB
    script = f"label: gpt\nstart=256, size={fs.stat().st_size // 4096}, type=linux\n"
    # a 4K-sector disk's table is written through a loop device with 4096-byte sectors
    loop = subprocess.run(["losetup", "-f", "--show", "--sector-size", "4096", str(raw)],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    try:
        subprocess.run(["sfdisk", "-q", loop], input=script, text=True, check=True,
                       capture_output=True)  # fmt: skip
    finally:
        subprocess.run(["losetup", "-d", loop], check=True)
    subprocess.run(["dd", f"if={fs}", f"of={raw}", "bs=1M", "seek=1", "conv=notrunc"],
                   check=True, capture_output=True)  # fmt: skip
    r, root = run_hook(tmp_path, DIB_LOCAL_IMAGE=str(raw), DIB_SOURCE_BLOCK_SIZE="4096",
                       **{**IMAGE_VARS, "DISTRO_NAME": "debian"})  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert (root / "srv/data").read_text() == "kept as it was\n"
    assert not mounts_under(tmp_path)


def test_missing_variables_are_one_line_naming_them(tmp_path: Path) -> None:
    r, root = run_hook(tmp_path, DISTRO_NAME="centos", DIB_RELEASE="7")
    assert r.returncode == 1
    assert r.stderr.strip() == (
        "replace-partition: set EFI_BOOT_DIR DIB_INIT_SYSTEM DIB_BLOCK_DEVICE DIB_LOCAL_IMAGE "
        "(the values of the image in DIB_LOCAL_IMAGE; see the element's README)"
    )
    assert list(root.iterdir()) == []


@pytest.mark.parametrize(
    ("extra", "words"),
    [({"DIB_LOCAL_IMAGE": "/nonexistent.qcow2"}, ["DIB_LOCAL_IMAGE=/nonexistent.qcow2"]),
     ({"DIB_SOURCE_BLOCK_SIZE": "1024"}, ["DIB_SOURCE_BLOCK_SIZE=1024", "512 or 4096"])],
)  # fmt: skip
def test_bad_values_are_one_line(tmp_path: Path, extra: dict[str, str], words: list[str]) -> None:
    image = tmp_path / "x.qcow2"
    image.write_text("")
    env = {**IMAGE_VARS, "DIB_LOCAL_IMAGE": str(image), **extra}
    r, _ = run_hook(tmp_path, **env)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert all(w in r.stderr for w in words), r.stderr


def test_replace_partition_is_an_operating_system() -> None:
    from dibpy.elements import find_library, resolve

    res = resolve(["base", "vm", "block-device-efi", "replace-partition"], find_library({}))
    assert res.provided_by["operating-system"] == "replace-partition"
    assert "bootloader" in res.names and "redhat-common" not in res.names  # as diskimage-builder
