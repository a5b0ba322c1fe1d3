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
GRUB_EFI = Path("/usr/lib/grub/x86_64-efi")


@pytest.fixture(autouse=True)
def _tools() -> None:
    missing = [
        t for t in ("mkntfs", "ntfsls", "ntfscat", "mdir", "mkfs.vfat") if not shutil.which(t)
    ]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")


def dic(work: Path, *args: str, **env_extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIB_")}
    env.update(
        ELEMENTS_PATH=str(FIXTURES),
        TMP_DIR=str(work / "tmp"),
        DIB_IMAGE_CACHE=str(work / "cache"),
        DIB_BLOCK_DEVICE_CONFIG=f"file://{EXAMPLE}",
        **env_extra,
    )
    (work / "tmp").mkdir(exist_ok=True)
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


MARKER = "NANO-ESP-LOADER-OK"


def efi_loader(work: Path) -> Path | None:
    """A GRUB EFI program that prints MARKER and halts (None without grub's EFI files)."""
    if not (GRUB_EFI / "echo.mod").is_file() or not shutil.which("grub-mkimage"):
        return None
    cfg = work / "early.cfg"
    cfg.write_text(f"echo {MARKER}\nhalt\n")
    loader = work / "bootx64.efi"
    out("grub-mkimage", "-O", "x86_64-efi", "-c", cfg, "-p", "/EFI/Boot", "-o", loader,
        "echo", "halt")  # fmt: skip
    return loader


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bool]:
    """disk-image-create -t raw,vmware of the nano-server element; (image base, real loader)."""
    work = tmp_path_factory.mktemp("nano")
    loader = efi_loader(work)
    extra = {"NANO_EFI_LOADER": str(loader)} if loader else {}
    img = work / "out" / "nano"
    r = dic(work, "-n", "-t", "raw,vmware", "-o", str(img), "nano-server", **extra)
    assert r.returncode == 0, r.stderr[-2000:]
    return img, loader is not None


def test_nano_server_gpt(built: tuple[Path, bool], tmp_path: Path) -> None:
    img, _ = built
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
    # the VMware VM of it: UEFI (the disk has an ESP), no Linux: other-64 on SATA, e1000e
    vmx = dict(line.split(" = ", 1) for line in img.with_suffix(".vmx").read_text().splitlines())
    assert vmx["firmware"] == '"efi"' and vmx["guestOS"] == '"other-64"'
    assert vmx["sata0:0.fileName"] == '"nano.vmdk"' and vmx["ethernet0.virtualDev"] == '"e1000e"'
    out("qemu-img", "compare", "-f", "raw", "-F", "vmdk", raw, img.with_suffix(".vmdk"))


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


def test_ovmf_finds_the_esp_loader_of_the_vmware_disk(
    built: tuple[Path, bool], tmp_path: Path
) -> None:
    """Boot the -t vmware disk in QEMU as its .vmx says (UEFI, SATA): OVMF must find and
    start EFI/Boot/bootx64.efi on the ESP."""
    img, real_loader = built
    if not real_loader:
        pytest.skip(f"no GRUB EFI modules in {GRUB_EFI} (grub-efi-amd64-bin) to make a loader")
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        pytest.skip("qemu-system-x86_64 is not installed")
    from dibpy.boottest import detect_accel, find_ovmf
    from dibpy.errors import ConfigError

    try:
        code, vars_template = find_ovmf()
    except ConfigError as e:
        pytest.skip(e.message)
    accel, _ = detect_accel()  # a PVM /dev/kvm hangs guests: TCG then
    vars_copy = tmp_path / "vars.fd"
    shutil.copyfile(vars_template, vars_copy)
    disk = img.with_suffix(".vmdk")
    r = subprocess.run(
        [qemu, "-machine", f"q35,accel={accel}", "-m", "256", "-nographic", "-no-reboot",
         "-net", "none",
         "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
         "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}",
         "-drive", f"file={disk},format=vmdk,if=none,id=d0,snapshot=on",
         "-device", "ahci,id=ahci", "-device", "ide-hd,drive=d0,bus=ahci.0"],
        capture_output=True, text=True, errors="replace", timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert MARKER in r.stdout, r.stdout[-1500:]
