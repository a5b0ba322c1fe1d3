"""Partition layout and sfdisk script generation (checked with the real sfdisk on a file)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from dibpy.blockdev.plugins.partitioning import (
    GPT_TYPES,
    LayoutError,
    PartSpec,
    gpt_type,
    layout,
    mbr_type,
    sfdisk_script,
)
from dibpy.errors import ConfigError

MiB = 1024 * 1024


def spec(name: str, size: object, flags: tuple[str, ...] = (), type: object = None) -> PartSpec:
    return PartSpec(name, size, frozenset(flags), type, f"p.{name}")


def sfdisk_json(image: Path) -> dict[str, object]:
    out = subprocess.run(
        ["sfdisk", "--json", str(image)], capture_output=True, text=True, check=True
    ).stdout
    table: dict[str, object] = json.loads(out)["partitiontable"]
    return table


def apply(tmp_path: Path, script: str, size: int) -> Path:
    if shutil.which("sfdisk") is None:
        pytest.skip("sfdisk is not installed")
    image = tmp_path / "disk.raw"
    with open(image, "wb") as f:
        f.truncate(size)
    subprocess.run(["sfdisk", "--quiet", str(image)], input=script, text=True, check=True)
    return image


def test_mbr_one_bootable_partition(tmp_path: Path) -> None:
    geoms = layout("mbr", [spec("root", "100%", ("boot", "primary"))], 64 * MiB)
    script = sfdisk_script("mbr", geoms)
    assert script == ("label: dos\nunit: sectors\n\nstart=2048, size=129024, type=83, bootable\n")
    table = sfdisk_json(apply(tmp_path, script, 64 * MiB))
    (part,) = table["partitions"]  # type: ignore[index]
    assert part["start"] == 2048 and part["size"] == 129024
    assert part["bootable"] is True and part["type"] == "83"


def test_gpt_efi_layout(tmp_path: Path) -> None:
    parts = [
        spec("ESP", "550MiB", type="EF00"),
        spec("BSP", "8MiB", type="EF02"),
        spec("root", "100%", type="8300"),
    ]
    geoms = layout("gpt", parts, 1024 * MiB)
    assert [(g.name, g.number, g.start, g.size) for g in geoms] == [
        ("ESP", 1, 2048, 550 * 2048),
        ("BSP", 2, 2048 + 550 * 2048, 8 * 2048),
        ("root", 3, 2048 + 558 * 2048, (1024 - 559 - 1) * 2048),  # GPT tail eats the last MiB
    ]
    script = sfdisk_script("gpt", geoms)
    assert 'type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="ESP"' in script
    table = sfdisk_json(apply(tmp_path, script, 1024 * MiB))
    got = [(p["start"], p["size"], p["type"], p["name"]) for p in table["partitions"]]  # type: ignore[index]
    assert got == [(g.start, g.size, g.type, g.name) for g in geoms]


def test_percent_is_of_what_remains() -> None:
    geoms = layout("gpt", [spec("a", "50%"), spec("b", "50%"), spec("c", "100%")], 101 * MiB)
    a, b, c = geoms
    # half of the 100MiB after the first MiB, less the GPT tail, in whole MiB
    assert a.size == 49 * 2048
    assert b.start == a.start + a.size and b.size == 25 * 2048
    assert c.start == b.start + b.size
    assert c.start + c.size <= 101 * 2048 - 33
    assert (c.start + c.size) // 2048 == 100


def test_partitions_that_do_not_fit() -> None:
    with pytest.raises(LayoutError) as info:
        layout(
            "mbr", [spec("a", "40MiB", ("primary",)), spec("b", "40MiB", ("primary",))], 64 * MiB
        )
    assert info.value.path == "p.b.size"
    assert "does not fit" in info.value.message


def test_mbr_logical_partitions(tmp_path: Path) -> None:
    parts = [spec("boot", "100MiB", ("boot", "primary")), spec("l1", "50MiB"), spec("l2", "100%")]
    geoms = layout("mbr", parts, 512 * MiB)
    nums = {g.name: (g.number, g.logical) for g in geoms}
    assert nums == {"boot": (1, False), "l1": (5, True), "l2": (6, True), "": (2, False)}
    table = sfdisk_json(apply(tmp_path, sfdisk_script("mbr", geoms), 512 * MiB))
    got = {
        p["node"].rsplit("disk.raw", 1)[1]: (p["start"], p["size"])  # type: ignore[index]
        for p in table["partitions"]
    }  # type: ignore[index]
    for g in geoms:
        assert got[str(g.number)] == (g.start, g.size)


def test_mbr_limits() -> None:
    with pytest.raises(LayoutError, match="only 4 primary"):
        layout("mbr", [spec(f"p{i}", "1MiB", ("primary",)) for i in range(5)], 64 * MiB)
    with pytest.raises(LayoutError, match="at most 2TiB"):
        layout("mbr", [spec("a", "100%", ("primary",))], 3 * 1024**4)
    with pytest.raises(LayoutError, match="cannot follow logical"):
        layout("mbr", [spec("l", "1MiB"), spec("p", "1MiB", ("primary",))], 64 * MiB)


def test_4k_sectors(tmp_path: Path) -> None:
    geoms = layout("gpt", [spec("root", "100%")], 64 * MiB, sector_size=4096)
    assert geoms[0].start == 256
    script = sfdisk_script("gpt", geoms, 4096)
    assert "sector-size: 4096" in script


def test_types() -> None:
    assert gpt_type("ef00") == GPT_TYPES["EF00"]
    assert gpt_type("0C01") == "E3C9E316-0B5C-4DB8-817D-F92DF00215AE"
    assert gpt_type(None) == GPT_TYPES["8300"]
    guid = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
    assert gpt_type(guid.lower()) == guid
    with pytest.raises(ConfigError):
        gpt_type("ZZZZ")
    assert mbr_type(0x83) == 0x83
    assert mbr_type("0xef") == 0xEF
    assert mbr_type("8300") == 0x83
    assert mbr_type("0c") == 0x0C
    for bad in ("0C01", "zz", 0, 0x05, 300):
        with pytest.raises(ConfigError):
            mbr_type(bad)


def test_gpt_type_table_matches_sgdisk(tmp_path: Path) -> None:
    """Our sgdisk-code table agrees with sgdisk itself."""
    if shutil.which("sgdisk") is None or shutil.which("sfdisk") is None:
        pytest.skip("sgdisk/sfdisk not installed")
    image = tmp_path / "d.raw"
    with open(image, "wb") as f:
        f.truncate(64 * MiB)
    codes = sorted(GPT_TYPES)
    argv = ["sgdisk", "-o"]
    for i, code in enumerate(codes, 1):
        argv += [f"-n{i}:0:+1M", f"-t{i}:{code}"]
    subprocess.run([*argv, str(image)], check=True, capture_output=True)
    parts = sfdisk_json(image)["partitions"]  # type: ignore[index]
    assert {c: p["type"] for c, p in zip(codes, parts, strict=True)} == GPT_TYPES
