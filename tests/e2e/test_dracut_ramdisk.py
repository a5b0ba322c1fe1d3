"""dracut-ramdisk for real: dracut from the Debian archive builds NAME.initramfs in the chroot.

One build (``ramdisk-image-create debian-minimal dracut-ramdisk`` plus a small element
of the test's own that asks for a driver, a program and an init.d fragment), read from
outside with cpio, and one boot of the kernel and initramfs under QEMU: dracut's systemd
brings up udev and the network, and its pre-mount hook runs the ramdisk init.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dibpy.boottest import BootTest
from tests.conftest import loops_under, mounts_under
from tests.e2e.boot_helpers import Outputs, build, initramfs_files, initramfs_modules

#: a module no dracut module installs by itself (it is not under drivers/), a program
#: dracut does not need, and a fragment of the ramdisk init
TEST_ELEMENT = {
    "element-deps": "dracut-ramdisk\n",
    "dracut-drivers.d/e2e": "8021q\n",
    "binary-deps.d/e2e": "nproc\n",
    "init.d/50-e2e": 'echo "e2e fragment: $(nproc) cpus, kernel cmdline $(cat /proc/cmdline)"\n',
}


@pytest.fixture(scope="module")
def dracut_ramdisk(tmp_path_factory: pytest.TempPathFactory, image_cache: Path) -> Outputs:
    work = tmp_path_factory.mktemp("dracut-ramdisk")
    element = work / "elements" / "e2e-dracut"
    for name, text in {**TEST_ELEMENT, "README.rst": "e2e-dracut\n==========\n"}.items():
        (element / name).parent.mkdir(parents=True, exist_ok=True)
        (element / name).write_text(text)
    return build(
        "ramdisk-image-create",
        work / "drd",
        ["debian-minimal", "e2e-dracut"],
        image_cache,
        ELEMENTS_PATH=str(work / "elements"),
    )


def test_the_build_left_nothing_behind(dracut_ramdisk: Outputs) -> None:
    work = dracut_ramdisk.base.parent
    assert not loops_under(work) and not mounts_under(work)
    chrooted = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if str(work) in str((proc / "root").readlink()):
                chrooted.append(proc.name)
        except OSError:
            continue
    assert not chrooted, f"processes still in the build's chroot: {chrooted}"


def test_the_initramfs_is_dracuts_with_what_the_elements_asked_for(
    dracut_ramdisk: Outputs,
) -> None:
    initrd = dracut_ramdisk.file(".initramfs")
    files = {f.removeprefix("./") for f in initramfs_files(initrd)}
    # dracut's own layout: its module list, hook directories and systemd's initrd units
    assert "usr/lib/dracut/modules.txt" in files, sorted(files)[:50]
    assert "usr/lib/initrd-release" in files
    hooks = {f for f in files if "/dracut/hooks/pre-mount/" in f}
    assert any(f.endswith("-dib-ramdisk-hook.sh") for f in hooks), hooks
    assert "sbin/dib-ramdisk-init" in files or "usr/sbin/dib-ramdisk-init" in files
    # the drivers (this element's and dracut-ramdisk's) and the programs
    mods = initramfs_modules(initrd)
    assert {"8021q", "virtio_net", "virtio_blk"} <= mods, sorted(mods)[:40]
    assert "usr/bin/nproc" in files, "binary-deps.d program missing"
    # not the whole tree: no apt, and far fewer files than a Debian system
    assert "usr/bin/apt" not in files and len(files) < 6000, len(files)
    assert "ramdisk-base: wrote" in dracut_ramdisk.log and "from the tree" in dracut_ramdisk.log


def test_the_dracut_ramdisk_boots_and_runs_the_ramdisk_init(dracut_ramdisk: Outputs) -> None:
    res = BootTest(
        kernel=dracut_ramdisk.file(".kernel"),
        initrd=dracut_ramdisk.file(".initramfs"),
        append="console=ttyS0",
        memory_mb=1536,
        ready=r"dib-ramdisk: init finished",
        timeout=600,
        console_log=dracut_ramdisk.file(".console.log"),
    ).run()
    console = res.console
    assert "dib-ramdisk: init running in the dracut initramfs" in console, console[-3000:]
    # the fragment ran inside the init, with the command line dracut-ramdisk built in
    assert "dib-ramdisk: init.d/50-e2e" in console
    assert "e2e fragment:" in console and "console=ttyS0" in console
    # rd.neednet=1: the network was up (QEMU's user network) before the init ran
    assert "has 10.0.2.15/24" in console, console[-3000:]
