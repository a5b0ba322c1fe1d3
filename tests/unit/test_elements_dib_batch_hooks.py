"""Host-side hooks of the elements taken over from diskimage-builder, run for real on
temporary trees (no root needed): apt-preferences, element-manifest,
cleanup-kernel-initrd and the early variable checks.  What they do in a real build is
in tests/integration/test_elements_dib_batch.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

ELEMENTS = REPO / "elements"
BASE_ENV = {"PATH": os.environ["PATH"], "HOME": "/nonexistent", "LC_ALL": "C"}


def hook(rel: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ELEMENTS / rel)], env={**BASE_ENV, **env}, capture_output=True, text=True
    )


def test_apt_preferences_reads_both_manifest_formats(tmp_path: Path) -> None:
    m = tmp_path / "manifest"
    m.write_text("# a comment\n\nzlib1g:amd64 1:1.2.13 amd64\nii  less  590-2  amd64  pager\n")
    r = hook("apt-preferences/extra-data.d/99-apt-preferences", TARGET_ROOT=str(tmp_path),
             DIB_DPKG_MANIFEST=str(m))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "etc/apt/preferences").read_text() == (
        "Package: zlib1g\nPin: version 1:1.2.13\nPin-Priority: 1001\n\n"
        "Package: less\nPin: version 590-2\nPin-Priority: 1001\n\n"
    )
    assert "pinned 2 packages" in r.stdout


@pytest.mark.parametrize("content", [None, "# only a comment\n\n"])
def test_apt_preferences_bad_manifest_is_one_line(tmp_path: Path, content: str | None) -> None:
    m = tmp_path / "manifest"
    if content is not None:
        m.write_text(content)
    r = hook("apt-preferences/extra-data.d/99-apt-preferences", TARGET_ROOT=str(tmp_path),
             DIB_DPKG_MANIFEST=str(m))  # fmt: skip
    assert r.returncode != 0
    assert r.stderr.count("\n") == 1 and f"DIB_DPKG_MANIFEST={m}" in r.stderr
    assert not list(tmp_path.glob("etc/apt/preferences*"))


def test_apt_preferences_unset_writes_nothing(tmp_path: Path) -> None:
    r = hook("apt-preferences/extra-data.d/99-apt-preferences", TARGET_ROOT=str(tmp_path))
    assert r.returncode == 0 and not (tmp_path / "etc").exists()


def test_element_manifest_path(tmp_path: Path) -> None:
    r = hook("element-manifest/extra-data.d/75-element-manifest", TARGET_ROOT=str(tmp_path),
             IMAGE_ELEMENT="base vm debian-minimal",
             DIB_ELEMENT_MANIFEST_PATH="/usr/share/build/elements.txt")  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = tmp_path / "usr/share/build/elements.txt"
    assert out.read_text() == "base\nvm\ndebian-minimal\n"
    assert not (tmp_path / "etc").exists()


def boot(root: Path, *names: str) -> Path:
    (root / "boot").mkdir(parents=True)
    for n in names:
        (root / "boot" / n).write_text(n)
    return root / "boot"


def test_cleanup_kernel_initrd_honours_the_kernel_pattern(tmp_path: Path) -> None:
    b = boot(tmp_path, "vmlinuz-5.10.0-1-amd64", "initrd.img-5.10.0-1-amd64",
             "vmlinuz-6.1.0-2-amd64", "initrd.img-6.1.0-2-amd64", "config-6.1.0-2-amd64",
             "vmlinuz-6.1.0-2-amd64.efi.signed", "vmlinuz-6.1.0-3-amd64",
             "initrd.img-6.1.0-3-amd64")  # fmt: skip
    r = hook("cleanup-kernel-initrd/cleanup.d/99-cleanup-kernel-initrd",
             TARGET_ROOT=str(tmp_path), _LIB=str(REPO / "dibpy/lib"),
             DIB_BAREMETAL_KERNEL_PATTERN="vmlinuz-6.1.0-2-amd64")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in b.iterdir()) == [
        "config-6.1.0-2-amd64", "initrd.img-6.1.0-2-amd64", "vmlinuz-6.1.0-2-amd64",
        "vmlinuz-6.1.0-2-amd64.efi.signed",
    ]  # fmt: skip


def test_cleanup_kernel_initrd_without_a_kernel(tmp_path: Path) -> None:
    boot(tmp_path, "grub")
    r = hook("cleanup-kernel-initrd/cleanup.d/99-cleanup-kernel-initrd",
             TARGET_ROOT=str(tmp_path), _LIB=str(REPO / "dibpy/lib"))  # fmt: skip
    assert r.returncode == 0 and "nothing to do" in r.stdout
    assert (tmp_path / "boot/grub").exists()


@pytest.mark.parametrize(
    ("value", "ok"), [("", False), (" , ", False), ("- /dev/sda1\n- /dev/vda3\n", True)]
)
def test_growpart_devices_are_required(value: str, ok: bool) -> None:
    r = hook("cloud-init-growpart/root.d/05-cloud-init-growpart-check",
             DIB_CLOUD_INIT_GROWPART_DEVICES=value)  # fmt: skip
    assert (r.returncode == 0) is ok
    if not ok:
        assert r.stderr.count("\n") == 1 and "DIB_CLOUD_INIT_GROWPART_DEVICES" in r.stderr


def test_autoupdates_picks_the_family_variable(tmp_path: Path) -> None:
    conf = tmp_path / "automatic.conf"
    conf.write_text("[commands]\napply_updates = yes\n")
    hooks = tmp_path / "hooks"
    rel = "autoupdates/root.d/05-autoupdates-config"
    r = hook(rel, DISTRO_NAME="centos", TMP_HOOKS_PATH=str(hooks), DIB_DEB_UPDATES_CONF=str(conf))
    assert r.returncode != 0 and "DIB_YUM_UPDATES_CONF" in r.stderr
    r = hook(rel, DISTRO_NAME="centos", TMP_HOOKS_PATH=str(hooks), DIB_YUM_UPDATES_CONF=str(conf))
    assert r.returncode == 0, r.stderr
    assert (hooks / "autoupdates/config").read_text() == conf.read_text()
    r = hook(rel, DISTRO_NAME="gentoo", TMP_HOOKS_PATH=str(tmp_path / "other"))
    assert r.returncode == 0 and not (tmp_path / "other").exists()


@pytest.mark.parametrize(
    ("distro", "elements", "ok"),
    [("debian", "base debian", True), ("centos", "base centos", False),
     ("centos", "base centos dracut-regenerate", True)],
)  # fmt: skip
def test_iscsi_boot_red_hat_needs_dracut_regenerate(distro: str, elements: str, ok: bool) -> None:
    r = hook("iscsi-boot/extra-data.d/50-iscsi-boot-check", DISTRO_NAME=distro,
             IMAGE_ELEMENT=elements)  # fmt: skip
    assert (r.returncode == 0) is ok
    if not ok:
        assert r.stderr.count("\n") == 1 and "dracut-regenerate" in r.stderr


# --- the same metadata as diskimage-builder's elements (its release as the oracle) ---

BATCH = [
    "modprobe", "disable-nouveau", "sysctl", "apt-sources", "apt-conf", "apt-preferences",
    "cloud-init", "cloud-init-nocloud", "cloud-init-growpart", "cloud-init-disable-resizefs",
    "local-config", "element-manifest", "posix", "cleanup-kernel-initrd", "dib-python",
    "pypi", "pip-cache", "autoupdates", "fail2ban", "disable-selinux", "nm-dhcp-ib-interfaces",
    "dkms", "iscsi-boot", "openstack-ci-mirrors", "block-device-efi-4k",
]  # fmt: skip


def words(path: Path) -> set[str]:
    return set(path.read_text().split()) if path.is_file() else set()


def debian_packages(element: Path) -> set[str]:
    """The Debian packages an element's package-installs.yaml installs, through its pkg-map."""
    f = element / "package-installs.yaml"
    if not f.is_file():
        return set()
    names = yaml.safe_load(f.read_text()) or {}
    m = element / "pkg-map"
    pmap = json.loads(m.read_text()) if m.is_file() else {}
    family = pmap.get("family", {}).get("debian", {})
    default = pmap.get("default", {})
    out: set[str] = set()
    for n in names:
        out.update(str(family.get(n, default.get(n, n))).split())
    return out


@pytest.mark.parametrize("name", BATCH)
def test_same_deps_provides_variables_and_packages_as_diskimage_builder(name: str) -> None:
    from tests.dibref import dib_elements

    dib, ours = dib_elements() / name, ELEMENTS / name
    for meta in ("element-deps", "element-provides"):
        assert words(ours / meta) == words(dib / meta), meta
    dib_vars = set(re.findall(r"\bDIB_[A-Z0-9_]*[A-Z0-9]", (dib / "README.rst").read_text()))
    our_vars = set(re.findall(r"\bDIB_[A-Z0-9_]*[A-Z0-9]", (ours / "README.rst").read_text()))
    assert dib_vars <= our_vars
    assert debian_packages(ours) == debian_packages(dib)
    # bin/ commands of the same names
    assert words_of_dir(ours / "bin") == words_of_dir(dib / "bin")


def words_of_dir(d: Path) -> set[str]:
    return {p.name for p in d.iterdir()} if d.is_dir() else set()


# --- openstack-ci-mirrors: only with the gate's mirror_info.sh ---

CI_ENV = "openstack-ci-mirrors/environment.d/11-openstack-ci-mirrors.bash"
CI_VARS = ("DIB_DISTRIBUTION_MIRROR", "DIB_DEBOOTSTRAP_EXTRA_ARGS", "DIB_EPEL_MIRROR",
           "DIB_DISTRIBUTION_MIRROR_UBUNTU_IGNORE", "DIB_YUM_MINIMAL_BOOTSTRAP_REPOS")  # fmt: skip


def ci_env(info: Path, **env: str) -> dict[str, str]:
    """The CI_VARS after sourcing the environment.d file under set -eu."""
    script = f"set -eu; source {ELEMENTS / CI_ENV}; " + "; ".join(
        f'echo "{v}=${{{v}-<unset>}}"' for v in CI_VARS
    )
    r = subprocess.run(["bash", "-c", script], env={**BASE_ENV, "DIB_OS_CI_MIRROR_INFO": str(info),
                       **env}, capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0 and r.stderr == "", r.stderr
    return dict(ln.split("=", 1) for ln in r.stdout.splitlines())


def mirror_info(tmp_path: Path) -> Path:
    info = tmp_path / "mirror_info.sh"
    info.write_text(
        "export NODEPOOL_DEBIAN_MIRROR=http://gate.invalid/debian\n"
        "export NODEPOOL_UBUNTU_MIRROR=http://gate.invalid/ubuntu\n"
        "export NODEPOOL_UBUNTU_PORTS_MIRROR=http://gate.invalid/ubuntu-ports\n"
        "export NODEPOOL_CENTOS_MIRROR=http://gate.invalid/centos\n"
        "export NODEPOOL_EPEL_MIRROR=http://gate.invalid/epel\n"
    )
    return info


def test_openstack_ci_mirrors_changes_nothing_outside_the_gate(tmp_path: Path) -> None:
    got = ci_env(tmp_path / "absent.sh", DISTRO_NAME="debian", DIB_DISTRIBUTION_MIRROR="http://m")
    assert got == {v: "<unset>" for v in CI_VARS} | {"DIB_DISTRIBUTION_MIRROR": "http://m"}
    root = tmp_path / "root"
    (root / "etc/apt/apt.conf.d").mkdir(parents=True)
    r = hook("openstack-ci-mirrors/root.d/10-openstack-ci-apt-unsigned", TARGET_ROOT=str(root),
             DIB_OS_CI_MIRROR_INFO=str(tmp_path / "absent.sh"))  # fmt: skip
    assert r.returncode == 0 and not any((root / "etc/apt/apt.conf.d").iterdir())
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    r = hook("openstack-ci-mirrors/extra-data.d/75-openstack-ci-mirror-info",
             TMP_HOOKS_PATH=str(hooks),
             DIB_OS_CI_MIRROR_INFO=str(tmp_path / "absent.sh"))  # fmt: skip
    assert r.returncode == 0 and not any(hooks.iterdir())


@pytest.mark.parametrize(
    ("env", "mirror", "gpg", "epel"),
    [
        ({"DISTRO_NAME": "debian", "ARCH": "amd64"}, "http://gate.invalid/debian", True, False),
        ({"DISTRO_NAME": "ubuntu", "ARCH": "amd64"}, "http://gate.invalid/ubuntu", True, False),
        ({"DISTRO_NAME": "ubuntu", "ARCH": "arm64"}, "http://gate.invalid/ubuntu-ports", True,
         False),
        ({"DISTRO_NAME": "centos", "DIB_RELEASE": "9-stream"}, "http://gate.invalid/centos",
         False, True),
        # a release the gate does not mirror keeps the mirror already chosen
        ({"DISTRO_NAME": "centos", "DIB_RELEASE": "8-stream"}, "http://m", False, False),
    ],
)  # fmt: skip
def test_openstack_ci_mirrors_in_the_gate(
    tmp_path: Path, env: dict[str, str], mirror: str, gpg: bool, epel: bool
) -> None:
    got = ci_env(mirror_info(tmp_path), DIB_DISTRIBUTION_MIRROR="http://m",
                 DIB_DEBOOTSTRAP_EXTRA_ARGS="--variant=minbase", **env)  # fmt: skip
    assert got["DIB_DISTRIBUTION_MIRROR"] == mirror
    want_args = "--variant=minbase --no-check-gpg" if gpg else "--variant=minbase"
    assert got["DIB_DEBOOTSTRAP_EXTRA_ARGS"] == want_args
    assert got["DIB_EPEL_MIRROR"] == ("http://gate.invalid/epel" if epel else "<unset>")
    assert got["DIB_DISTRIBUTION_MIRROR_UBUNTU_IGNORE"] == "(universe|multiverse)"


def test_openstack_ci_mirrors_gate_files(tmp_path: Path) -> None:
    info = mirror_info(tmp_path)
    repos = tmp_path / "repos"
    repos.mkdir()
    got = ci_env(info, DISTRO_NAME="centos", DIB_RELEASE="9-stream", DIB_OS_CI_YUM_REPOS=str(repos))
    assert got["DIB_YUM_MINIMAL_BOOTSTRAP_REPOS"] == f"{repos}/centos-minimal/9-stream/yum.repos.d"
    # sourced twice (every hook sources environment.d), --no-check-gpg is given once
    twice = subprocess.run(
        ["bash", "-c", f"set -eu; source {ELEMENTS / CI_ENV}; source {ELEMENTS / CI_ENV}; "
         'echo "$DIB_DEBOOTSTRAP_EXTRA_ARGS"'],
        env={**BASE_ENV, "DIB_OS_CI_MIRROR_INFO": str(info), "DISTRO_NAME": "debian"},
        capture_output=True, text=True,
    )  # fmt: skip
    assert twice.stdout == "--no-check-gpg\n", twice.stderr
    root = tmp_path / "root"
    (root / "etc/apt/apt.conf.d").mkdir(parents=True)
    r = hook("openstack-ci-mirrors/root.d/10-openstack-ci-apt-unsigned", TARGET_ROOT=str(root),
             DIB_OS_CI_MIRROR_INFO=str(info))  # fmt: skip
    assert r.returncode == 0, r.stderr
    conf = root / "etc/apt/apt.conf.d/99unauthenticated"
    assert conf.read_text() == (
        'APT::Get::AllowUnauthenticated "true";\nAcquire::AllowInsecureRepositories "true";\n'
    )
    assert conf.stat().st_mode & 0o777 == 0o644
    # apt itself reads the file
    r2 = subprocess.run(["apt-config", "-c", str(conf), "dump", "APT::Get::AllowUnauthenticated"],
                        capture_output=True, text=True)  # fmt: skip
    assert 'APT::Get::AllowUnauthenticated "true";' in r2.stdout, r2.stderr
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    r = hook("openstack-ci-mirrors/extra-data.d/75-openstack-ci-mirror-info",
             TMP_HOOKS_PATH=str(hooks), DIB_OS_CI_MIRROR_INFO=str(info))  # fmt: skip
    assert r.returncode == 0 and (hooks / "mirror_info.sh").read_text() == info.read_text()
