"""boot-test REALLY booting a guest in QEMU (TCG where KVM cannot run stock kernels).

The guest is built here, without the disk-image pipeline: a Debian kernel (downloaded
with ``apt-get download`` once, cached under ~/.cache/dibpy-test) and a tiny
initramfs made from busybox-static, whose /init runs a real getty and login on
ttyS0 for a test user.  Needs: qemu-system-x86_64, a static busybox, and either the
Debian archive or ``DIBPY_TEST_KERNEL`` (a vmlinuz; its virtio modules are then not
available and the disk test is skipped).
"""

from __future__ import annotations

import functools
import gzip
import io
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dibpy.boottest import BootTest, BootTestError

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dibpy-test"
USER, PASSWORD = "tester", "s3cret-pw"
# load order matters: each module's dependencies come first
VIRTIO_MODULES = (
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_pci_modern_dev.ko",
    "drivers/virtio/virtio_pci_legacy_dev.ko",
    "drivers/virtio/virtio_pci.ko",
    "drivers/block/virtio_blk.ko",
)

INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t devtmpfs devtmpfs /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
for m in /lib/dibpy-modules/*.ko; do
    [ -e "$m" ] && insmod "$m"
done
# let the test user write the test disk, to show writes never reach the image
i=0
while grep -q dibpytest.disk /proc/cmdline && [ ! -e /dev/vda ] && [ $i -lt 50 ]; do
    sleep 0.1; i=$((i + 1))
done
[ -e /dev/vda ] && chmod 666 /dev/vda
hostname dibpytest
echo "dibpy test initramfs: starting getty on ttyS0"
while true; do
    setsid getty -L 115200 ttyS0 vt100
done
"""


@dataclass(frozen=True)
class Kernel:
    vmlinuz: Path
    modules: tuple[Path, ...]


def _ppid(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])


def qemu_pids() -> set[int]:
    """Our running qemu-system-x86_64 processes (descendants of this test process).

    Others may boot VMs on the same host at the same time; those are not ours.  The
    process name is cut to 15 characters, so argv[0] is read instead.
    """
    me = os.getpid()
    pids = set()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv0 = (d / "cmdline").read_bytes().split(b"\0", 1)[0]
        except OSError:
            continue
        if os.path.basename(argv0) != b"qemu-system-x86_64":
            continue
        pid = parent = int(d.name)
        while parent > 1:
            parent = _ppid(parent)
            if parent == me:
                pids.add(pid)
                break
    return pids


@pytest.fixture
def no_qemu_left() -> Iterator[None]:
    before = qemu_pids()
    yield
    left = qemu_pids() - before
    assert not left, f"QEMU processes left behind: {sorted(left)}"


@functools.cache
def _download_kernel() -> Kernel | str:
    """The cloud kernel package's vmlinuz and virtio modules, or why there are none."""
    if shutil.which("apt-get") is None:
        return "apt-get is not available to download a kernel (set DIBPY_TEST_KERNEL)"
    deps = subprocess.run(
        ["apt-cache", "depends", "linux-image-cloud-amd64"],
        capture_output=True,
        text=True,
        check=False,
    )
    pkg = next(
        (
            line.split(":", 1)[1].strip()
            for line in deps.stdout.splitlines()
            if line.strip().startswith("Depends: linux-image-")
        ),
        None,
    )
    if pkg is None:
        return f"no linux-image-cloud-amd64 in the apt cache: {deps.stderr.strip()[-200:]}"
    dest = CACHE / "kernel" / pkg
    vmlinuz = dest / "vmlinuz"
    if not vmlinuz.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
            got = subprocess.run(
                ["apt-get", "download", pkg], cwd=tmp, capture_output=True, text=True, check=False
            )
            debs = list(Path(tmp).glob("*.deb"))
            if got.returncode != 0 or not debs:
                return f"cannot download {pkg}: {got.stderr.strip()[-300:]}"
            tree = Path(tmp) / "tree"
            tree.mkdir()
            tar = subprocess.run(
                f"dpkg-deb --fsys-tarfile {debs[0]} | tar -x -C {tree} --wildcards "
                "'./boot/vmlinuz-*' '*/drivers/virtio/*' '*/drivers/block/virtio_blk.ko*'",
                shell=True,
                capture_output=True,
                text=True,
                check=False,
            )
            if tar.returncode != 0:
                return f"cannot unpack {debs[0].name}: {tar.stderr.strip()[-300:]}"
            staging = Path(tmp) / "out"
            (staging / "modules").mkdir(parents=True)
            shutil.copy(next((tree / "boot").glob("vmlinuz-*")), staging / "vmlinuz")
            for rel in VIRTIO_MODULES:
                found = list(tree.glob(f"lib/modules/*/kernel/{rel}"))
                if found:
                    shutil.copy(found[0], staging / "modules" / Path(rel).name)
            shutil.rmtree(dest, ignore_errors=True)
            staging.rename(dest)
    mods = tuple(dest / "modules" / Path(rel).name for rel in VIRTIO_MODULES)
    return Kernel(vmlinuz, mods if all(m.is_file() for m in mods) else ())


def kernel() -> Kernel:
    if os.environ.get("DIBPY_TEST_KERNEL"):
        return Kernel(Path(os.environ["DIBPY_TEST_KERNEL"]), ())
    got = _download_kernel()
    if isinstance(got, str):
        pytest.skip(got)
    return got


def static_busybox() -> Path:
    bb = shutil.which("busybox")
    if bb is None:
        pytest.skip("busybox is not installed (the Debian package busybox-static)")
    ldd = subprocess.run(["ldd", bb], capture_output=True, text=True, check=False)
    if "not a dynamic executable" not in ldd.stdout + ldd.stderr:
        pytest.skip(f"{bb} is dynamically linked; install busybox-static")
    return Path(bb)


class Cpio:
    """A newc cpio archive written in Python: device nodes without root or mknod."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1

    def _add(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        fields = [self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
        self.ino += 1
        hdr = b"070701" + b"".join(b"%08x" % f for f in fields)
        self.buf.write(hdr + name.encode() + b"\0")
        self.buf.write(b"\0" * (-(len(hdr) + len(name) + 1) % 4))
        self.buf.write(data + b"\0" * (-len(data) % 4))

    def dir(self, name: str) -> None:
        self._add(name, 0o040755)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._add(name, 0o100000 | perm, data)

    def chardev(self, name: str, major: int, minor: int) -> None:
        self._add(name, 0o020600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._add("TRAILER!!!", 0)
        return self.buf.getvalue()


def make_initramfs(dest: Path, modules: tuple[Path, ...]) -> Path:
    bb = static_busybox()
    pwhash = subprocess.run(
        [str(bb), "mkpasswd", "-m", "sha512", PASSWORD, "dibpytestsalt"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert pwhash.startswith("$6$"), pwhash
    c = Cpio()
    for d in ("bin", "dev", "etc", "proc", "sys", "tmp", "root", "home", f"home/{USER}", "lib"):
        c.dir(d)
    c.chardev("dev/console", 5, 1)
    c.file("bin/busybox", bb.read_bytes(), 0o755)
    c.file("init", INIT.encode(), 0o755)
    c.file(
        "etc/passwd",
        f"root:x:0:0:root:/root:/bin/sh\n{USER}:x:1000:1000::/home/{USER}:/bin/sh\n".encode(),
    )
    c.file("etc/shadow", f"root:!:19000::::::\n{USER}:{pwhash}:19000::::::\n".encode(), 0o600)
    c.file("etc/group", f"root:x:0:\n{USER}:x:1000:\n".encode())
    if modules:
        c.dir("lib/dibpy-modules")
        for i, m in enumerate(modules):
            # numbered so that the shell glob in /init loads them in dependency order
            c.file(f"lib/dibpy-modules/{i:02d}-{m.name}", m.read_bytes())
    out = dest / "initrd.gz"
    out.write_bytes(gzip.compress(c.finish(), compresslevel=1))
    return out


@pytest.fixture
def guest(tmp_path: Path) -> tuple[Kernel, Path]:
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed")
    k = kernel()
    return k, make_initramfs(tmp_path, k.modules)


def test_real_boot_login_and_command(
    guest: tuple[Kernel, Path], tmp_path: Path, no_qemu_left: None
) -> None:
    k, initrd = guest
    log = tmp_path / "console.log"
    res = BootTest(
        kernel=k.vmlinuz,
        initrd=initrd,
        append="console=ttyS0",
        memory_mb=512,
        timeout=120,
        login=(USER, PASSWORD),
        command="id; cat /proc/cmdline",
        console_log=log,
    ).run()
    print(f"login prompt after {res.seconds_to_prompt:.1f} s ({res.accel})")
    assert res.command_output is not None
    lines = res.command_output.splitlines()
    assert lines[0] == f"uid=1000({USER}) gid=1000({USER}) groups=1000({USER})"
    assert lines[1].strip() == "console=ttyS0"
    assert "Linux version" in res.console
    assert "dibpytest login:" in res.console
    assert log.read_text() == res.console


def test_real_boot_uefi(guest: tuple[Kernel, Path], no_qemu_left: None) -> None:
    k, initrd = guest
    res = BootTest(
        kernel=k.vmlinuz,
        initrd=initrd,
        append="console=ttyS0",
        uefi=True,
        memory_mb=512,
        timeout=120,
        login=(USER, PASSWORD),
        command="test -d /sys/firmware/efi && echo efi-booted",
    ).run()
    assert res.command_output == "efi-booted"


def test_real_wrong_password(guest: tuple[Kernel, Path], no_qemu_left: None) -> None:
    k, initrd = guest
    with pytest.raises(BootTestError) as exc:
        BootTest(
            kernel=k.vmlinuz,
            initrd=initrd,
            append="console=ttyS0",
            memory_mb=512,
            timeout=120,
            login=(USER, "wrong"),
            command="id",
        ).run()
    assert "logging in as 'tester' failed" in exc.value.summary
    assert exc.value.console_log is not None
    assert "Login incorrect" in exc.value.console_log.read_text()
    exc.value.console_log.unlink()


def test_real_failing_command(guest: tuple[Kernel, Path], no_qemu_left: None) -> None:
    k, initrd = guest
    with pytest.raises(BootTestError) as exc:
        BootTest(
            kernel=k.vmlinuz,
            initrd=initrd,
            append="console=ttyS0",
            memory_mb=512,
            timeout=120,
            login=(USER, PASSWORD),
            command="ls /no/such/dir",
        ).run()
    assert "exited with status 1" in exc.value.summary
    assert "No such file or directory" in exc.value.console_tail
    assert exc.value.console_log is not None
    exc.value.console_log.unlink()


def test_real_disk_is_never_modified(
    guest: tuple[Kernel, Path], tmp_path: Path, no_qemu_left: None
) -> None:
    k, initrd = guest
    if not k.modules:
        pytest.skip("no virtio modules for this kernel (DIBPY_TEST_KERNEL was given)")
    disk = tmp_path / "disk.raw"
    original = b"ORIGINAL-CONTENT" + b"\0" * (8 * 1024 * 1024 - 16)
    disk.write_bytes(original)
    res = BootTest(
        disk,
        kernel=k.vmlinuz,
        initrd=initrd,
        append="console=ttyS0 dibpytest.disk",
        memory_mb=512,
        timeout=120,
        login=(USER, PASSWORD),
        command="head -c 16 /dev/vda; echo; echo DIBPY-WAS-HERE | dd of=/dev/vda conv=fsync"
        " 2>/dev/null; head -c 14 /dev/vda; echo; cat /sys/block/vda/size",
    ).run()
    # the guest saw the image as a virtio disk (8 MiB in sectors) and its write stuck ...
    assert res.command_output == "ORIGINAL-CONTENT\nDIBPY-WAS-HERE\n16384"
    # ... in the snapshot only: the image file is untouched
    assert disk.read_bytes() == original
