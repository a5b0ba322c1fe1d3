"""dibpy info on real MBR and GPT layouts with ext4, xfs and vfat, in several formats."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dibpy.convert import convert_image
from dibpy.inspect import describe
from tests.conftest import REPO
from tests.integration.test_outputs_support import Part, make_disk, make_tree


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tree(tmp_path_factory.mktemp("tree") / "t")


def _fs(d: dict[str, object], n: int | None) -> dict[str, object]:
    for fs in d["filesystems"]:  # type: ignore[attr-defined]
        if fs["partition"] == n:
            return fs  # type: ignore[no-any-return]
    raise AssertionError(f"no filesystem on partition {n}: {d['filesystems']}")


def test_mbr_ext4_with_grub_in_the_mbr(tree: Path, tmp_path: Path, no_leaks: None) -> None:
    disk = make_disk(
        tmp_path / "mbr.raw",
        "dos",
        [Part("ext4", 10, "boot"), Part("ext4", 40, "cloudimg-rootfs", tree=tree)],
        grub_mbr=True,
    )
    d = describe(disk.path)
    assert d["format"] == "raw"
    assert d["partition_table"]["label"] == "dos"
    assert [p["start"] for p in d["partition_table"]["partitions"]] == disk.offsets
    assert _fs(d, 1)["label"] == "boot" and _fs(d, 1)["type"] == "ext4"
    root = _fs(d, 2)
    assert (root["type"], root["label"]) == ("ext4", "cloudimg-rootfs")
    blkid = subprocess.run(
        ["blkid", "-p", "-O", str(disk.offsets[1]), "-s", "UUID", "-o", "value", str(disk.path)],
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert root["uuid"] == blkid
    assert {"type": "bios", "name": "GRUB", "where": "MBR boot code"} in d["bootloader"]
    assert d["os"]["ID"] == "dibpytest" and d["os"]["partition"] == 2
    assert any(b["type"] == "config" for b in d["bootloader"])


def test_gpt_bios_boot_esp_and_xfs_root(tree: Path, tmp_path: Path, no_leaks: None) -> None:
    disk = make_disk(
        tmp_path / "gpt.raw",
        "gpt",
        [
            Part("bios", 1),
            Part("vfat", 33, "ESP", esp=True),
            Part("xfs", 300, "img-rootfs", tree=tree),
        ],
    )
    d = describe(disk.path)
    assert d["partition_table"]["label"] == "gpt"
    assert len(d["partition_table"]["partitions"]) == 3
    esp = _fs(d, 2)
    assert (esp["type"], esp["label"], esp["esp"]) == ("vfat", "ESP", True)
    assert esp["efi"] == ["/EFI/BOOT/BOOTX64.EFI"]
    root = _fs(d, 3)
    assert (root["type"], root["label"]) == ("xfs", "img-rootfs")
    kinds = {(b["type"], b["name"]) for b in d["bootloader"]}
    assert ("bios", "BIOS boot partition") in kinds
    assert ("uefi", "/EFI/BOOT/BOOTX64.EFI") in kinds
    # read by mounting the xfs read-only from an offset loop device (released: no_leaks)
    assert d["os"]["PRETTY_NAME"] == "Dibpy Test Linux 7" and d["os"]["partition"] == 3


@pytest.mark.parametrize("fmt", ["qcow2", "vhd", "vmdk", "vhdx", "ova"])
def test_the_same_answers_through_every_format(
    tree: Path, tmp_path: Path, fmt: str, no_leaks: None
) -> None:
    disk = make_disk(
        tmp_path / "d.raw",
        "gpt",
        [Part("vfat", 20, "EFI", esp=True), Part("ext4", 30, "root", tree=tree)],
    )
    img = tmp_path / f"d.{fmt}"
    convert_image(disk.path, img)
    raw_view = describe(disk.path)
    d = describe(img)
    assert d["format"] == fmt
    assert d["virtual_size"] == disk.path.stat().st_size
    for key in ("partition_table", "filesystems", "bootloader", "os"):
        assert d[key] == raw_view[key], key
    assert not list(tmp_path.glob(".*"))


def test_whole_disk_filesystem_and_the_cli(tree: Path, tmp_path: Path, no_leaks: None) -> None:
    img = tmp_path / "fs.raw"
    subprocess.run(["truncate", "-s", "20M", str(img)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-L", "whole", "-d", str(tree), str(img)], check=True)
    r = subprocess.run(
        [sys.executable, str(REPO / "bin" / "dibpy"), "info", "--json", str(img)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["partition_table"] is None
    assert _fs(d, None)["label"] == "whole"
    assert d["os"]["VERSION_ID"] == "7"
    r = subprocess.run(
        [sys.executable, str(REPO / "bin" / "dibpy"), "info", str(img)],
        capture_output=True,
        text=True,
    )
    assert "whole disk: ext4 label=whole" in r.stdout and "Dibpy Test Linux 7" in r.stdout
