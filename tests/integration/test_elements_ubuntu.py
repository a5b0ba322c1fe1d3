"""ubuntu-minimal / ubuntu through the real pipeline, with a fake debootstrap on PATH.

The Ubuntu archive is not reachable here, so ``debootstrap`` is a script that records its
arguments and makes a tiny chroot-able root (the host's bash and coreutils, a stub
``apt-get`` that records its calls).  Everything else is real: element resolution, the
environment the elements export, the keyring check, the debootstrap command line, the
bootstrap cache, the apt sources written for Ubuntu, and the packages the build asks apt
for.  tests/e2e/test_ubuntu.py does the same against a real mirror when one answers.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, chroot_works
from tests.integration.test_elements_centos import copy_with_libs, write

DIC = [sys.executable, str(REPO / "bin" / "disk-image-create")]
TOOLS = [
    "bash", "sh", "cat", "env", "ls", "mkdir", "rm", "touch", "id", "tr", "sort", "head",
    "tail", "basename", "dirname", "sed", "grep", "awk", "mktemp", "cp", "mv", "ln", "chmod",
    "chown", "readlink", "cut", "wc", "find", "xargs", "install", "tee", "date", "stat",
]  # fmt: skip

FAKE_DEBOOTSTRAP = """#!/bin/bash
# records its arguments; makes a tiny root from the host's tools
set -eu
printf '%s\\n' "$*" >> "$FAKE_DEBOOTSTRAP_LOG"
args=()
for a in "$@"; do case "$a" in --*) ;; *) args+=("$a") ;; esac; done
release=${args[0]} root=${args[1]} mirror=${args[2]:-http://debootstrap-default.invalid/ubuntu}
cp -a "$FAKE_ROOT_TEMPLATE/." "$root/"
echo "deb $mirror $release main" > "$root/etc/apt/sources.list"
"""
STUB_APT = """#!/bin/bash
echo "apt-get $*" >> /var/lib/apt-calls
"""


@pytest.fixture(autouse=True)
def _need_chroot() -> None:
    reason = chroot_works()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ubuntu-template")
    for d in (
        "usr/bin",
        "usr/sbin",
        "usr/lib",
        "usr/local/bin",
        "etc/apt",
        "tmp",
        "var/log",
        "var/lib",
    ):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    for link, to in (("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib")):
        (root / link).symlink_to(to)
    if Path("/lib64").exists():
        (root / "usr/lib64").mkdir()
        (root / "lib64").symlink_to("usr/lib64")
    for t in TOOLS:
        copy_with_libs(root, t)
    write(root / "etc/passwd", "root:x:0:0:root:/root:/bin/bash\n")
    write(root / "etc/group", "root:x:0:\n")
    write(root / "etc/os-release", 'NAME="Ubuntu"\nID=ubuntu\n')
    write(root / "usr/bin/apt-get", STUB_APT, 0o755)
    write(
        root / "usr/bin/dpkg-divert",
        '#!/bin/bash\necho "dpkg-divert $*" >> /var/lib/apt-calls\n',
        0o755,
    )
    return root


def build(
    tmp_path: Path, template: Path, elements: list[str], no_cache: bool = True, **env: str
) -> tuple[subprocess.CompletedProcess[str], Path]:
    fake_bin = tmp_path / "fake-bin"
    write(fake_bin / "debootstrap", FAKE_DEBOOTSTRAP, 0o755)
    keyring = tmp_path / "ubuntu-archive-keyring.gpg"
    keyring.write_bytes(b"not really a keyring, debootstrap is fake")
    els = tmp_path / "test-elements"
    write(els / "snap/README.rst", "Copy the finished tree to $SNAP_OUT.\n")
    write(
        els / "snap/cleanup.d/99-snap",
        '#!/bin/bash\nset -eu -o pipefail\ncp -a "$TARGET_ROOT" "$SNAP_OUT"\n'
        'env | sort > "$SNAP_OUT.env"\n',
        0o755,
    )
    (tmp_path / "tmp").mkdir(exist_ok=True)
    full = {k: v for k, v in os.environ.items() if not k.startswith("DIB_")}
    full.update(
        PATH=f"{fake_bin}:{os.environ['PATH']}",
        ELEMENTS_PATH=str(els),
        TMP_DIR=str(tmp_path / "tmp"),
        DIB_IMAGE_CACHE=str(tmp_path / "cache"),
        DIB_UBUNTU_KEYRING=str(keyring),
        FAKE_DEBOOTSTRAP_LOG=str(tmp_path / "debootstrap.log"),
        FAKE_ROOT_TEMPLATE=str(template),
        SNAP_OUT=str(tmp_path / "snap"),
    )
    full.update(env)
    r = subprocess.run(
        # --no-cache (no tree cache, no bootstrap cache): every hook runs every time
        [
            *DIC,
            "-n",
            *(["--no-cache"] if no_cache else []),
            "-o",
            str(tmp_path / "out/img"),
            *elements,
            "no-final-image",
            "snap",
        ],  # fmt: skip
        env=full,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return r, tmp_path / "snap"


def env_of(snap: Path) -> dict[str, str]:
    text = snap.with_name("snap.env").read_text()
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def test_ubuntu_minimal_defaults(tmp_path: Path, template: Path) -> None:
    r, snap = build(tmp_path, template, ["ubuntu-minimal"])
    assert r.returncode == 0, r.stderr[-4000:]
    (call,) = (tmp_path / "debootstrap.log").read_text().splitlines()
    argv = shlex.split(call)
    keyring = str(tmp_path / "ubuntu-archive-keyring.gpg")
    assert argv[:4] == [
        "--variant=minbase",
        "--arch=amd64",
        "--components=main,universe",
        f"--keyring={keyring}",
    ]
    # no mirror argument: not the host's Debian archive, debootstrap's Ubuntu default
    assert argv[4:5] == ["jammy"] and len(argv) == 6
    sources = (snap / "etc/apt/sources.list").read_text().splitlines()
    mirror = "http://debootstrap-default.invalid/ubuntu"
    assert sources == [
        f"deb {mirror} jammy main universe",
        f"deb {mirror} jammy-updates main universe",
        f"deb {mirror} jammy-security main universe",
    ]
    env = env_of(snap)
    assert env["DISTRO_NAME"] == "ubuntu" and env["DIB_RELEASE"] == "jammy"
    apt = (snap / "var/lib/apt-calls").read_text()
    install = next(line for line in apt.splitlines() if " install " in line)
    for pkg in ("linux-image-generic", "systemd-sysv", "initramfs-tools", "sudo"):
        assert pkg in install.split()
    assert "linux-image-amd64" not in install


def cloud_site(tmp_path: Path, template: Path, release: str = "noble") -> Path:
    """A directory like the cloud images site's RELEASE/current/: the root squashfs
    (the fake root plus a stub dkms and deb822 apt sources) and its SHA256SUMS."""
    tree = tmp_path / "cloud-tree"
    shutil.copytree(template, tree, symlinks=True)
    write(tree / "usr/bin/dkms", '#!/bin/bash\necho "dkms $*" >> /var/lib/apt-calls\n', 0o755)
    write(
        tree / "etc/apt/sources.list.d/ubuntu.sources",
        f"Types: deb\nURIs: http://archive.example.invalid/ubuntu\nSuites: {release}\n"
        "Components: main universe restricted multiverse\n\n"
        "Types: deb\nURIs: http://security.example.invalid/ubuntu\n"
        f"Suites: {release}-security\nComponents: main universe\n",
    )
    write(tree / "etc/fstab", "LABEL=cloudimg-rootfs / ext4 defaults 0 1\n")
    write(tree / "etc/cloud-image-marker", "from the squashfs\n")
    site = tmp_path / "site"
    site.mkdir()
    name = f"{release}-server-cloudimg-amd64.squashfs"
    subprocess.run(
        ["mksquashfs", str(tree), str(site / name), "-quiet", "-no-progress", "-comp", "gzip"],
        check=True,
        capture_output=True,
    )
    digest = hashlib.sha256((site / name).read_bytes()).hexdigest()
    (site / "SHA256SUMS").write_text(f"{'0' * 64} *other.img\n{digest} *{name}\n")
    return site


def test_ubuntu_from_the_cloud_image(tmp_path: Path, template: Path) -> None:
    site = cloud_site(tmp_path, template)
    mirror = "http://ubuntu-mirror.example.invalid/ubuntu"
    r, snap = build(
        tmp_path,
        template,
        ["ubuntu"],
        DIB_CLOUD_IMAGES=f"file://{site}",
        DIB_DISTRIBUTION_MIRROR=mirror,
        DIB_DISTRIBUTION_MIRROR_UBUNTU_IGNORE="security",
    )
    assert r.returncode == 0, r.stderr[-4000:]
    # no debootstrap: the root is the cloud image's
    assert not (tmp_path / "debootstrap.log").exists()
    assert (snap / "etc/cloud-image-marker").read_text() == "from the squashfs\n"
    assert "verified against" in r.stdout + r.stderr
    assert "cloudimg-rootfs" not in (snap / "etc/fstab").read_text()
    sources = (snap / "etc/apt/sources.list.d/ubuntu.sources").read_text()
    assert f"URIs: {mirror}\nSuites: noble\n" in sources
    assert "URIs: http://security.example.invalid/ubuntu" in sources  # ignored by the regexp
    calls = (snap / "var/lib/apt-calls").read_text()
    install = next(line for line in calls.splitlines() if " install " in line)
    assert {"linux-image-generic", "dkms"} <= set(install.split())
    assert "apt-get -y autoremove" in calls
    sysctl = (snap / "etc/sysctl.d/99-cloudimg-ipv6.conf").read_text()
    assert "net.ipv6.conf.all.use_tempaddr = 0" in sysctl
    cfg = snap / "etc/cloud/cloud.cfg.d/91-dib-cloud-init-datasources.cfg"
    assert cfg.read_text().strip() == "datasource_list: [ Ec2 ]"
    env = env_of(snap)
    assert (env["DISTRO_NAME"], env["DIB_RELEASE"], env["DIB_INIT_SYSTEM"]) == (
        "ubuntu",
        "noble",
        "systemd",
    )


def test_ubuntu_cloud_image_with_a_wrong_checksum_fails(tmp_path: Path, template: Path) -> None:
    site = cloud_site(tmp_path, template, "jammy")
    (site / "SHA256SUMS").write_text("f" * 64 + " *jammy-server-cloudimg-amd64.squashfs\n")
    r, snap = build(
        tmp_path, template, ["ubuntu"], DIB_RELEASE="jammy", DIB_CLOUD_IMAGES=f"file://{site}"
    )
    assert r.returncode != 0
    assert "checksum mismatch" in r.stderr
    assert not snap.exists()
    assert not list((tmp_path / "cache/cloud-images").glob("*.squashfs"))


def test_ubuntu_needs_an_image_source(tmp_path: Path, template: Path) -> None:
    r, snap = build(tmp_path, template, ["ubuntu"])
    assert r.returncode != 0
    assert "set DIB_CLOUD_IMAGES" in r.stderr
    assert not snap.exists()


def test_ubuntu_from_a_local_root_tarball(tmp_path: Path, template: Path) -> None:
    cloud_site(tmp_path, template)
    tarball = tmp_path / "root.tar.gz"
    subprocess.run(
        ["tar", "-C", str(tmp_path / "cloud-tree"), "-czf", str(tarball), "."], check=True
    )
    r, snap = build(tmp_path, template, ["ubuntu"], DIB_LOCAL_IMAGE=str(tarball))
    assert r.returncode == 0, r.stderr[-4000:]
    assert (snap / "etc/cloud-image-marker").exists()
    bogus = tmp_path / "bogus.img"
    bogus.write_bytes(b"\0" * 4096)
    r, _ = build(tmp_path / "again", template, ["ubuntu"], DIB_LOCAL_IMAGE=str(bogus))
    assert r.returncode != 0
    assert "neither a squashfs nor a tarball" in r.stderr


def test_missing_keyring_stops_before_debootstrap(tmp_path: Path, template: Path) -> None:
    r, snap = build(
        tmp_path, template, ["ubuntu-minimal"], DIB_UBUNTU_KEYRING=str(tmp_path / "none.gpg")
    )
    assert r.returncode != 0
    assert "Ubuntu archive keyring" in r.stderr and "ubuntu-keyring" in r.stderr
    assert not (tmp_path / "debootstrap.log").exists()
    assert not snap.exists()


def test_bootstrap_cache_is_reused(tmp_path: Path, template: Path) -> None:
    cache = str(tmp_path / "cache")
    keyring = str(tmp_path / "shared-keyring.gpg")
    Path(keyring).write_bytes(b"not really a keyring, debootstrap is fake")

    def again(name: str, **env: str) -> subprocess.CompletedProcess[str]:
        # a DIB_ variable of its own per build: the tree cache never hits, root.d runs
        env = {"DIB_IMAGE_CACHE": cache, "DIB_TEST_BUILD": name, **env}
        r, _ = build(tmp_path / name, template, ["ubuntu-minimal"], no_cache=False, **env)
        assert r.returncode == 0, r.stderr[-4000:]
        return r

    again("first", DIB_UBUNTU_KEYRING=keyring)
    assert (tmp_path / "first/debootstrap.log").exists()
    # another keyring is another bootstrap (the keyring is part of the cache key)
    again("other-keyring")
    assert (tmp_path / "other-keyring/debootstrap.log").exists()
    r = again("same", DIB_UBUNTU_KEYRING=keyring)
    assert not (tmp_path / "same/debootstrap.log").exists()
    assert "reusing cached bootstrap" in r.stdout + r.stderr


def test_bootstrap_cache_follows_the_archive(tmp_path: Path, template: Path) -> None:
    """A new InRelease of the suite (a package published since) makes a new bootstrap;
    the same one reuses it; offline, the digest seen last is used and the log says so."""
    archive = tmp_path / "archive"
    release_file = archive / "dists/jammy/InRelease"
    write(release_file, "Origin: Ubuntu\nDate: Mon, 01 Dec 2026 00:00:00 UTC\n")
    cache = str(tmp_path / "cache")
    keyring = str(tmp_path / "shared-keyring.gpg")
    Path(keyring).write_bytes(b"not really a keyring, debootstrap is fake")

    def again(name: str, **env: str) -> str:
        # a DIB_ variable of its own per build: the tree cache never hits, root.d runs
        env = {
            "DIB_IMAGE_CACHE": cache,
            "DIB_TEST_BUILD": name,
            "DIB_UBUNTU_KEYRING": keyring,
            "DIB_DISTRIBUTION_MIRROR": f"file://{archive}",
            **env,
        }
        r, _ = build(tmp_path / name, template, ["ubuntu-minimal"], no_cache=False, **env)
        assert r.returncode == 0, r.stderr[-4000:]
        return r.stdout + r.stderr

    def bootstrapped(name: str) -> bool:
        return (tmp_path / name / "debootstrap.log").exists()

    again("first")
    assert bootstrapped("first")
    text = again("same")
    assert not bootstrapped("same") and "reusing cached bootstrap" in text
    write(release_file, "Origin: Ubuntu\nDate: Tue, 02 Dec 2026 00:00:00 UTC\n")
    again("published")
    assert bootstrapped("published"), "a new InRelease must not reuse the old bootstrap"
    # offline, with the archive gone: the digest seen last, so the newest bootstrap
    shutil.rmtree(archive)
    text = again("offline", DIB_OFFLINE="1")
    assert not bootstrapped("offline")
    # read at plan time (DIB_ARCHIVE_STATE): dibpy says so, the hook uses that digest
    assert f"offline: using the file://{archive} jammy Release digest seen last" in text
    assert "debootstrap: offline" not in text, "the hook must take dibpy's digest"
