"""The Nano Server workflow: a non-Linux operating-system element (``element-os``) and the
Windows GPT layout of doc/examples, built with disk-image-create and checked from outside
(sfdisk, blkid, mtools, ntfs-3g's ntfsls): no Linux scaffolding on the NTFS partition."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

FIXTURES = REPO / "tests" / "fixtures" / "nano-elements"
EXAMPLE = REPO / "doc" / "examples" / "block-device-windows-gpt.yaml"
ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
MSR = "E3C9E316-0B5C-4DB8-817D-F92DF00215AE"
BASIC_DATA = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
MIB = 1 << 20


@pytest.fixture(autouse=True)
def _tools() -> None:
    missing = [
        t for t in ("mkntfs", "ntfsls", "ntfscat", "mdir", "mkfs.vfat") if not shutil.which(t)
    ]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")


def dic(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIB_")}
    env.update(
        ELEMENTS_PATH=str(FIXTURES),
        TMP_DIR=str(tmp_path / "tmp"),
        DIB_IMAGE_CACHE=str(tmp_path / "cache"),
        DIB_BLOCK_DEVICE_CONFIG=f"file://{EXAMPLE}",
    )
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, str(REPO / "bin" / "disk-image-create"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def out(*argv: str | Path, check: bool = True) -> str:
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=False)
    assert not check or r.returncode == 0, f"{argv}: {r.stderr[-500:]}"
    return r.stdout


def test_nano_server_gpt(tmp_path: Path, no_leaks: None) -> None:
    img = tmp_path / "out" / "nano"
    r = dic(tmp_path, "-n", "-t", "raw", "-o", str(img), "nano-server")
    assert r.returncode == 0, r.stderr[-2000:]
    raw = img.with_suffix(".raw")
    table = json.loads(out("sfdisk", "--json", raw))["partitiontable"]
    assert table["label"] == "gpt"
    parts = table["partitions"]
    assert [(p["type"], p["size"] * 512 // MIB) for p in parts[:2]] == [(ESP, 100), (MSR, 128)]
    assert parts[2]["type"] == BASIC_DATA and len(parts) == 3
    esp, msr, data = ((p["start"] * 512, p["size"] * 512) for p in parts)
    # ESP: FAT32 with the element's loader; MSR: no filesystem at all; data: NTFS
    probe = out("blkid", "-p", "-O", str(esp[0]), "-S", str(esp[1]), "-o", "export", raw)
    assert "TYPE=vfat" in probe and "VERSION=FAT32" in probe, probe
    msr_probe = subprocess.run(
        ["blkid", "-p", "-O", str(msr[0]), "-S", str(msr[1]), str(raw)], capture_output=True
    )
    assert msr_probe.returncode == 2 and not msr_probe.stdout, msr_probe.stdout
    boot = out("mdir", "-b", "-i", f"{raw}@@{esp[0]}", "::/EFI/Boot")
    assert "::/EFI/Boot/bootx64.efi" in boot.split(), boot
    ntfs = tmp_path / "data.ntfs"
    out("dd", f"if={raw}", f"of={ntfs}", "bs=1M", f"skip={data[0] // MIB}",
        f"count={data[1] // MIB}", "conv=sparse", "status=none")  # fmt: skip
    assert "TYPE=ntfs" in out("blkid", "-p", "-o", "export", ntfs)
    top = set(out("ntfsls", ntfs, "-p", "/").split()) - {".", ".."}
    # no Linux scaffolding: no dev, proc, sys, tmp, etc (so no etc/fstab either)
    assert top == {"Windows", "efi"}, top
    assert out("ntfscat", ntfs, "/Windows/System32/readme.txt") == "nano server data\n"
    # the ESP's mount point: empty on NTFS, the files went onto the ESP
    assert set(out("ntfsls", ntfs, "-p", "/efi").split()) <= {".", ".."}


def test_a_chroot_hook_in_a_windows_image_is_refused_before_building(tmp_path: Path) -> None:
    lib = tmp_path / "elements"
    shutil.copytree(FIXTURES / "nano-server", lib / "nano-server")
    hook = lib / "linuxy" / "install.d" / "50-apt"
    hook.parent.mkdir(parents=True)
    hook.write_text("#!/bin/sh\ntrue\n")
    hook.chmod(0o755)
    (lib / "linuxy" / "README.md").write_text("linuxy\n")
    env_lib = {"ELEMENTS_PATH": str(lib)}
    r = subprocess.run(
        [sys.executable, str(REPO / "bin" / "disk-image-create"), "-n", "-o",
         str(tmp_path / "x"), "nano-server", "linuxy"],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("DIB_")}, **env_lib,
             "TMP_DIR": str(tmp_path)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode != 0
    assert "element linuxy: install.d/50-apt runs in a chroot, but the image is windows" in r.stderr
    assert "Traceback" not in r.stderr
    assert not list(tmp_path.glob("dib_build.*"))
