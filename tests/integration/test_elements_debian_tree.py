"""The Debian element library in a real build (root, chroot, network to the archive).

Builds a Debian root with the real pipeline (no disk image: the tree is snapshot at the
end of cleanup.d by a test element) and checks what the elements changed: users, sudo,
packages installed/removed through package-installs and pkg-map, services enabled,
and the hygiene sysprep promises.  The bootstrap goes through the bootstrap cache in
DIB_IMAGE_CACHE (default ~/.cache/image-create), so reruns skip debootstrap.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import REPO, chroot_works, write, write_test_debian

SECRET = "Zq-not-in-any-log-7731"
HOST_SOURCES = REPO / "elements" / "debootstrap" / "debootstrap-tools" / "host_apt_sources.py"


def archive_reachable() -> str | None:
    out = subprocess.run([sys.executable, str(HOST_SOURCES)], capture_output=True, text=True).stdout
    mirrors = dict(line.split("=", 1) for line in out.splitlines())
    url = os.environ.get("DIB_DISTRIBUTION_MIRROR") or mirrors.get("mirror")
    if not url:
        return "no Debian mirror known (not a Debian host and no DIB_DISTRIBUTION_MIRROR)"
    r = subprocess.run(
        ["curl", "-fsS", "-o", "/dev/null", "--max-time", "20", f"{url}/dists/bookworm/Release"],
        capture_output=True,
        text=True,
    )
    return None if r.returncode == 0 else f"the Debian archive is not reachable: {r.stderr}"


def make_test_elements(tmp_path: Path) -> Path:
    els = tmp_path / "elements"
    write_test_debian(els)
    write(els / "no-final-image/README.rst", "Stop after the tree is built.\n")
    write(els / "snap/README.rst", "Snapshot the finished tree.\n")
    write(els / "snap/element-deps", "install-static\n")
    write(
        els / "snap/cleanup.d/99-snap",
        "#!/bin/bash\nset -eu -o pipefail\n"
        'tar -C "$TARGET_ROOT" --numeric-owner -cf "$SNAP_OUT" .\n',
        0o755,
    )
    write(els / "snap/static/etc/snap-static.conf", "from static\n")
    write(
        els / "snap/package-installs.yaml",
        # systemd: test-debian is minbase, with no init system
        "systemd:\nless:\nbc:\n  build-only: true\nnano:\n  uninstall: true\ngeneric-file:\n"
        "never-installed:\n  when: SNAP_FLAG=no\n",
    )
    write(els / "snap/pkg-map", '{"family": {"debian": {"generic-file": "file"}}}\n')
    return els


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    reason = chroot_works() or archive_reachable()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("debian-tree")
    els = make_test_elements(tmp)
    keys = tmp / "id.pub"
    keys.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITEST test@dibpy\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIB_")}
    env.update(
        ELEMENTS_PATH=str(els),
        TMP_DIR=str(tmp / "tmp"),
        SNAP_OUT=str(tmp / "snap.tar"),
        SNAP_FLAG="yes",
        DIB_IMAGE_CACHE=os.environ.get(
            "DIB_IMAGE_CACHE", str(Path.home() / ".cache" / "image-create")
        ),
        DIB_DEV_USER_PASSWORD=SECRET,
        DIB_DEV_USER_PWDLESS_SUDO="1",
        DIB_DEV_USER_AUTHORIZED_KEYS=str(keys),
        DIB_DEV_USER_GROUPS="adm,audio",
        DIB_DHCP_TIMEOUT="45",
    )
    (tmp / "tmp").mkdir()
    r = subprocess.run(
        [
            sys.executable,
            str(REPO / "bin" / "disk-image-create"),
            "-x",
            "-o",
            str(tmp / "out" / "img"),
            "test-debian",
            "snap",
            "no-final-image",
            "devuser",
            "dhcp-all-interfaces",
            "growroot",
            "enable-serial-console",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-5000:]
    root = tmp / "root"
    root.mkdir()
    with tarfile.open(tmp / "snap.tar") as t:
        t.extractall(root, filter="tar")
    return root, tmp / "out", log


def installed(root: Path) -> set[str]:
    out = subprocess.run(
        ["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f", "${Package} ${Status}\n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {ln.split()[0] for ln in out.splitlines() if ln.endswith("installed")}


def test_bootstrap_cache_is_used(built: tuple[Path, Path, str]) -> None:
    _, _, log = built
    assert "caching the bootstrap" in log or "reusing cached bootstrap" in log


def test_packages_from_package_installs_and_pkg_map(built: tuple[Path, Path, str]) -> None:
    root, _, log = built
    pkgs = installed(root)
    assert {"less", "file", "sudo", "cloud-guest-utils"} <= pkgs
    # dhcp-all-interfaces: ifupdown and dhclient, as diskimage-builder's element
    assert {"ifupdown", "isc-dhcp-client", "ndisc6"} <= pkgs
    assert "systemd-resolved" not in pkgs
    assert "bc" not in pkgs, "build-only packages are removed at the end of post-install.d"
    assert "never-installed" not in log.split("install-packages", 1)[-1]
    # all install.d packages of all elements in one install-packages run
    runs = [
        ln for ln in log.splitlines() if "install.d/01-package-installs: + install-packages" in ln
    ]
    assert len(runs) == 1 and "less" in runs[0] and "sudo" in runs[0]
    manifest = next((built[1].parent / "out").glob("img.d/dib-manifests/dib-manifest-dpkg-img"))
    assert "less " in manifest.read_text()


def test_devuser(built: tuple[Path, Path, str]) -> None:
    root, _, _ = built
    passwd = (root / "etc/passwd").read_text()
    assert "devuser:x:1000:1000::/home/devuser:/bin/bash" in passwd
    shadow = {
        ln.split(":")[0]: ln.split(":")[1] for ln in (root / "etc/shadow").read_text().splitlines()
    }
    assert shadow["devuser"].startswith("$"), "the password is set (hashed)"
    assert (root / "etc/sudoers.d/devuser").read_text() == "devuser ALL=(ALL) NOPASSWD:ALL\n"
    ak = root / "home/devuser/.ssh/authorized_keys"
    assert ak.read_text().startswith("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITEST")
    assert oct(ak.stat().st_mode & 0o777) == "0o600" and ak.stat().st_uid == 1000
    # DIB_DEV_USER_GROUPS, as diskimage-builder names it
    groups = {
        ln.split(":")[0]: ln.split(":")[3].split(",")
        for ln in (root / "etc/group").read_text().splitlines()
    }
    assert "devuser" in groups["adm"] and "devuser" in groups["audio"]


def test_password_never_logged_or_in_manifests(built: tuple[Path, Path, str]) -> None:
    root, out, log = built
    assert SECRET not in log
    for p in (out.parent / "out").rglob("*"):
        if p.is_file():
            assert SECRET not in p.read_text(errors="replace"), p
    for d in ("etc", "var/log", "root", "home", "tmp"):
        for p in (root / d).rglob("*"):
            if p.is_file() and not p.is_symlink():
                assert SECRET.encode() not in p.read_bytes(), p


def test_services_and_static_files(built: tuple[Path, Path, str]) -> None:
    root, _, _ = built
    wants = root / "etc/systemd/system"
    assert (wants / "getty.target.wants/serial-getty@ttyS0.service").is_symlink()
    assert (wants / "local-fs.target.wants/growroot.service").is_symlink()
    assert (root / "etc/snap-static.conf").read_text() == "from static\n"
    for tool in ("install-packages", "pkg-map", "dib-init-system"):
        assert os.access(root / "usr/local/bin" / tool, os.X_OK)
    # as in diskimage-builder, the build's runner is not left in the image
    assert not (root / "usr/local/bin/dib-run-parts").exists()


def test_dhcp_all_interfaces(built: tuple[Path, Path, str]) -> None:
    """udev starts dhcp-interface@IFACE for each NIC; ifupdown brings it up."""
    root, _, _ = built
    script = root / "usr/local/sbin/dhcp-all-interfaces.sh"
    assert os.access(script, os.X_OK) and "\ndefault_timeout=45\n" in script.read_text()
    unit = (root / "usr/lib/systemd/system/dhcp-interface@.service").read_text()
    assert "ExecStart=/sbin/ifup %i" in unit and "TimeoutStartSec=90s" in unit
    rule = (root / "etc/udev/rules.d/99-dhcp-all-interfaces.rules").read_text()
    assert "dhcp-interface@$name.service" in rule
    # ifupdown reads interfaces.d (the service runs ifup itself)
    wants = root / "etc/systemd/system"
    assert "source /etc/network/interfaces.d/*" in (root / "etc/network/interfaces").read_text()
    assert list((root / "etc/network/interfaces.d").iterdir()) == []
    assert "timeout 45;" in (root / "etc/dhcp/dhclient.conf").read_text().splitlines()
    assert not (root / "etc/systemd/network/80-dhcp-all-interfaces.network").exists()
    assert not (wants / "multi-user.target.wants/systemd-networkd.service").exists()
    # the script sees the image's ifupdown layout
    sbin = [root / "usr/sbin/ifup", root / "sbin/ifup"]
    assert any(p.exists() or p.is_symlink() for p in sbin)
    assert (root / "etc/snap-static.conf").read_text() == "from static\n"
    for tool in ("install-packages", "pkg-map", "dib-init-system"):
        assert os.access(root / "usr/local/bin" / tool, os.X_OK)


def test_sysprep_hygiene(built: tuple[Path, Path, str]) -> None:
    root, _, _ = built
    assert (root / "etc/machine-id").read_text() == ""
    assert not list((root / "etc/ssh").glob("ssh_host_*")) if (root / "etc/ssh").exists() else True
    # no systemd-resolved (dhcp-all-interfaces uses dhclient): an empty file for dhclient
    resolv = root / "etc/resolv.conf"
    assert not resolv.is_symlink()
    host = Path("/etc/resolv.conf").read_text()
    assert not host.strip() or resolv.read_text() != host
    assert (root / "etc/hostname").read_text() == "localhost\n"
    assert sorted(p.name for p in (root / "var/lib/apt/lists").iterdir() if p.is_file()) == ["lock"]
    assert not list((root / "var/cache/apt").glob("*.bin"))
    assert not list((root / "var/cache/apt/archives").glob("*.deb"))
    logs = [p for p in (root / "var/log").rglob("*") if p.is_file() and not p.is_symlink()]
    assert logs and [p for p in logs if p.stat().st_size] == []
    assert list((root / "tmp").iterdir()) == []
    # build-time apt/dpkg settings are gone
    assert not (root / "etc/dpkg/dpkg.cfg.d/00dibpy-build-unsafe-io").exists()
    assert not (root / "etc/apt/apt.conf.d/00dibpy-build").exists()
    assert not (root / "usr/sbin/policy-rc.d").exists()
