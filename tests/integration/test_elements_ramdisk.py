"""The ramdisk-base and baremetal cleanup.d hooks on a small tree, run for real.

What they change is files beside the output name: the kernel copied, the initramfs
a cpio of the tree (checked by unpacking it with cpio), with the excluded content left
out and /init and /dev/console added; and a clear error when the tree has no kernel.
(The e2e tests boot what they make from a real Debian build.)
"""

from __future__ import annotations

import gzip
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

RAMDISK_HOOK = REPO / "elements" / "ramdisk-base" / "cleanup.d" / "99-extract-ramdisk-files"
BAREMETAL_HOOK = REPO / "elements" / "baremetal" / "cleanup.d" / "99-extract-kernel-and-initrd"


def make_tree(root: Path) -> Path:
    for d in ("boot", "sbin", "usr/share/doc/pkg", "proc/1", "lib/modules/6.1/kernel/sound"):
        (root / d).mkdir(parents=True)
    (root / "boot" / "vmlinuz-6.1.0-1-amd64").write_bytes(b"old kernel")
    (root / "boot" / "vmlinuz-6.1.0-10-amd64").write_bytes(b"new kernel")
    (root / "boot" / "initrd.img-6.1.0-10-amd64").write_bytes(b"new initrd")
    (root / "sbin" / "init").write_text("#!/bin/sh\n")
    (root / "sbin" / "init").chmod(0o755)
    (root / "usr/share/doc/pkg/copyright").write_text("doc")
    (root / "proc/1/status").write_text("not real")
    (root / "lib/modules/6.1/kernel/sound/snd.ko").write_bytes(b"module")
    (root / "etc").mkdir()
    (root / "etc" / "hostname").write_text("ramdisk\n")
    return root


def run_hook(hook: Path, root: Path, out: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {
        "PATH": os.environ["PATH"],
        "TARGET_ROOT": str(root),
        "IMAGE_NAME": str(out),
        "_LIB": str(REPO / "dibpy" / "lib"),
        **env,
    }
    return subprocess.run([str(hook)], env=full, capture_output=True, text=True)


def cpio_list(archive: bytes, workdir: Path) -> list[str]:
    """Names in a sequence of gzip-compressed cpio archives, as the kernel reads them."""
    data = gzip.decompress(archive)  # concatenated gzip members decompress as one stream
    names: list[str] = []
    while data:
        r = subprocess.run(
            ["cpio", "-t", "--quiet"], input=data, capture_output=True, check=True, cwd=workdir
        )
        # GNU cpio lists "./etc" as "etc"
        names += ["./" + n.removeprefix("./") for n in r.stdout.decode().splitlines()]
        # cpio stops at the trailer; the next archive starts at the following 4-byte block
        end = data.find(b"TRAILER!!!")
        assert end >= 0
        data = data[end + len(b"TRAILER!!!") :].lstrip(b"\0")
    return names


@pytest.mark.skipif(os.geteuid() != 0, reason="the ramdisk hook makes device nodes (mknod)")
def test_ramdisk_base_writes_kernel_and_tree_initramfs(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root")
    before = sorted(str(p) for p in root.rglob("*"))
    out = tmp_path / "out" / "rd"
    out.parent.mkdir()
    r = run_hook(RAMDISK_HOOK, root, out)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "rd.kernel").read_bytes() == b"new kernel"
    names = cpio_list((tmp_path / "out" / "rd.initramfs").read_bytes(), tmp_path)
    assert "./etc/hostname" in names and "./sbin/init" in names
    # excluded content is gone, its directory stays
    assert "./usr/share/doc" in names and "./usr/share/doc/pkg/copyright" not in names
    assert "./proc" in names and "./proc/1/status" not in names
    assert "./boot" in names and not any(n.startswith("./boot/") for n in names)
    assert "./lib/modules/6.1/kernel/sound/snd.ko" not in names
    # the second archive
    assert {"./init", "./dev/console", "./dev/null"} <= set(names)
    # the tree itself is untouched
    assert sorted(str(p) for p in root.rglob("*")) == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["rd.initramfs", "rd.kernel"]


@pytest.mark.skipif(os.geteuid() != 0, reason="the ramdisk hook makes device nodes (mknod)")
def test_ramdisk_base_extra_excludes_and_zstd(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root")
    out = tmp_path / "rd"
    r = run_hook(RAMDISK_HOOK, root, out, DIB_RAMDISK_COMPRESS="zstd", DIB_RAMDISK_EXCLUDE="/etc")
    assert r.returncode == 0, r.stderr
    raw = subprocess.run(
        ["zstd", "-dc", str(tmp_path / "rd.initramfs")], capture_output=True, check=True
    ).stdout
    listing = subprocess.run(["cpio", "-t", "--quiet"], input=raw, capture_output=True).stdout
    assert b"etc\n" in listing and b"etc/hostname" not in listing


@pytest.mark.parametrize(
    ("change", "env", "message"),
    [
        ("no-kernel", {}, "no kernel"),
        ("no-init", {}, "/sbin/init (DIB_RAMDISK_INIT) does not exist"),
        ("", {"DIB_RAMDISK_COMPRESS": "lz5"}, "use gzip, zstd, xz or none"),
    ],
)
def test_ramdisk_base_errors_are_clear(
    tmp_path: Path, change: str, env: dict[str, str], message: str
) -> None:
    root = make_tree(tmp_path / "root")
    if change == "no-kernel":
        for k in (root / "boot").glob("vmlinuz-*"):
            k.unlink()
    if change == "no-init":
        (root / "sbin" / "init").unlink()
    r = run_hook(RAMDISK_HOOK, root, tmp_path / "rd", **env)
    assert r.returncode != 0
    assert message in r.stderr, r.stderr
    assert not (tmp_path / "rd.initramfs").exists()


def test_ramdisk_base_publishes_a_prebuilt_initramfs_instead_of_the_tree(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root")
    (root / "boot" / "dracut-ramdisk.img").write_bytes(b"dracut image")
    out = tmp_path / "out" / "rd"
    out.parent.mkdir()
    r = run_hook(RAMDISK_HOOK, root, out, DIB_RAMDISK_PREBUILT="/boot/dracut-ramdisk.img")
    assert r.returncode == 0, r.stderr
    assert out.with_name("rd.initramfs").read_bytes() == b"dracut image"
    assert out.with_name("rd.kernel").read_bytes() == b"new kernel"
    r = run_hook(RAMDISK_HOOK, root, out, DIB_RAMDISK_PREBUILT="/boot/missing.img")
    assert r.returncode == 1 and "is not a file in the tree" in r.stderr, r.stderr


def test_baremetal_copies_newest_kernel_and_its_initrd(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root")
    out = tmp_path / "img"
    r = run_hook(BAREMETAL_HOOK, root, out)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "img.vmlinuz").read_bytes() == b"new kernel"
    assert (tmp_path / "img.initrd").read_bytes() == b"new initrd"


def test_baremetal_without_initrd_fails_clearly(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root")
    (root / "boot" / "initrd.img-6.1.0-10-amd64").unlink()
    r = run_hook(BAREMETAL_HOOK, root, tmp_path / "img")
    assert r.returncode != 0
    assert "no initramfs for vmlinuz-6.1.0-10-amd64" in r.stderr, r.stderr
