"""yum-minimal's chroot hooks (pre-install.d/03-yum-cleanup, install.d/10-base-networking,
install.d/11-ensure-dbus-daemon), run for real in a tree whose ``/usr`` is an overlay over
the host's (``test_elements_new_hooks.in_chroot``): the tree's files after each hook are
what the tests check.  The unit enabling uses the host's own ``systemctl``, which edits
the tree's ``/etc/systemd/system`` as it would an image's.  The root.d bootstrap and the
cleanup.d mirror removal are in ``test_elements_rpm_minimal``.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import mounts_under, write
from tests.integration.test_elements_new_hooks import (
    ELEMENTS,
    in_chroot,
    make_tree,
    one_line_error,
    upper,
)

CLEANUP = ELEMENTS / "yum-minimal/pre-install.d/03-yum-cleanup"
NETWORKING = ELEMENTS / "yum-minimal/install.d/10-base-networking"
DBUS = ELEMENTS / "yum-minimal/install.d/11-ensure-dbus-daemon"


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Path]:
    yield make_tree(tmp_path)
    assert not mounts_under(tmp_path), "the mount namespace took its mounts with it"


def present(tree: Path, tmp_path: Path, *paths: str) -> set[str]:
    """Which of PATHS exist as the chroot sees them (the overlay's merged /usr)."""
    check = tmp_path / "check-paths"
    body = "".join(f'[ ! -e "{p}" ] || echo "{p}"\n' for p in paths)
    write(check, f"#!/bin/sh\n{body}", 0o755)
    r = in_chroot(tree, check)
    assert r.returncode == 0, r.stderr
    return set(r.stdout.split())


# ---------------------------------------------------------------- 03-yum-cleanup


def test_cleanup_trims_docs_locales_and_remakes_the_linker_cache(
    tree: Path, tmp_path: Path
) -> None:
    usr = upper(tree)
    for f in ("share/doc/fake/README", "share/info/fake.info", "share/i18n/locales/xx_XX",
              "share/gnome/help/fake/index.page", "sbin/sln", "share/keep/this"):  # fmt: skip
        write(usr / f, "x\n")
    write(tree / "etc/ld.so.cache", "stale cache from the host's tools\n")
    write(tree / "var/cache/ldconfig/aux-cache", "stale\n")
    gone = ["/usr/share/doc", "/usr/share/info", "/usr/share/i18n", "/usr/share/gnome/help",
            "/sbin/sln", "/usr/sbin/sln"]  # fmt: skip
    assert present(tree, tmp_path, *gone) == set(gone)

    r = in_chroot(tree, CLEANUP)
    assert r.returncode == 0, r.stderr
    assert present(tree, tmp_path, *gone, "/usr/share/keep/this", "/usr/share") == {
        "/usr/share/keep/this",
        "/usr/share",
    }
    # the image's ldconfig (the host's here) wrote a new cache in place of the stale one
    cache = (tree / "etc/ld.so.cache").read_bytes()
    assert cache.startswith((b"glibc-ld.so.cache", b"ld.so-1.7.0")), cache[:40]
    aux = tree / "var/cache/ldconfig"
    assert stat.S_IMODE(aux.stat().st_mode) == 0o755
    assert b"stale" not in b"".join(p.read_bytes() for p in aux.iterdir())
    # run twice (a rebuild from a checkpoint) it still succeeds
    assert in_chroot(tree, CLEANUP).returncode == 0


# ---------------------------------------------------------------- 10-base-networking

NETWORK = "NETWORKING=yes\nNETWORKING_IPV6=yes\nNOZEROCONF=yes\n"


def test_networking_writes_sysconfig_network_and_no_interfaces_by_default(tree: Path) -> None:
    write(tree / "etc/sysconfig/network", "NETWORKING=no\n")
    r = in_chroot(tree, NETWORKING)
    assert r.returncode == 0, r.stderr
    assert (tree / "etc/sysconfig/network").read_text() == NETWORK
    assert not (tree / "etc/sysconfig/network-scripts").exists()
    r = in_chroot(tree, NETWORKING, DIB_YUM_MINIMAL_CREATE_INTERFACES="0")
    assert r.returncode == 0, r.stderr
    assert not (tree / "etc/sysconfig/network-scripts").exists()


def test_networking_writes_dhcp_files_for_eth0_and_eth1(tree: Path) -> None:
    r = in_chroot(tree, NETWORKING, DIB_YUM_MINIMAL_CREATE_INTERFACES="1")
    assert r.returncode == 0, r.stderr
    assert (tree / "etc/sysconfig/network").read_text() == NETWORK
    scripts = tree / "etc/sysconfig/network-scripts"
    assert sorted(p.name for p in scripts.iterdir()) == ["ifcfg-eth0", "ifcfg-eth1"]
    for nic in ("eth0", "eth1"):
        text = (scripts / f"ifcfg-{nic}").read_text()
        assert text == f"DEVICE={nic}\nBOOTPROTO=dhcp\nONBOOT=yes\n"


def test_networking_bad_value_is_one_line(tree: Path) -> None:
    r = in_chroot(tree, NETWORKING, DIB_YUM_MINIMAL_CREATE_INTERFACES="yes")
    one_line_error(r, "yum-minimal:", "DIB_YUM_MINIMAL_CREATE_INTERFACES='yes'", "use 1")
    assert not (tree / "etc/sysconfig").exists()


# ---------------------------------------------------------------- 11-ensure-dbus-daemon

BROKER = """[Unit]
Description=D-Bus System Message Bus
Requires=dbus.socket
[Service]
Type=notify
ExecStart=/usr/bin/dbus-broker-launch --scope system
[Install]
Alias=dbus.service
"""
DAEMON = BROKER.replace("dbus-broker-launch --scope system", "dbus-daemon --system")
ALIAS = "etc/systemd/system/dbus.service"


@pytest.fixture
def systemd_tree(tree: Path) -> Path:
    if shutil.which("systemctl") is None:
        pytest.skip("the host has no systemctl to stand in for the image's")
    return tree


def units(tree: Path, files: dict[str, str]) -> None:
    """The image's D-Bus units: FILES by name, and none of the host's (whited out)."""
    for name in ("dbus-broker", "dbus-daemon"):
        path = upper(tree) / "lib/systemd/system" / f"{name}.service"
        path.parent.mkdir(parents=True, exist_ok=True)
        if name in files:
            write(path, files[name])
        elif Path(f"/usr/lib/systemd/system/{name}.service").exists():
            os.mknod(path, stat.S_IFCHR | 0o600, 0)  # an overlay whiteout hides it


def enabled(tree: Path) -> str:
    """The unit file the dbus.service alias points at, by name."""
    link = tree / ALIAS
    assert link.is_symlink(), sorted(str(p) for p in (tree / "etc").rglob("*"))
    target = Path(os.readlink(link))
    assert target.parent.name == "system" and target.parent.parent.name == "systemd"
    return target.name


@pytest.mark.parametrize(
    ("installed", "want"),
    [({"dbus-daemon": DAEMON}, "dbus-daemon.service"),
     ({"dbus-broker": BROKER}, "dbus-broker.service"),
     ({"dbus-broker": BROKER, "dbus-daemon": DAEMON}, "dbus-broker.service")],
)  # fmt: skip
def test_dbus_an_installed_bus_that_is_not_enabled_is_enabled(
    systemd_tree: Path, installed: dict[str, str], want: str
) -> None:
    units(systemd_tree, installed)
    r = in_chroot(systemd_tree, DBUS)
    assert r.returncode == 0, r.stderr
    assert enabled(systemd_tree) == want
    assert f"enabling {want}" in r.stdout


def test_dbus_an_enabled_bus_is_left_alone(systemd_tree: Path) -> None:
    units(systemd_tree, {"dbus-broker": BROKER, "dbus-daemon": DAEMON})
    (systemd_tree / ALIAS).parent.mkdir(parents=True)
    (systemd_tree / ALIAS).symlink_to("/usr/lib/systemd/system/dbus-daemon.service")
    before = sorted(str(p) for p in (systemd_tree / "etc").rglob("*"))
    r = in_chroot(systemd_tree, DBUS)
    assert r.returncode == 0, r.stderr
    assert enabled(systemd_tree) == "dbus-daemon.service"
    assert sorted(str(p) for p in (systemd_tree / "etc").rglob("*")) == before


def test_dbus_without_an_implementation_changes_nothing(tree: Path) -> None:
    units(tree, {})
    r = in_chroot(tree, DBUS)
    assert r.returncode == 0, r.stderr
    assert not (tree / "etc/systemd").exists()
