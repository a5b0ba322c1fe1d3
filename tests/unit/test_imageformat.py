"""Format detection from a file's own bytes, and refusing damaged inputs (no root).

Signatures are checked on synthetic headers; the rest on real images made by qemu-img
(create, convert, truncate) and sfdisk on small files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from dibpy import imageformat as imf
from dibpy.cli.convert import main as convert_main
from dibpy.cli.info import main as info_main
from dibpy.errors import DibpyError

MIB = 1024 * 1024
needs_qemu_img = pytest.mark.skipif(
    shutil.which("qemu-img") is None, reason="qemu-img is not installed"
)


def vhd_footer_bytes(disk_type: int, size: int, *, good_checksum: bool = True) -> bytes:
    f = bytearray(512)
    f[0:8] = b"conectix"
    f[12:16] = (0x00010000).to_bytes(4, "big")
    f[16:24] = (0xFFFFFFFFFFFFFFFF if disk_type == 2 else 512).to_bytes(8, "big")
    f[40:48] = f[48:56] = size.to_bytes(8, "big")
    f[60:64] = disk_type.to_bytes(4, "big")
    checksum = (~(sum(f[:64]) + sum(f[68:]))) & 0xFFFFFFFF
    f[64:68] = (checksum ^ (0 if good_checksum else 1)).to_bytes(4, "big")
    return bytes(f)


def write(path: Path, head: bytes, size: int = 64 * 1024, tail: bytes = b"") -> Path:
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size - len(tail))
        f.seek(0, os.SEEK_END)
        f.write(tail)
    return path


def mbr() -> bytes:
    return bytes(510) + b"\x55\xaa"


@pytest.mark.parametrize(
    ("head", "fmt"),
    [
        (b"QFI\xfb\0\0\0\3", "qcow2"),
        (b"QFI\xfb\0\0\0\2", "qcow2"),
        (b"QFI\xfb\0\0\0\1", "qcow"),
        (b"QED\0", "qed"),
        (b"vhdxfile", "vhdx"),
        (b"KDMV", "vmdk"),
        (b"COWD", "vmdk"),
        (b"# Disk DescriptorFile\nversion=1\n", "vmdk"),
        (
            b"<<< Oracle VM VirtualBox Disk Image >>>\n".ljust(64, b"\0") + b"\x7f\x10\xda\xbe",
            "vdi",
        ),
        (vhd_footer_bytes(3, 64 * 1024), "vhd"),
        (b"WithoutFreeSpace", "parallels"),
        (b"WithouFreSpacExt", "parallels"),
        (bytes(512) + b"EFI PART", "raw"),
        (mbr(), "raw"),
    ],
)
def test_signatures(tmp_path: Path, head: bytes, fmt: str) -> None:
    found = imf.sniff(write(tmp_path / "f", head))
    assert found is not None and found.fmt == fmt, found


def test_a_fixed_vhd_is_found_by_its_footer_before_the_disk_inside(tmp_path: Path) -> None:
    # the data of a fixed VHD starts with its disk's MBR: the footer must win
    size = 64 * 1024
    f = write(tmp_path / "fixed", mbr(), size + 512, vhd_footer_bytes(2, size))
    found = imf.sniff(f)
    assert found is not None and found.fmt == "vhd" and "fixed" in found.why
    assert imf.required_size(f, "vhd") == (size + 512, "its footer (a fixed disk's size)")


def test_a_forged_footer_does_not_fool_it(tmp_path: Path) -> None:
    # "conectix" at the end but a wrong checksum: still the raw disk it is
    f = write(
        tmp_path / "d", mbr(), 128 * 1024, vhd_footer_bytes(2, 64 * 1024, good_checksum=False)
    )
    found = imf.sniff(f)
    assert found is not None and found.fmt == "raw"
    assert imf.vhd_footer(vhd_footer_bytes(3, 1, good_checksum=False)) is None
    assert imf.vhd_footer(vhd_footer_bytes(3, 1)) == {
        "data_offset": 512,
        "current_size": 1,
        "disk_type": 3,
    }


def test_random_bytes_and_text_are_no_disk_image(tmp_path: Path) -> None:
    rnd = tmp_path / "random.bin"
    rnd.write_bytes(os.urandom(256 * 1024).replace(b"\x55\xaa", b"\0\0"))
    text = tmp_path / "notes.txt"
    text.write_text("a text file, no disk image\n" * 100)
    for f in (rnd, text, write(tmp_path / "zeros", b"")):
        assert imf.sniff(f) is None
        with pytest.raises(DibpyError) as e:
            imf.detect(f)
        assert e.value.message.startswith(f"{f} is not a recognised disk image")
        assert e.value.hint and "-f raw" in e.value.hint


@pytest.mark.skipif(shutil.which("mkfs.ext4") is None, reason="e2fsprogs is not installed")
def test_a_bare_filesystem_is_a_raw_disk(tmp_path: Path) -> None:
    fs = tmp_path / "fs.img"
    subprocess.run(["truncate", "-s", "4M", fs], check=True)
    subprocess.run(["mkfs.ext4", "-q", fs], check=True)
    found = imf.sniff(fs)
    assert found is not None and (found.fmt, found.why) == ("raw", "ext4 filesystem (blkid)")


def sfdisk_file(path: Path, size_mib: int, label: str) -> Path:
    subprocess.run(["truncate", "-s", f"{size_mib}M", path], check=True)
    script = f"label: {label}\nsize=2M\nsize=2M\n".encode()
    subprocess.run(["sfdisk", "-q", path], input=script, check=True, capture_output=True)
    return path


@pytest.mark.parametrize("label", ["dos", "gpt"])
def test_a_truncated_raw_disk_is_refused(tmp_path: Path, label: str) -> None:
    disk = sfdisk_file(tmp_path / "d.raw", 8, label)
    assert imf.required_size(disk, "raw")[0] <= disk.stat().st_size
    os.truncate(disk, 3 * MIB)
    with pytest.raises(DibpyError, match="is a truncated raw image: "):
        imf.check_whole(disk, "raw")


def qemu_img(*argv: str | Path) -> None:
    subprocess.run(["qemu-img", *map(str, argv)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 MiB with an MBR and 3 MiB of random data from 1 MiB on."""
    d = sfdisk_file(tmp_path_factory.mktemp("fmt") / "disk.raw", 8, "dos")
    with open(d, "r+b") as f:
        f.seek(MIB)
        f.write(os.urandom(3 * MIB))
    return d


@needs_qemu_img
@pytest.mark.parametrize("fmt", ["qcow2", "vmdk", "vhdx", "vdi", "qed", "vpc", "parallels"])
def test_every_format_qemu_img_writes_is_detected_and_a_truncated_one_refused(
    disk: Path, tmp_path: Path, fmt: str
) -> None:
    img = tmp_path / f"d.{fmt}"
    qemu_img("convert", "-f", "raw", "-O", fmt, disk, img)
    found = imf.detect(img)
    assert found.fmt == imf.FROM_QEMU.get(fmt, fmt)
    imf.check_whole(img, found.fmt)
    os.truncate(img, img.stat().st_size // 2)
    with pytest.raises(DibpyError) as e:
        imf.check_whole(img, found.fmt)
    assert e.value.message.startswith(str(img)) and "\n" not in e.value.message
    assert any(w in e.value.message for w in ("damaged", "truncated", "cannot read"))


@needs_qemu_img
def test_convert_a_fixed_vhd_without_f_keeps_the_content(
    disk: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vhd = tmp_path / "fixed.vhd"
    qemu_img("convert", "-f", "raw", "-O", "vpc", "-o", "subformat=fixed", disk, vhd)
    out = tmp_path / "out.qcow2"
    assert convert_main([str(vhd), str(out)]) == 0
    # byte for byte, and no footer turned into data: the fixed VHD's own view is the same
    qemu_img("compare", "-f", "raw", "-F", "qcow2", disk, out)
    qemu_img("compare", "-f", "vpc", "-F", "qcow2", vhd, out)
    sizes = [imf.qemu_info(p, f)["virtual-size"] for p, f in ((vhd, "vhd"), (out, "qcow2"))]
    assert sizes[0] == sizes[1] >= disk.stat().st_size  # qemu rounds to a CHS geometry
    assert info_main([str(vhd), "--json"]) == 0
    assert '"format": "vhd"' in capsys.readouterr().out


@needs_qemu_img
def test_convert_refuses_a_truncated_qcow2_in_one_line(
    disk: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    q = tmp_path / "t.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", disk, q)
    os.truncate(q, q.stat().st_size // 2)
    out = tmp_path / "out.raw"
    assert convert_main([str(q), str(out)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"dibpy convert: error: {q} is a damaged qcow2 image"), err
    assert len(err) == 2 and err[1].startswith("  hint:"), err
    assert list(tmp_path.iterdir()) == [q]


@needs_qemu_img
@pytest.mark.parametrize("command", ["convert", "info"])
def test_no_disk_image_is_said_to_be_none_naming_the_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello\n" * 1000)
    out = tmp_path / "out.qcow2"
    rc = convert_main([str(text), str(out)]) if command == "convert" else info_main([str(text)])
    err = capsys.readouterr().err.splitlines()
    assert rc == 1
    assert err[0] == (
        f"dibpy {command}: error: {text} is not a recognised disk image: no "
        "image-format signature, partition table or filesystem in it"
    ), err
    assert "-f raw" in err[1] and len(err) == 2
    assert not out.exists()
    # said to be raw, it is read as raw
    if command == "convert":
        assert convert_main(["-f", "raw", str(text), str(out)]) == 0
        qemu_img("compare", "-f", "raw", "-F", "qcow2", text, out)
    else:
        assert info_main(["-f", "raw", str(text)]) == 0
        assert "format:         raw" in capsys.readouterr().out
