"""dibpy convert: choosing formats and refusing bad requests before any work."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from dibpy.cli.convert import main
from dibpy.convert import convert_image, output_format
from dibpy.errors import ConfigError
from dibpy.outputs import qemu


def test_output_format_from_extension_or_option() -> None:
    assert output_format(Path("x.vhd"), None).name == "vhd"
    assert output_format(Path("x.img"), None).name == "raw"
    assert output_format(Path("x.VMDK"), None).name == "vmdk"
    assert output_format(Path("x.bin"), "qcow2").name == "qcow2"
    with pytest.raises(ConfigError, match="cannot tell the output format"):
        output_format(Path("x.bin"), None)
    with pytest.raises(ConfigError, match="made from a file tree"):
        output_format(Path("x.tar"), "tar")
    with pytest.raises(ConfigError, match="unknown output type"):
        output_format(Path("x"), "qcow3")


def test_refuses_overwriting_and_same_file(tmp_path: Path) -> None:
    src = tmp_path / "a.raw"
    src.write_bytes(bytes(1024 * 1024))
    with pytest.raises(ConfigError, match="is the input"):
        convert_image(src, src)
    dest = tmp_path / "b.qcow2"
    dest.write_bytes(b"old")
    with pytest.raises(ConfigError, match="--force"):
        convert_image(src, dest)
    with pytest.raises(ConfigError, match="no such file"):
        convert_image(tmp_path / "none.raw", dest)


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "a.raw"
    src.write_bytes(bytes(1024 * 1024))
    assert main([str(src), str(tmp_path / "b.qcow2"), "--qemu-img-options", "compat=7"]) == 2
    err = capsys.readouterr().err
    assert "compat=7" in err and "Traceback" not in err
    assert main([str(src), str(tmp_path / "b.out")]) == 2
    assert "-O FORMAT" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img is not installed")
def test_convert_raw_to_qcow2_and_back(tmp_path: Path) -> None:
    src = tmp_path / "a.raw"
    data = bytes(range(256)) * 8192  # 2 MiB
    src.write_bytes(data)
    q = tmp_path / "a.qcow2"
    # no partition table, no filesystem: raw only when the user says so
    assert main([str(src), str(q), "--qemu-img-options", "compat=0.10"]) == 1
    assert not q.exists()
    assert main(["-f", "raw", str(src), str(q), "--qemu-img-options", "compat=0.10"]) == 0
    back = tmp_path / "back.img"
    assert main([str(q), str(back)]) == 0
    assert back.read_bytes() == data
    assert not list(tmp_path.glob(".*partial*"))


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img is not installed")
def test_a_compressed_qcow2_written_out_of_order_holds_the_same_bytes(tmp_path: Path) -> None:
    # several coroutines compress and write clusters in any order (-W): the image must
    # still read back as the raw disk it came from, holes and all
    src = tmp_path / "a.raw"
    chunks = [os.urandom(1 << 20), bytes(1 << 20), bytes(range(256)) * 4096]
    with open(src, "wb") as f:
        for n in range(24):
            f.write(chunks[n % 3])
    q = tmp_path / "a.qcow2"
    qemu.convert(src, q, "qcow2", compress=True, create_opts={"compression_type": "zstd"})
    info = qemu.check_image(q, "qcow2", virtual_size=src.stat().st_size)
    assert info["format-specific"]["data"]["compression-type"] == "zstd"
    back = tmp_path / "back.raw"
    qemu.convert(q, back, "raw", src_fmt="qcow2")
    assert back.read_bytes() == src.read_bytes()
    # compressed: the random megabytes stay, the zeros and the pattern all but vanish
    assert q.stat().st_size < src.stat().st_size // 2
