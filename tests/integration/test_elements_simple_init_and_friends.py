"""What the small elements change in a real Debian tree (root, chroot, Debian archive, PyPI).

Two trees are built with the real pipeline from the same cached bootstrap: a baseline
(a kernel-less Debian plus a test element that snapshots the tree in cleanup.d) and the
same plus openssh-server, runtime-ssh-host-keys, cloud-init-datasources,
journal-to-console, modprobe-blacklist, stable-interface-names, svc-map, ensure-venv,
pip-and-virtualenv, ibft-interfaces, dynamic-login, select-boot-kernel-initrd and epel.
Each test checks the difference one element makes.  simple-init has its own trees
(test_elements_simple_init.py).
"""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import (
    chroot_works,
    snapshot_tree,
    write,
    write_snap_element,
    write_test_debian,
)
from tests.integration.test_elements_debian_tree import archive_reachable

ELEMENTS = [
    "openssh-server", "runtime-ssh-host-keys", "cloud-init-datasources", "journal-to-console",
    "modprobe-blacklist", "stable-interface-names", "svc-map", "ensure-venv",
    "pip-and-virtualenv", "ibft-interfaces", "dynamic-login", "select-boot-kernel-initrd",
    "epel",
]  # fmt: skip


def make_test_elements(root: Path) -> Path:
    els = root / "elements"
    write_test_debian(els)
    # a stand-in kernel, so select-boot-kernel-initrd has something to choose from
    write(
        els / "test-debian/install.d/10-fake-kernels",
        "#!/bin/bash\nset -eu -o pipefail\nmkdir -p /boot\n"
        "for v in 6.1.0-9-amd64 6.1.0-10-amd64; do\n"
        '  echo k > "/boot/vmlinuz-$v"; echo i > "/boot/initrd.img-$v"\ndone\n',
        0o755,
    )
    write_snap_element(els)
    # a third-party style element using svc-map and select-boot-kernel-initrd
    write(els / "uses-maps/README.rst", "Calls svc-map and select-boot-kernel-initrd.\n")
    write(els / "uses-maps/element-deps", "select-boot-kernel-initrd\nsvc-map\n")
    write(
        els / "uses-maps/svc-map",
        "ssh-server:\n  default: sshd\n  debian: ssh\nweb:\n  default: httpd\n"
        "  redhat: httpd\n  ubuntu: apache2\n",
    )
    write(
        els / "uses-maps/post-install.d/50-uses-maps",
        "#!/bin/bash\nset -eu -o pipefail\n"
        "svc-map ssh-server web unmapped > /root/svc-map.out\n"
        "select-boot-kernel-initrd > /root/selected-kernel\n",
        0o755,
    )
    return els


def build(root: Path, cache: Path, elements: list[str], **env: str) -> Path:
    snap, log = snapshot_tree(root, cache, make_test_elements(root), elements, **env)
    (root / "build.log").write_text(log)
    return snap


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    reason = chroot_works() or archive_reachable()
    if reason:
        pytest.skip(reason)
    shared = os.environ.get("DIBPY_TEST_IMAGE_CACHE")
    cache = Path(shared) if shared else tmp_path_factory.mktemp("cache")
    base = build(tmp_path_factory.mktemp("baseline"), cache, [])
    tree = build(
        tmp_path_factory.mktemp("with"),
        cache,
        [*ELEMENTS, "uses-maps"],
        DIB_MODPROBE_BLACKLIST="floppy, pcspkr",
        DIB_CLOUD_INIT_DATASOURCES="ConfigDrive, OpenStack, None",
        DIB_OPENSSH_SERVER_CONFIG="PasswordAuthentication no",
        # the distribution's packages, which test_ensure_venv_and_pip checks
        DIB_INSTALLTYPE_pip_and_virtualenv="package",
    )
    return base, tree


def test_openssh_server_installed_enabled_without_host_keys(trees: tuple[Path, Path]) -> None:
    base, tree = trees
    assert not (base / "usr/sbin/sshd").exists()
    assert (tree / "usr/sbin/sshd").exists()
    wants = tree / "etc/systemd/system/multi-user.target.wants"
    # the package's own (absolute) link, or the element's
    assert (wants / "ssh.service").is_symlink()
    conf = tree / "etc/ssh/sshd_config.d/10-dib.conf"
    assert conf.read_text() == "PasswordAuthentication no\n"
    assert oct(conf.stat().st_mode & 0o777) == "0o600"
    # runtime-ssh-host-keys: none shipped, a unit makes them at boot
    assert not list((tree / "etc/ssh").glob("ssh_host_*"))
    unit = (tree / "etc/systemd/system/dib-ssh-host-keys.service").read_text()
    assert "ssh-keygen -A" in unit and "Before=ssh.service" in unit
    assert "ConditionPathExists=/usr/sbin/sshd" in unit.splitlines()
    assert (wants / "dib-ssh-host-keys.service").resolve().is_file()
    # one unit makes the keys: sysprep adds its own only without runtime-ssh-host-keys
    assert not (tree / "etc/systemd/system/dibpy-ssh-host-keys.service").exists()
    assert not (wants / "dibpy-ssh-host-keys.service").is_symlink()


def test_cloud_init_datasources(trees: tuple[Path, Path]) -> None:
    base, tree = trees
    cfg = "etc/cloud/cloud.cfg.d/91-dib-cloud-init-datasources.cfg"
    assert not (base / cfg).exists()
    assert (tree / cfg).read_text() == "datasource_list: [ ConfigDrive, OpenStack, None ]\n"


def test_journal_to_console(trees: tuple[Path, Path]) -> None:
    base, tree = trees
    conf = "etc/systemd/journald.conf.d/90-dib-journal-to-console.conf"
    assert not (base / conf).exists()
    assert "ForwardToConsole=yes" in (tree / conf).read_text().splitlines()


def test_modprobe_blacklist(trees: tuple[Path, Path]) -> None:
    base, tree = trees
    assert not (base / "etc/modprobe.d/blacklist.conf").exists()
    lines = (tree / "etc/modprobe.d/blacklist.conf").read_text().splitlines()
    assert lines == ["blacklist floppy", "blacklist pcspkr"]


def test_svc_map_and_select_boot_kernel_initrd(trees: tuple[Path, Path]) -> None:
    _, tree = trees
    assert (tree / "root/svc-map.out").read_text().split() == ["ssh", "httpd", "unmapped"]
    # the newest version, by version order (10 > 9), with its own initramfs
    selected = (tree / "root/selected-kernel").read_text().strip()
    assert selected == "vmlinuz-6.1.0-10-amd64:initrd.img-6.1.0-10-amd64"
    # the library copy was for the build only
    assert not (tree / "lib/diskimage-builder").exists()
    assert (tree / "usr/local/bin/select-boot-kernel-initrd").exists()


def test_ensure_venv_and_pip(trees: tuple[Path, Path]) -> None:
    base, tree = trees
    check = ["chroot", str(tree), "python3", "-m", "venv", "/tmp/v"]
    assert subprocess.run(check, capture_output=True).returncode == 0
    assert (tree / "usr/bin/pip3").exists() and not (base / "usr/bin/pip3").exists()
    assert (tree / "usr/bin/virtualenv").exists()


def test_dynamic_login_and_ibft_units(trees: tuple[Path, Path]) -> None:
    base, tree = trees
    wants = tree / "etc/systemd/system/multi-user.target.wants"
    for unit in ("dib-dynamic-login.service", "dib-ibft-interfaces.service"):
        assert (wants / unit).resolve().is_file()
        assert not (base / "etc/systemd/system" / unit).exists()
    # the dynamic-login script, run in the image with a fake command line
    cmdline = tree / "tmp/cmdline"
    cmdline.write_text('quiet sshkey="ssh-ed25519 AAAAC3Nza test@dibpy" rootpwd="$6$salt$hash"\n')
    r = subprocess.run(
        ["chroot", str(tree), "env", "DYNAMIC_LOGIN_CMDLINE_FILE=/tmp/cmdline",
         "/usr/local/sbin/dib-dynamic-login"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    keys = (tree / "root/.ssh/authorized_keys").read_text()
    assert keys == "ssh-ed25519 AAAAC3Nza test@dibpy\n"
    assert (tree / "etc/shadow").read_text().startswith("root:$6$salt$hash:")
    # diskimage-builder documents the hash base64-encoded (no "$" to escape)
    encoded = base64.b64encode(b"$6$other$hash").decode()
    cmdline.write_text(f'rootpwd="{encoded}"\n')
    r = subprocess.run(
        ["chroot", str(tree), "env", "DYNAMIC_LOGIN_CMDLINE_FILE=/tmp/cmdline",
         "/usr/local/sbin/dib-dynamic-login"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert (tree / "etc/shadow").read_text().startswith("root:$6$other$hash:")


def test_epel_is_a_no_op_on_debian(trees: tuple[Path, Path]) -> None:
    base, tree = trees
    assert not (tree / "etc/yum.repos.d").exists()
    log = (tree.parent / "build.log").read_text()
    assert "epel: debian is not in the Red Hat family; nothing to do" in log


def test_stable_interface_names_leaves_predictable_names(trees: tuple[Path, Path]) -> None:
    _, tree = trees
    for f in ("etc/udev/rules.d/80-net-setup-link.rules", "etc/systemd/network/99-default.link"):
        assert not (tree / f).is_symlink()
