"""centos7 / centos: the root filesystem extracted from a cloud image, without device-mapper.

CentOS's own images cannot be downloaded here, so each test builds a small cloud-style
image itself: an MBR disk with an EFI system partition (FAT, written with mtools), a
/boot partition and a larger ext4 root partition holding a fake CentOS (its release
files, the host's bash and coreutils so the chroot phases run, and stub ``yum``/``rpm``
that record their calls).  The real pipeline then builds from it, with
``DIB_LOCAL_IMAGE`` or through ``DIB_CLOUD_IMAGES`` (a file:// directory with a checksum
list, which exercises the download and checksum path of cache-url), and the tests check
the extracted tree, the package manager calls and that no loop device or mount is left.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, chroot_works, write

DIC = [sys.executable, str(REPO / "bin" / "disk-image-create")]
MIB = 1024 * 1024
HOST_TOOLS = [
    "bash",
    "sh",
    "cat",
    "env",
    "ls",
    "mkdir",
    "rm",
    "touch",
    "sleep",
    "id",
    "tr",
    "sort",
    "head",
    "tail",
    "basename",
    "dirname",
    "sed",
    "grep",
    "awk",
    "mktemp",
    "cp",
    "mv",
    "ln",
    "chmod",
    "chown",
    "readlink",
    "cut",
    "wc",
    "find",
    "xargs",
    "install",
    "tee",
    "rmdir",
    "date",
    "uname",
    "stat",
    "true",
    "false",
    "printf",
]

STUB_YUM = """#!/bin/bash
echo "$(basename "$0") $*" >> /var/lib/pm-calls
"""
STUB_GRUB_INSTALL = """#!/bin/bash
echo "grub2-install $*" >> /var/lib/pm-calls
"""
STUB_GRUB_MKCONFIG = """#!/bin/bash
echo "grub2-mkconfig $*" >> /var/lib/pm-calls
. /etc/default/grub
echo "linux16 /vmlinuz-3.10.0-fake root=$GRUB_DEVICE $GRUB_CMDLINE_LINUX" > "$2"
"""
STUB_RPM = """#!/bin/bash
echo "rpm $*" >> /var/lib/pm-calls
exit 1  # nothing is installed
"""


def copy_with_libs(root: Path, binary: str) -> None:
    path = shutil.which(binary)
    assert path, f"{binary} not on the host"
    dest = root / "usr/bin" / binary
    if not dest.exists():
        shutil.copy2(Path(path).resolve(), dest)
    ldd = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
    for word in ldd.split():
        if word.startswith("/") and Path(word).exists():
            lib = root / word.lstrip("/")
            lib.parent.mkdir(parents=True, exist_ok=True)
            if not lib.exists():
                shutil.copy2(Path(word).resolve(), lib)


def fake_centos_tree(root: Path, release: str = "7") -> None:
    for d in (
        "usr/bin",
        "usr/sbin",
        "usr/lib",
        "usr/local/bin",
        "etc",
        "tmp",
        "var/log",
        "var/lib",
        "root",
        "boot",
        "dev",
    ):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    for link, to in (("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib")):
        (root / link).symlink_to(to)
    if Path("/lib64").exists():
        (root / "usr/lib64").mkdir(exist_ok=True)
        (root / "lib64").symlink_to("usr/lib64")
    for b in HOST_TOOLS:
        copy_with_libs(root, b)
    write(
        root / "etc/os-release",
        f'NAME="CentOS Linux"\nVERSION="{release}"\nID="centos"\nID_LIKE="rhel fedora"\n'
        f'VERSION_ID="{release}"\nPRETTY_NAME="CentOS Linux {release} (fake for tests)"\n',
    )
    write(root / "etc/redhat-release", f"CentOS Linux release {release} (fake)\n")
    write(root / "etc/centos-release", f"CentOS Linux release {release} (fake)\n")
    write(root / "etc/passwd", "root:x:0:0:root:/root:/bin/bash\n")
    write(root / "etc/group", "root:x:0:\n")
    write(root / "etc/fstab", "UUID=0b5d0d8e-fake-cloud-root / xfs defaults 0 0\n")
    write(root / "etc/selinux/config", "SELINUX=enforcing\nSELINUXTYPE=targeted\n")
    write(root / "etc/cloud-image-marker", "from the cloud image root\n")
    write(root / "usr/lib/grub/i386-pc/modinfo.sh", "# as grub2-pc-modules has\n")
    write(root / "usr/bin/yum", STUB_YUM, 0o755)
    write(root / "usr/bin/rpm", STUB_RPM, 0o755)
    write(root / "usr/sbin/grub2-install", STUB_GRUB_INSTALL, 0o755)
    write(root / "usr/sbin/grub2-mkconfig", STUB_GRUB_MKCONFIG, 0o755)
    write(root / "etc/default/grub", 'GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX="rhgb quiet"\n')


def mkfs_ext4(tree: Path, out: Path, size: int, label: str) -> None:
    with open(out, "wb") as f:
        f.truncate(size)
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-L", label, "-d", str(tree), str(out)],
        check=True,
        capture_output=True,
    )


def make_cloud_image(
    workdir: Path, *, fmt: str = "qcow2", root_type: str = "83", release: str = "7"
) -> Path:
    """An MBR disk: p1 ESP (FAT), p2 /boot (ext4), p3 the root (ext4, the largest)."""
    tree = workdir / "tree"
    fake_centos_tree(tree, release)
    boot = workdir / "boot-tree"
    write(boot / "vmlinuz-3.10.0-fake.x86_64", "not a kernel\n")
    write(boot / "initramfs-3.10.0-fake.x86_64.img", "not an initramfs\n")
    write(boot / "grub2/grub.cfg", "# fake\n")
    esp_tree = workdir / "esp"
    write(esp_tree / "EFI/centos/grubx64.efi", "fake efi binary\n")

    esp, bootfs, rootfs = (workdir / n for n in ("esp.img", "boot.img", "root.img"))
    subprocess.run(["mkfs.vfat", "-C", str(esp), str(8 * 1024)], check=True, capture_output=True)
    subprocess.run(
        ["mcopy", "-s", "-i", str(esp), str(esp_tree / "EFI"), "::/"],
        check=True,
        capture_output=True,
    )
    mkfs_ext4(boot, bootfs, 16 * MIB, "boot")
    mkfs_ext4(tree, rootfs, 96 * MIB, "root")

    raw = workdir / "cloud.raw"
    parts = [(esp, "ef"), (bootfs, "83"), (rootfs, root_type)]
    start = MIB
    script = ["label: dos"]
    for img, ptype in parts:
        size = img.stat().st_size
        script.append(f"start={start // 512}, size={size // 512}, type={ptype}")
        start += size
    with open(raw, "wb") as f:
        f.truncate(start + MIB)
    subprocess.run(
        ["sfdisk", "-q", str(raw)], input="\n".join(script) + "\n", text=True, check=True
    )
    start = MIB
    for img, _ in parts:
        subprocess.run(
            ["dd", f"if={img}", f"of={raw}", "bs=1M", f"seek={start // MIB}", "conv=notrunc"],
            check=True,
            capture_output=True,
        )
        start += img.stat().st_size
    if fmt == "raw":
        return raw
    out = workdir / "cloud.qcow2"
    subprocess.run(
        ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(out)], check=True
    )
    raw.unlink()
    return out


def make_test_elements(tmp_path: Path) -> Path:
    els = tmp_path / "test-elements"
    write(els / "snap/README.rst", "Copy the finished tree to $SNAP_OUT.\n")
    write(
        els / "snap/cleanup.d/99-snap",
        "#!/bin/bash\nset -eu -o pipefail\n"
        'cp -a "$TARGET_ROOT" "$SNAP_OUT"\n'
        'env | sort > "$SNAP_OUT.env"\n',
        0o755,
    )
    write(els / "snap/package-installs.yaml", "generic-editor:\nnever-here:\n  uninstall: true\n")
    write(els / "snap/pkg-map", '{"family": {"redhat": {"generic-editor": "vim-minimal"}}}\n')
    return els


def build(
    tmp_path: Path, elements: list[str], **env: str
) -> tuple[subprocess.CompletedProcess[str], Path]:
    snap = tmp_path / "snap"
    (tmp_path / "tmp").mkdir(exist_ok=True)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DIB_")}
    full_env.update(
        ELEMENTS_PATH=str(make_test_elements(tmp_path)),
        TMP_DIR=str(tmp_path / "tmp"),
        DIB_IMAGE_CACHE=str(tmp_path / "cache"),
        SNAP_OUT=str(snap),
        **env,
    )
    final = [] if "vm" in elements else ["no-final-image"]
    r = subprocess.run(
        [*DIC, "-n", "-o", str(tmp_path / "out" / "img"), *elements, *final, "snap"],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return r, snap


@pytest.fixture(autouse=True)
def _need_chroot_and_tools() -> None:
    reason = chroot_works()
    missing = [
        t for t in ("mkfs.ext4", "mkfs.vfat", "mcopy", "qemu-img", "sfdisk") if not shutil.which(t)
    ]
    if missing:
        reason = f"missing host tools: {', '.join(missing)}"
    if reason:
        pytest.skip(reason)


def pm_calls(snap: Path) -> list[str]:
    return (snap / "var/lib/pm-calls").read_text().splitlines()


@pytest.mark.parametrize("fmt", ["qcow2", "raw"])
def test_centos7_root_from_local_image(tmp_path: Path, fmt: str, no_leaks: None) -> None:
    image = make_cloud_image(tmp_path / "img", fmt=fmt)
    r, snap = build(tmp_path, ["centos7", "selinux-permissive", "epel"], DIB_LOCAL_IMAGE=str(image))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    # the cloud image's root, its /boot partition and its ESP, extracted
    assert (snap / "etc/cloud-image-marker").read_text() == "from the cloud image root\n"
    assert "CentOS" in (snap / "etc/redhat-release").read_text()
    assert (snap / "boot/vmlinuz-3.10.0-fake.x86_64").read_text() == "not a kernel\n"
    assert (snap / "boot/grub2/grub.cfg").exists()
    assert (snap / "boot/efi/EFI/centos/grubx64.efi").read_text() == "fake efi binary\n"
    assert "cloud-root" not in (snap / "etc/fstab").read_text()
    # the chroot phases ran with yum: update, package-installs (mapped for the redhat
    # family), the epel package, and the cache cleanup
    calls = pm_calls(snap)
    assert "yum -y update" in calls
    # (git from source-repositories, which centos7 depends on as diskimage-builder's did)
    assert "yum -y install vim-minimal git-core" in calls
    assert "yum -y install epel-release" in calls
    assert "yum clean all" in calls
    assert "rpm -q --quiet never-here" in calls  # uninstall: only if installed
    # selinux-permissive, and a relabel at first boot (rpm-distro)
    assert "SELINUX=permissive" in (snap / "etc/selinux/config").read_text().splitlines()
    assert (snap / ".autorelabel").exists()
    env = dict(
        line.split("=", 1)
        for line in (snap.parent / "snap.env").read_text().splitlines()
        if "=" in line
    )
    assert env["DISTRO_NAME"] == "centos"
    assert env["DIB_RELEASE"] == "7"
    assert env["YUM"] == "yum"
    assert "extract-image: root filesystem at offset" in r.stdout + r.stderr


def test_centos_stream_uses_dnf(tmp_path: Path, no_leaks: None) -> None:
    image = make_cloud_image(tmp_path / "img", release="9")
    r, snap = build(tmp_path, ["centos"], DIB_LOCAL_IMAGE=str(image), DIB_AVOID_PACKAGES_UPDATE="1")
    assert r.returncode == 0, r.stderr[-5000:]
    env = dict(
        line.split("=", 1)
        for line in (snap.parent / "snap.env").read_text().splitlines()
        if "=" in line
    )
    assert env["DIB_RELEASE"] == "9-stream"
    # YUM=dnf but the image has only yum: install-packages falls back to it
    calls = pm_calls(snap)
    # (git from source-repositories, which centos depends on as in diskimage-builder)
    assert "yum -y install vim-minimal git-core" in calls
    assert not any("update" in c for c in calls)  # DIB_AVOID_PACKAGES_UPDATE=1


def _cloud_dir(tmp_path: Path) -> tuple[Path, str]:
    image = make_cloud_image(tmp_path / "img")
    site = tmp_path / "site"
    site.mkdir()
    name = "CentOS-7-x86_64-GenericCloud.qcow2"
    shutil.move(image, site / name)
    digest = hashlib.sha256((site / name).read_bytes()).hexdigest()
    return site, f"{digest}  {name}\n{'0' * 64}  CentOS-7-other.qcow2\n"


def test_centos7_download_verified_and_cached(tmp_path: Path, no_leaks: None) -> None:
    site, sums = _cloud_dir(tmp_path)
    (site / "sha256sum.txt").write_text(sums)
    r, snap = build(tmp_path, ["centos7"], DIB_CLOUD_IMAGES=f"file://{site}")
    assert r.returncode == 0, r.stderr[-5000:]
    assert (snap / "etc/cloud-image-marker").exists()
    cached = list((tmp_path / "cache/cloud-images").glob("*-CentOS-7-x86_64-GenericCloud.qcow2"))
    assert len(cached) == 1
    assert "verified (sha256" in r.stdout + r.stderr
    # offline, the site gone: the cached image is used and still verified
    shutil.rmtree(snap)
    shutil.rmtree(site)
    r, snap = build(tmp_path, ["centos7"], DIB_CLOUD_IMAGES=f"file://{site}", DIB_OFFLINE="1")
    assert r.returncode == 0, r.stderr[-5000:]
    assert (snap / "etc/cloud-image-marker").exists()


def test_centos7_download_with_a_wrong_checksum_fails(tmp_path: Path, no_leaks: None) -> None:
    site, sums = _cloud_dir(tmp_path)
    (site / "sha256sum.txt").write_text("f" * 64 + "  CentOS-7-x86_64-GenericCloud.qcow2\n")
    r, snap = build(tmp_path, ["centos7"], DIB_CLOUD_IMAGES=f"file://{site}")
    assert r.returncode != 0
    assert "checksum mismatch" in r.stderr
    assert not snap.exists()
    assert not list((tmp_path / "cache/cloud-images").glob("*.qcow2"))


def test_centos7_needs_an_image_source(tmp_path: Path, no_leaks: None) -> None:
    r, _ = build(tmp_path, ["centos7"])
    assert r.returncode != 0
    assert "set DIB_CLOUD_IMAGES" in r.stderr


def test_lvm_root_is_refused_with_the_reason(tmp_path: Path, no_leaks: None) -> None:
    image = make_cloud_image(tmp_path / "img", root_type="8e")
    r, snap = build(tmp_path, ["centos7"], DIB_LOCAL_IMAGE=str(image))
    assert r.returncode != 0
    assert "LVM, which cannot be read without device-mapper" in r.stderr
    assert not snap.exists()


def test_centos7_vm_image_with_redhat_grub2(tmp_path: Path, no_leaks: None) -> None:
    """A whole disk image: block device, fstab, and GRUB through the grub2-* tools."""
    image = make_cloud_image(tmp_path / "img")
    r, snap = build(tmp_path, ["centos7", "vm"], DIB_LOCAL_IMAGE=str(image))
    assert r.returncode == 0, r.stderr[-5000:]
    out = tmp_path / "out" / "img.qcow2"
    assert out.is_file()
    calls = pm_calls(snap)
    # bootloader's packages mapped for the redhat family, then grub2-install/-mkconfig
    assert "yum -y install grub2-pc grub2-tools vim-minimal git-core" in calls
    assert any(c.startswith("grub2-install --target=i386-pc --force /dev/loop") for c in calls)
    assert "grub2-mkconfig -o /boot/grub2/grub.cfg" in calls
    cfg = (snap / "boot/grub2/grub.cfg").read_text()
    assert "root=LABEL=cloudimg-rootfs" in cfg and "console=ttyS0,115200" in cfg
    assert "LABEL=cloudimg-rootfs" in (snap / "etc/fstab").read_text()
    # the image holds the extracted tree
    info = subprocess.run(["qemu-img", "info", str(out)], capture_output=True, text=True)
    assert "qcow2" in info.stdout
