"""dibpy info's readers on small files (no root: sfdisk, mkfs and debugfs work on files)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from dibpy import inspect as dinspect
from dibpy.cli.info import main

MIB = 1024 * 1024


def test_parse_os_release() -> None:
    text = "# comment\nNAME=\"Debian GNU/Linux\"\nID=debian\nVERSION_ID='12'\n\nBAD LINE\n"
    assert dinspect.parse_os_release(text) == {
        "NAME": "Debian GNU/Linux",
        "ID": "debian",
        "VERSION_ID": "12",
    }


def test_boot_code(tmp_path: Path) -> None:
    p = tmp_path / "d"
    p.write_bytes(bytes(512))
    assert dinspect.boot_code(p) is None
    p.write_bytes(b"\xeb\x63\x90" + bytes(0x180) + b"GRUB \0Geom\0" + bytes(100))
    assert dinspect.boot_code(p) == "GRUB"
    p.write_bytes(b"\xfa\x31\xc0" + bytes(509))
    assert dinspect.boot_code(p) == "unknown boot code"


@pytest.mark.skipif(shutil.which("mkfs.ext4") is None, reason="e2fsprogs is not installed")
def test_partition_table_filesystem_and_os_release_from_a_file(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "usr/lib").mkdir(parents=True)
    (tree / "usr/lib/os-release").write_text('PRETTY_NAME="Unit OS"\nID=unit\n')
    (tree / "etc").mkdir()
    (tree / "etc/os-release").symlink_to("../usr/lib/os-release")
    fs = tmp_path / "fs.img"
    fs.write_bytes(b"")
    subprocess.run(["truncate", "-s", "8M", fs], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-L", "unitroot", "-d", tree, fs], check=True)
    disk = tmp_path / "disk.raw"
    subprocess.run(["truncate", "-s", "10M", disk], check=True)
    subprocess.run(
        ["sfdisk", "-q", disk], input=b"label: dos\nstart=2048, size=16384, type=83\n", check=True
    )
    subprocess.run(
        ["dd", f"if={fs}", f"of={disk}", "bs=1M", "seek=1", "conv=notrunc", "status=none"],
        check=True,
    )
    d = dinspect.describe(disk)
    assert d["format"] == "raw" and d["virtual_size"] == 10 * MIB
    assert d["partition_table"]["label"] == "dos"
    [p] = d["partition_table"]["partitions"]
    assert (p["number"], p["start"], p["size"], p["type"]) == (1, MIB, 8 * MIB, "83")
    [f] = d["filesystems"]
    assert (f["type"], f["label"]) == ("ext4", "unitroot")
    assert d["os"]["PRETTY_NAME"] == "Unit OS" and d["os"]["partition"] == 1
    assert d["bootloader"] == []
    text = dinspect.render(d)
    assert "ext4 label=unitroot" in text and "Unit OS" in text


def test_missing_or_bad_image_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "nope.qcow2")]) != 0
    assert "no such file" in capsys.readouterr().err
    if shutil.which("qemu-img"):
        (tmp_path / "empty").write_bytes(b"")
        rc = main([str(tmp_path / "empty")])
        err = capsys.readouterr().err
        assert rc != 0 and "Traceback" not in err, err
