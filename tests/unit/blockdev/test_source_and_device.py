"""Where the config comes from; getval, fstab lines and LVM commands without root."""

from __future__ import annotations

import logging
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from dibpy import run
from dibpy.blockdev import (
    FALLBACK_CONFIG,
    BlockDevice,
    BlockDeviceParams,
    config_source,
    load_config,
)
from dibpy.blockdev.state import Journal
from dibpy.elements.model import Element
from dibpy.errors import ConfigError, DibpyError

from .conftest import REPO


def element(tmp_path: Path, name: str, files: dict[str, str]) -> Element:
    d = tmp_path / name
    d.mkdir()
    for f, text in files.items():
        (d / f).write_text(text)
    return Element(name, d)


def test_env_inline_and_file_win(tmp_path: Path) -> None:
    e = element(tmp_path, "el", {"block-device-default.yaml": "- x: {}\n"})
    assert config_source([e], "amd64", {"DIB_BLOCK_DEVICE_CONFIG": "- y: {}\n"}) == (
        "- y: {}\n",
        "DIB_BLOCK_DEVICE_CONFIG",
    )
    f = tmp_path / "c.yaml"
    f.write_text("- z: {}\n")
    assert config_source([e], "amd64", {"DIB_BLOCK_DEVICE_CONFIG": f"file://{f}"}) == (
        "- z: {}\n",
        str(f),
    )
    with pytest.raises(ConfigError, match="DIB_BLOCK_DEVICE_CONFIG: cannot read"):
        config_source([], "amd64", {"DIB_BLOCK_DEVICE_CONFIG": "file:///nonexistent.yaml"})


def test_arch_specific_file_first(tmp_path: Path) -> None:
    e = element(
        tmp_path, "el", {"block-device-default.yaml": "default", "block-device-arm64.yaml": "arm"}
    )
    assert config_source([e], "arm64", {})[0] == "arm"
    assert config_source([e], "amd64", {})[0] == "default"


def test_several_elements_warn_and_pick_by_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    b = element(tmp_path, "zeta", {"block-device-default.yaml": "zeta"})
    a = element(tmp_path, "alpha", {"block-device-default.yaml": "alpha"})
    logging.getLogger("dibpy").propagate = True
    with caplog.at_level(logging.WARNING, logger="dibpy"):
        text, origin = config_source([b, a], "amd64", {})
    assert text == "alpha" and origin.startswith("element alpha")
    assert "alpha" in caplog.text and "zeta" in caplog.text


def test_fallback(params: BlockDeviceParams) -> None:
    text, origin = config_source([], "amd64", {})
    assert text == FALLBACK_CONFIG and "default" in origin
    cfg = load_config(text, params, host_checks=False)
    assert cfg.order == ["image0", "mkfs_root", "mount_mkfs_root", "fstab_mount_mkfs_root"]


def test_getval_and_fstab_lines(params: BlockDeviceParams) -> None:
    path = REPO / "elements/block-device-efi/block-device-default.yaml"
    bd = BlockDevice(
        load_config(path.read_text(), params, host_checks=False), params, journal=Journal(None)
    )
    assert bd.getval("root-label") == "cloudimg-rootfs"
    assert bd.getval("boot-label") == ""  # no separate /boot
    assert bd.getval("root-fstype") == "ext4"
    assert bd.getval("mount-points") == "/|/boot/efi"
    assert bd.getval("image-path") == str(params.image_dir / "image0.raw")
    with pytest.raises(DibpyError, match="only after create"):
        bd.getval("image-block-device")
    with pytest.raises(ConfigError, match="unknown symbol"):
        bd.getval("image-block-partition")
    bd.journal.set_values("image0", device="/dev/loop7")
    assert bd.getval("image-block-device") == "/dev/loop7"
    assert bd.getval("image-block-devices") == "image0:/dev/loop7"
    assert bd.fstab_lines() == [
        "LABEL=cloudimg-rootfs / ext4 defaults 0 1",
        "LABEL=MKFS_ESP /boot/efi vfat defaults 0 2",
    ]


def test_lvm_commands(params: BlockDeviceParams) -> None:
    text = """
- local_loop: {name: image0, size: 4GiB}
- lvm:
    name: lvm
    pvs: [{name: pv, base: image0, options: [--force]}]
    vgs: [{name: vg, base: [pv]}]
    lvs:
      - {name: pool, base: vg, type: thin-pool, size: 2GiB}
      - {name: thin1, base: vg, type: thin, thin-pool: pool, size: 1000M}
      - {name: lv-a, base: vg, extents: 10%VG}
- mkfs: {name: fs, base: thin1, type: ext4}
"""
    cfg = load_config(text, params, host_checks=False)
    assert cfg.order.index("lvm") < cfg.order.index("pv") < cfg.order.index("vg")
    assert cfg.order.index("pool") < cfg.order.index("thin1")
    calls: list[list[str]] = []

    def fake(argv: list[str], **_: Any) -> run.Result:
        calls.append(argv)
        return run.Result(argv, 0, "", "")

    bd = BlockDevice(cfg, params, journal=Journal(None))
    bd.journal.set_values("image0", device="/dev/loop9")
    with run.fake_runner(fake), ExitStack() as stack:
        from dibpy.blockdev.plugin import CreateContext

        for name in ("lvm", "pv", "vg", "pool", "thin1", "lv-a"):
            cfg.nodes[name].create(CreateContext(bd.journal, stack, cfg.nodes, params))
        assert bd.journal.values("lv-a")["device"] == "/dev/mapper/vg-lv--a"
        calls.append(["--unwind--"])
    # sizes are rounded down to whole 4MiB extents, as diskimage-builder does
    thin = 1000 * 1000**2 - (1000 * 1000**2) % (4 * 1024**2)
    assert calls[:5] == [
        ["pvcreate", "/dev/loop9", "--force"],
        ["vgcreate", "vg", "/dev/loop9"],
        ["lvcreate", "--name", "pool", "--type", "thin-pool", "-L", f"{2 * 1024**3}B", "vg"],
        [
            "lvcreate",
            "--name",
            "thin1",
            "--type",
            "thin",
            "--thin-pool",
            "pool",
            "-V",
            f"{thin}B",
            "vg",
        ],
        ["lvcreate", "--name", "lv-a", "-l", "10%VG", "vg"],
    ]
    # unwinding deactivates the volume group
    assert calls[-2:] == [["vgs", "--noheadings", "-o", "vg_name", "vg"], ["vgchange", "-an", "vg"]]


def test_lvm_validation(params: BlockDeviceParams) -> None:
    text = """
- local_loop: {name: image0, size: 4GiB}
- lvm:
    name: lvm
    pvs: [{name: pv, base: image0}]
    vgs: [{name: vg, base: [pv]}]
    lvs:
      - {name: a, base: vg}
      - {name: b, base: vg, type: thin, thin-pool: a, size: 1GiB}
"""
    from dibpy.blockdev import BlockDeviceConfigError

    with pytest.raises(BlockDeviceConfigError) as info:
        load_config(text + "      - {name: c, base: pv, size: 1GiB}\n", params, host_checks=False)
    problem = info.value.problems[0]  # each node's own checks are reported too
    assert problem.startswith("config[1].lvm.lvs[2].base: 'pv' is a lvm node (pv)")
    with pytest.raises(BlockDeviceConfigError) as info:
        load_config(text, params, host_checks=False)
    problems = info.value.problems
    assert "config[1].lvm.lvs[0]: missing size or extents" in problems
    assert "config[1].lvm.lvs[1].thin-pool: 'a' is not a thin-pool lv" in problems
