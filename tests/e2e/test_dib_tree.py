"""diskimage-builder's own element tree on dibpy's engine.

With ``ELEMENTS_PATH`` at the ``elements/`` directory of diskimage-builder 3.43.0
(downloaded at test time into a cache, never installed: tests/dibref.py), every element
of the build is diskimage-builder's own, unmodified: its debootstrap, dpkg,
package-installs (Python tools importing ``diskimage_builder``), base, vm, bootloader and
devuser, with their ``sudo`` calls, ``$_LIB`` sourcing and mounts into the tree. The image
must boot and let the dev user log in, and nothing may be left mounted.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import our_loops, our_mounts
from tests.dibref import dib_elements, dib_mirror_env
from tests.e2e.conftest import DEV_PASSWORD, DEV_USER, Built, run_build


@pytest.fixture(scope="module")
def dib_tree_image(tmp_path_factory: pytest.TempPathFactory, image_cache: Path) -> Built:
    elements = dib_elements()
    out = tmp_path_factory.mktemp("dib-tree") / "debian"
    loops, mounts = our_loops(), our_mounts()
    built = run_build(
        out,
        ["debian-minimal", "vm", "devuser", "baremetal"],
        image_cache,
        ELEMENTS_PATH=str(elements),
        DIB_RELEASE="bookworm",
        DIB_DEV_USER_USERNAME=DEV_USER,
        DIB_DEV_USER_PASSWORD=DEV_PASSWORD,
        DIB_DEV_USER_PWDLESS_SUDO="yes",
        **dib_mirror_env(),
    )
    # diskimage-builder's dpkg element bind-mounts its apt cache into the tree
    assert our_mounts() - mounts == set(), "a mount outlived the build"
    assert our_loops() - loops == set(), "a loop device outlived the build"
    return built


def test_build_ran_diskimage_builders_own_elements(dib_tree_image: Built) -> None:
    log = dib_tree_image.log
    elements = str(dib_elements())
    # the hooks that ran are diskimage-builder's, not dibpy's library
    assert f"{elements}/debootstrap" in log or "root.d/08-debootstrap" in log, log[-3000:]
    assert "extra-data.d/99-squash-package-install" in log
    assert "ModuleNotFoundError" not in log
    assert "sudo: command not found" not in log


def test_baremetal_kernel_and_initrd_beside_the_image(dib_tree_image: Built) -> None:
    base = dib_tree_image.image.with_suffix("")
    kernel, initrd = Path(f"{base}.vmlinuz"), Path(f"{base}.initrd")
    assert kernel.is_file() and initrd.is_file()
    assert b"HdrS" in kernel.read_bytes()[:1024], "not a bzImage"
    assert initrd.stat().st_size > 1024 * 1024


def test_image_from_diskimage_builders_tree_boots_and_devuser_logs_in(
    dib_tree_image: Built,
) -> None:
    from dibpy.boottest import BootTest

    res = BootTest(
        image=dib_tree_image.image,
        login=(DEV_USER, DEV_PASSWORD),
        command="id; sudo -n true && echo SUDO-OK",
        timeout=600,
        console_log=dib_tree_image.image.with_suffix(".console.log"),
    ).run()
    assert res.command_output is not None
    assert f"({DEV_USER})" in res.command_output, res.command_output
    assert "SUDO-OK" in res.command_output, res.command_output


def test_ramdisk_from_diskimage_builders_tree(
    tmp_path_factory: pytest.TempPathFactory, image_cache: Path
) -> None:
    """ramdisk-image-create with diskimage-builder's ramdisk element: its busybox
    initramfs, built by its own post-install.d on dibpy's $_LIB, and the kernel."""
    from tests.e2e.boot_helpers import build

    out = tmp_path_factory.mktemp("dib-ramdisk") / "deploy"
    mounts = our_mounts()
    built = build(
        "ramdisk-image-create",
        out,
        ["debian-minimal"],
        image_cache,
        ELEMENTS_PATH=str(dib_elements()),
        DIB_RELEASE="bookworm",
        **dib_mirror_env(),
    )
    assert "post-install.d/99-build-ramdisk" in built.log
    kernel, initramfs = built.file(".kernel"), built.file(".initramfs")
    assert b"HdrS" in kernel.read_bytes()[:1024], "not a bzImage"
    listing = subprocess.run(
        f"zcat {initramfs} | cpio -t --quiet", shell=True, capture_output=True, text=True
    ).stdout.split()
    assert "init" in listing and "bin/busybox" in listing, listing[:40]
    assert our_mounts() - mounts == set()
