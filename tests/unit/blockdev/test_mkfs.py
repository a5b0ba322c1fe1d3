from __future__ import annotations

import pytest

from dibpy.blockdev.plugins.mkfs import LABEL_MAX, mkfs_argv, normalise_label


def test_label_rules() -> None:
    assert LABEL_MAX["ext4"] == 16 and LABEL_MAX["xfs"] == 12 and LABEL_MAX["vfat"] == 11
    assert normalise_label("vfat", "efi") == "EFI"
    assert normalise_label("ext4", "efi") == "efi"


@pytest.mark.parametrize(
    ("fstype", "expected"),
    [
        ("ext4", ["mkfs.ext4", "-F", "-q", "-L", "L", "-U", "U", "-i", "4096", "/dev/x"]),
        ("xfs", ["mkfs.xfs", "-f", "-q", "-L", "L", "-m", "uuid=U", "-i", "4096", "/dev/x"]),
        ("swap", ["mkswap", "-L", "L", "-U", "U", "-i", "4096", "/dev/x"]),
    ],
)
def test_argv(fstype: str, expected: list[str]) -> None:
    assert mkfs_argv(fstype, "/dev/x", "L", "U", ["-i", "4096"]) == expected


def test_vfat_and_ntfs_argv() -> None:
    assert mkfs_argv("vfat", "/dev/x", "EFI", "1234-ABCD", ["-F", "32"]) == [
        "mkfs.vfat",
        "-n",
        "EFI",
        "-i",
        "1234ABCD",
        "-F",
        "32",
        "/dev/x",
    ]
    assert mkfs_argv("ntfs", "/dev/x", "Data", None, [], 411648) == [
        "mkntfs",
        "-Q",
        "-F",
        "-L",
        "Data",
        "-p",
        "411648",
        "/dev/x",
    ]
