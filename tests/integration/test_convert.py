"""raw -> X -> raw keeps the disk's content, for every format dibpy convert writes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from dibpy.convert import convert_image
from dibpy.inspect import detect_format
from dibpy.outputs import OutputOptions
from tests.integration.test_outputs_support import MIB, Part, make_disk, make_tree, sha256_prefix


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    w = tmp_path_factory.mktemp("conv")
    tree = make_tree(w / "tree")
    d = make_disk(w / "disk.raw", "dos", [Part("ext4", 30, "root", tree=tree)], grub_mbr=True)
    return d.path


def sha(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while chunk := f.read(4 * MIB):
            h.update(chunk)
    return h.hexdigest()


@pytest.mark.parametrize(
    ("fmt", "options"),
    [
        ("qcow2", ""),
        ("qcow2", "compat=0.10"),
        ("vhd", ""),
        ("vhd", "subformat=fixed"),
        ("vhdx", ""),
        ("vmdk", ""),
        ("vmdk", "subformat=streamOptimized"),
        ("ova", ""),
    ],
)
def test_round_trip_keeps_the_content(disk: Path, tmp_path: Path, fmt: str, options: str) -> None:
    mid = tmp_path / f"mid.{fmt}"
    convert_image(disk, mid, opts=OutputOptions(qemu_img_options=options))
    # a fixed VHD too, by its footer (qemu-img's probe says raw)
    assert detect_format(mid) == fmt
    back = tmp_path / "back.raw"
    convert_image(mid, back)
    assert back.stat().st_size == disk.stat().st_size
    assert sha(back) == sha(disk)
    assert not list(tmp_path.glob(".*"))


def test_round_trip_through_vhd_of_an_odd_size(tmp_path: Path) -> None:
    """A VHD's size is rounded up to a whole MiB: the original bytes come back first."""
    raw = tmp_path / "odd.raw"
    with open(raw, "wb") as f:
        f.write(bytes(range(256)) * (4096 * 3))  # 3 MiB
        f.write(b"tail" * 1000)
    size = raw.stat().st_size
    vhd = tmp_path / "odd.vhd"
    convert_image(raw, vhd, in_format="raw")
    back = tmp_path / "back.raw"
    convert_image(vhd, back)
    assert back.stat().st_size == 4 * MIB
    assert sha256_prefix(back, size) == sha256_prefix(raw, size)
    with open(back, "rb") as f:
        f.seek(size)
        assert not any(f.read())


def test_vhd_to_vmdk_to_qcow2(disk: Path, tmp_path: Path) -> None:
    vhd, vmdk, q, back = (tmp_path / n for n in ("a.vhd", "a.vmdk", "a.qcow2", "a.raw"))
    convert_image(disk, vhd)
    convert_image(vhd, vmdk)
    convert_image(vmdk, q, opts=OutputOptions(uncompressed=True))
    convert_image(q, back)
    assert sha(back) == sha(disk)
