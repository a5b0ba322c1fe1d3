"""The hooks of dracut-regenerate, fips, python-brickclient, uboot, ubuntu-signed and zipl,
run for real against temporary trees.

Chroot hooks run in a tree whose ``/usr`` is an overlay over the host's (in a private
mount namespace, so nothing outlives the test), with its own ``/etc``, ``/boot`` and
``/tmp``: what a hook changes is what the tree shows, including the overlay's upper
directory for ``/usr``.  A program that cannot act here (dracut on a stand-in kernel, zipl
off s390x, fips-mode-setup on Debian, mkimage when u-boot-tools is missing) is a stand-in
on PATH that records its arguments; where the real program is installed it is used too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, mounts_under, write

ELEMENTS = REPO / "elements"
LIB = REPO / "dibpy" / "lib"
PATH = "/stand-ins:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"


def namespaces_work() -> str | None:
    if os.geteuid() != 0:
        return "needs root (a mount namespace and chroot)"
    r = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    return None if r.returncode == 0 else f"unshare --mount fails here: {r.stderr.strip()}"


def make_tree(tmp_path: Path) -> Path:
    """TMP_PATH/tree, for in_chroot (skips the test where namespaces do not work)."""
    why = namespaces_work()
    if why:
        pytest.skip(why)
    root = tmp_path / "tree"
    for d in ("usr", "etc", "boot", "tmp", "root", "var/tmp", "stand-ins", "dev"):
        (root / d).mkdir(parents=True)
    for link in ("bin", "sbin", "lib", "lib64"):
        (root / link).symlink_to(f"usr/{link}")
    (tmp_path / "upper").mkdir()
    (tmp_path / "work").mkdir()
    (root / "dev/null").touch()  # bound to the host's /dev/null below
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Path]:
    yield make_tree(tmp_path)
    assert not mounts_under(tmp_path), "the mount namespace took its mounts with it"


def upper(tree: Path) -> Path:
    """What the hook changed under /usr."""
    return tree.parent / "upper"


def stand_in(tree: Path, name: str, body: str = "") -> None:
    """A command recording its arguments in /tmp/NAME.calls, then running BODY."""
    write(
        tree / "stand-ins" / name,
        f'#!/bin/bash\nset -eu\necho "$*" >> /tmp/{name}.calls\n{body}\n',
        0o755,
    )


def calls(tree: Path, name: str) -> list[str]:
    f = tree / "tmp" / f"{name}.calls"
    return f.read_text().splitlines() if f.exists() else []


def in_chroot(tree: Path, hook: Path, **env: str) -> subprocess.CompletedProcess[str]:
    shutil.copy2(hook, tree / "tmp" / hook.name)
    t, u, w = tree, upper(tree), tree.parent / "work"
    setup = (
        f"mount -t overlay overlay -o lowerdir=/usr,upperdir={u},workdir={w} {t}/usr && "
        f'mount --bind /dev/null {t}/dev/null && exec chroot {t} "$@"'
    )
    argv = ["env", "-i", f"PATH={PATH}", *(f"{k}={v}" for k, v in env.items())]
    argv += [f"/tmp/{hook.name}"]
    try:
        return subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", setup, "sh", *argv],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
    finally:
        (tree / "tmp" / hook.name).unlink()


def on_host(hook: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"], "HOME": "/nonexistent", "LC_ALL": "C", "_LIB": str(LIB)}
    return subprocess.run(
        ["bash", str(hook)], env={**base, **env}, capture_output=True, text=True, check=False
    )


def one_line_error(r: subprocess.CompletedProcess[str], *words: str) -> None:
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert all(w in lines[0] for w in words), lines[0]


# ---------------------------------------------------------------- ubuntu-signed

SIGNED = ELEMENTS / "ubuntu-signed/post-install.d/90-signed-kernel-version"


def test_ubuntu_signed_records_the_newest_signed_kernel(tree: Path) -> None:
    for v in ("5.15.0-9-generic", "5.15.0-10-generic"):
        write(tree / f"boot/vmlinuz-{v}", "k")
        write(tree / f"boot/vmlinuz-{v}.efi.signed", "signed")
        write(tree / f"boot/initrd.img-{v}", "i")
    r = in_chroot(tree, SIGNED)
    assert r.returncode == 0, r.stderr
    record = tree / "dib-signed-kernel-version"
    assert record.read_text() == "DIB_SIGNED_KERNEL_VERSION=5.15.0-10-generic.efi.signed\n"
    # and the kernel the bootloader and baremetal pick is now the signed one
    r = subprocess.run(
        ["bash", "-c", f'source {LIB}/img-functions; select_boot_kernel_initrd "$1"; '
         'echo "$KERNEL $RAMDISK"', "sh", str(tree)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert r.stdout.split()[-2:] == [
        "vmlinuz-5.15.0-10-generic.efi.signed",
        "initrd.img-5.15.0-10-generic",
    ], r.stdout + r.stderr


def test_ubuntu_signed_without_a_signed_kernel_is_one_line(tree: Path) -> None:
    write(tree / "boot/vmlinuz-6.8.0-1-generic", "k")
    one_line_error(in_chroot(tree, SIGNED), "ubuntu-signed", ".efi.signed")
    assert not (tree / "dib-signed-kernel-version").exists()


# ---------------------------------------------------------------- fips

FIPS = ELEMENTS / "fips/pre-install.d/01-fips-mode"


def test_fips_runs_fips_mode_setup_on_the_red_hat_family(tree: Path) -> None:
    stand_in(tree, "fips-mode-setup", "mkdir -p /etc/crypto-policies; echo FIPS > "
             "/etc/crypto-policies/config")  # fmt: skip
    r = in_chroot(tree, FIPS, DISTRO_NAME="rocky")
    assert r.returncode == 0, r.stderr
    assert calls(tree, "fips-mode-setup") == ["--enable"]
    assert (tree / "etc/crypto-policies/config").read_text() == "FIPS\n"


def test_fips_without_fips_mode_setup_sets_the_policy_and_fips_1(tree: Path) -> None:
    stand_in(tree, "update-crypto-policies")
    r = in_chroot(tree, FIPS, DISTRO_NAME="rhel")
    assert r.returncode == 0, r.stderr
    assert calls(tree, "update-crypto-policies") == ["--set FIPS"]
    assert (tree / "etc/kernel/cmdline.d/50-fips.conf").read_text() == "fips=1\n"


@pytest.mark.parametrize("distro", ["ubuntu", "debian", "gentoo", "opensuse"])
def test_fips_unsupported_distribution_is_one_line(tree: Path, distro: str) -> None:
    stand_in(tree, "fips-mode-setup")
    one_line_error(in_chroot(tree, FIPS, DISTRO_NAME=distro), "fips:")
    assert calls(tree, "fips-mode-setup") == []


def test_fips_packages_only_on_the_red_hat_family() -> None:
    from dibpy.elements.model import load_yaml_or_json

    data = load_yaml_or_json(ELEMENTS / "fips/package-installs.yaml")
    assert set(data) == {"crypto-policies", "crypto-policies-scripts"}
    for item in data.values():
        assert "DISTRO_NAME != debian" in item["when"]


# ---------------------------------------------------------------- zipl

ZIPL_LINKS = ELEMENTS / "zipl/pre-install.d/10-zipl-kernel-links"
ZIPL = ELEMENTS / "zipl/finalise.d/50-zipl"


def test_zipl_keeps_kernel_links_in_boot(tree: Path) -> None:
    write(tree / "etc/kernel-img.conf", "do_symlinks = yes\nlink_in_boot = no\n")
    assert in_chroot(tree, ZIPL_LINKS).returncode == 0
    assert in_chroot(tree, ZIPL_LINKS).returncode == 0
    assert (tree / "etc/kernel-img.conf").read_text() == "do_symlinks = yes\nlink_in_boot = yes\n"


def test_zipl_writes_its_config_and_runs_on_the_whole_disk(tree: Path) -> None:
    # the stand-in runs the loop helper, as zipl does, and keeps what it says
    stand_in(tree, "zipl", "/lib/s390-tools/zipl_helper.loop > /tmp/helper.seen")
    r = in_chroot(tree, ZIPL, ARCH="s390x", IMAGE_BLOCK_DEVICE="/dev/loop7p1",
                  DIB_ROOT_LABEL="img-root", DIB_ZIPL_DEFAULT_CMDLINE="console=ttyS0")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert calls(tree, "zipl") == ["-V"]
    conf = (tree / "etc/zipl.conf").read_text()
    assert "image = /boot/vmlinuz\n" in conf and "ramdisk = /boot/initrd.img\n" in conf
    assert 'parameters = "root=LABEL=img-root console=ttyS0"' in conf
    seen = (tree / "tmp/helper.seen").read_text()
    assert "targetbase=/dev/loop7\n" in seen and "targettype=scsi\n" in seen
    # the helper is gone again (from the overlaid /usr/lib)
    assert not (upper(tree) / "lib/s390-tools/zipl_helper.loop").exists()


def test_zipl_on_another_architecture_is_one_line(tree: Path) -> None:
    stand_in(tree, "zipl")
    r = in_chroot(tree, ZIPL, ARCH="amd64", IMAGE_BLOCK_DEVICE="/dev/loop7")
    one_line_error(r, "zipl", "s390x", "ARCH=amd64")
    assert not (tree / "etc/zipl.conf").exists()


def test_zipl_replaces_the_bootloader() -> None:
    from dibpy.elements import find_library, resolve

    res = resolve(["debian-minimal", "vm", "block-device-mbr", "zipl"], find_library({}))
    assert "zipl" in res.names and "bootloader" not in res.names
    assert res.provided_by["bootloader"] == "zipl"


# ---------------------------------------------------------------- uboot

UBOOT = ELEMENTS / "uboot/cleanup.d/98-uboot"


def kernel_tree(root: Path) -> Path:
    write(root / "boot/vmlinuz-6.1.0-9-arm64", "KERNEL" * 100)
    write(root / "boot/initrd.img-6.1.0-9-arm64", "INITRD" * 100)
    return root


def fake_mkimage(bindir: Path) -> Path:
    write(bindir / "mkimage", '#!/bin/bash\necho "$*" >> "$MKIMAGE_LOG"\n'
          'out=${*: -1}; in=${*: -2:1}\n{ echo UIMAGE-HEADER; cat "$in"; } > "$out"\n',
          0o755)  # fmt: skip
    return bindir


def test_uboot_wraps_kernel_and_initrd_on_arm(tmp_path: Path) -> None:
    root = kernel_tree(tmp_path / "root")
    bindir = fake_mkimage(tmp_path / "bin")
    log = tmp_path / "mkimage.log"
    r = on_host(UBOOT, TARGET_ROOT=str(root), ARCH="arm64", UBOOT_KERNEL_ADDR="0x40080000",
                PATH=f"{bindir}:{os.environ['PATH']}", MKIMAGE_LOG=str(log))  # fmt: skip
    assert r.returncode == 0, r.stderr
    argv = [ln.split() for ln in log.read_text().splitlines()]
    assert argv[0][:12] == ["-A", "arm64", "-O", "linux", "-T", "kernel", "-C", "none",
                            "-a", "0x40080000", "-e", "0x80000"]  # fmt: skip
    assert argv[1][:8] == ["-A", "arm64", "-O", "linux", "-T", "ramdisk", "-C", "gzip"]
    kernel = (root / "boot/vmlinuz-6.1.0-9-arm64").read_text()
    assert kernel == "UIMAGE-HEADER\n" + "KERNEL" * 100
    assert (root / "boot/initrd.img-6.1.0-9-arm64").read_text().startswith("UIMAGE-HEADER\n")


def test_uboot_leaves_other_architectures_alone(tmp_path: Path) -> None:
    root = kernel_tree(tmp_path / "root")
    r = on_host(UBOOT, TARGET_ROOT=str(root), ARCH="amd64", PATH="/usr/bin:/bin")
    assert r.returncode == 0 and "nothing to do" in r.stdout
    assert (root / "boot/vmlinuz-6.1.0-9-arm64").read_text() == "KERNEL" * 100


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"UBOOT_KERNEL_EP": "here"}, ["UBOOT_KERNEL_EP=here"]),
        ({"PATH": "/nonexistent"}, ["mkimage", "u-boot-tools"]),
    ],
)
def test_uboot_bad_input_is_one_line(tmp_path: Path, env: dict[str, str], words: list[str]) -> None:
    root = kernel_tree(tmp_path / "root")
    bindir = fake_mkimage(tmp_path / "bin")
    full = {"TARGET_ROOT": str(root), "ARCH": "arm64", "MKIMAGE_LOG": str(tmp_path / "log"),
            "PATH": f"{bindir}:/usr/bin:/bin", **env}  # fmt: skip
    if env.get("PATH") == "/nonexistent":
        full["PATH"] = "/usr/bin:/bin" if shutil.which("mkimage") is None else "/nonexistent"
    r = subprocess.run(["/bin/bash", str(UBOOT)], env={**full, "_LIB": str(LIB)},
                       capture_output=True, text=True, check=False)  # fmt: skip
    one_line_error(r, "uboot:", *words)


def test_uboot_with_the_real_mkimage(tmp_path: Path) -> None:
    if shutil.which("mkimage") is None:
        pytest.skip("mkimage is not installed (Debian package u-boot-tools)")
    root = kernel_tree(tmp_path / "root")
    r = on_host(UBOOT, TARGET_ROOT=str(root), ARCH="arm64")
    assert r.returncode == 0, r.stderr
    info = subprocess.run(["mkimage", "-l", str(root / "boot/vmlinuz-6.1.0-9-arm64")],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "AArch64" in info and "Kernel" in info


# ---------------------------------------------------------------- dracut-regenerate

DRACUT_CONF = ELEMENTS / "dracut-regenerate/extra-data.d/50-dracut-conf"
DRACUT = ELEMENTS / "dracut-regenerate/finalise.d/50-dracut-regenerate"


def dracut_env() -> dict[str, str]:
    script = ELEMENTS / "dracut-regenerate/environment.d/10-dracut-regenerate"
    out = subprocess.run(["bash", "-c", f'source {script}; echo "$DIB_DRACUT_ENABLED_MODULES"'],
                         env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    return {"DIB_DRACUT_ENABLED_MODULES": out}


def test_dracut_conf_files_of_every_element_are_copied(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    other = tmp_path / "my-element"
    write(other / "dracut.conf.d/90-mine.conf", 'add_drivers+=" virtio_blk "\n')
    yaml_lines = f"disable-nouveau: {ELEMENTS / 'disable-nouveau'}\nmy-element: {other}\n"
    r = on_host(DRACUT_CONF, TMP_MOUNT_PATH=str(root), IMAGE_ELEMENT_YAML=yaml_lines)
    assert r.returncode == 0, r.stderr
    got = sorted(p.name for p in (root / "etc/dracut.conf.d").iterdir())
    assert got == ["90-mine.conf", "disable-nouveau.conf"]


def test_dracut_regenerate_adds_the_default_modules(tree: Path) -> None:
    stand_in(tree, "install-packages")
    stand_in(
        tree, "select-boot-kernel-initrd", "echo vmlinuz-6.1.0-9-amd64:initrd.img-6.1.0-9-amd64"
    )
    stand_in(tree, "dracut")
    r = in_chroot(tree, DRACUT, **dracut_env())
    assert r.returncode == 0, r.stderr
    assert calls(tree, "install-packages") == ["cryptsetup", "lvm2"]
    assert calls(tree, "dracut") == [
        "--force --add crypt lvm /boot/initrd.img-6.1.0-9-amd64 6.1.0-9-amd64"
    ]


def test_dracut_regenerate_with_only_conf_files(tree: Path) -> None:
    stand_in(
        tree, "select-boot-kernel-initrd", "echo vmlinuz-6.1.0-9-amd64:initrd.img-6.1.0-9-amd64"
    )
    stand_in(tree, "dracut")
    write(tree / "etc/dracut.conf.d/x.conf", "hostonly=no\n")
    r = in_chroot(tree, DRACUT, DIB_DRACUT_ENABLED_MODULES="")
    assert r.returncode == 0, r.stderr
    assert calls(tree, "dracut") == ["--force /boot/initrd.img-6.1.0-9-amd64 6.1.0-9-amd64"]


def test_dracut_regenerate_nothing_to_do(tree: Path) -> None:
    stand_in(tree, "dracut")
    r = in_chroot(tree, DRACUT, DIB_DRACUT_ENABLED_MODULES="[]")
    assert r.returncode == 0 and "nothing to do" in r.stdout, r.stderr
    assert calls(tree, "dracut") == []


@pytest.mark.parametrize("value", ["- name: [unclosed", "name: crypt"])
def test_dracut_regenerate_bad_variable_is_one_line(tree: Path, value: str) -> None:
    stand_in(tree, "dracut")
    r = in_chroot(tree, DRACUT, DIB_DRACUT_ENABLED_MODULES=value)
    one_line_error(r, "DIB_DRACUT_ENABLED_MODULES")
    assert calls(tree, "dracut") == []


# ---------------------------------------------------------------- python-brickclient

BRICK = ELEMENTS / "python-brickclient/post-install.d/55-brick-client-install"


def tiny_wheel(dest: Path) -> Path:
    """A local python-brick-cinderclient-ext wheel with a python-brickclient command."""
    name, ver = "python_brick_cinderclient_ext", "9.9.9"
    whl = dest / f"{name}-{ver}-py3-none-any.whl"
    dest.mkdir(parents=True)
    di = f"{name}-{ver}.dist-info"
    files = {
        "brick_probe.py": "def main():\n    print('brick probe')\n",
        f"{di}/METADATA": f"Metadata-Version: 2.1\nName: python-brick-cinderclient-ext\n"
        f"Version: {ver}\n",
        f"{di}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
        f"{di}/entry_points.txt": "[console_scripts]\npython-brickclient = brick_probe:main\n",
    }
    with zipfile.ZipFile(whl, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
        z.writestr(f"{di}/RECORD", "".join(f"{p},,\n" for p in files) + f"{di}/RECORD,,\n")
    return whl


def test_python_brickclient_venv_and_command(tree: Path) -> None:
    tiny_wheel(tree / "wheels")
    r = in_chroot(tree, BRICK, PIP_NO_INDEX="1", PIP_FIND_LINKS="/wheels",
                  PIP_DISABLE_PIP_VERSION_CHECK="1", HOME="/root")  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    venv = upper(tree) / "share/python-brickclient/venv"
    assert (venv / "bin/python-brickclient").is_file()
    link = upper(tree) / "local/bin/python-brickclient"
    assert os.readlink(link) == "/usr/share/python-brickclient/venv/bin/python-brickclient"
    # run twice: the second time is one clear line, not a half-reinstall
    r = in_chroot(tree, BRICK, PIP_NO_INDEX="1", PIP_FIND_LINKS="/wheels")
    one_line_error(r, "python-brickclient", "exists already")


def test_python_brickclient_without_the_command_is_one_line(tree: Path) -> None:
    whl = tiny_wheel(tree / "wheels")
    other = whl.with_name("python_brick_cinderclient_ext-9.9.8-py3-none-any.whl")
    with zipfile.ZipFile(whl) as src, zipfile.ZipFile(other, "w") as dst:
        for info in src.infolist():
            if not info.filename.endswith("entry_points.txt"):
                dst.writestr(info.filename.replace("9.9.9", "9.9.8"),
                             src.read(info).decode().replace("9.9.9", "9.9.8"))  # fmt: skip
    r = in_chroot(tree, BRICK, PIP_NO_INDEX="1", PIP_FIND_LINKS="/wheels",
                  DIB_PYTHON_BRICKCLIENT_SPEC="python-brick-cinderclient-ext==9.9.8")  # fmt: skip
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1].startswith("python-brickclient: installing")


# ---------------------------------------------------------------- lvm

LVM_CHECK = ELEMENTS / "lvm/root.d/10-lvm-check-distro"
LVM_ROOT = ELEMENTS / "lvm/finalise.d/60-lvm-root"


def lvm_tree(tree: Path, source: str, fstype: str = "ext4") -> None:
    stand_in(tree, "findmnt", f'echo "{source} {fstype}"')
    for name in ("pvs", f"fsck.{fstype}", "update-initramfs", "grub-mkconfig"):
        stand_in(tree, name)
    (tree / "boot/grub").mkdir(parents=True)


def test_lvm_root_gets_lvm_in_the_initramfs_and_grub(tree: Path) -> None:
    lvm_tree(tree, "/dev/mapper/vg-lv_root")
    write(tree / "etc/initramfs-tools/modules", "# modules\n")
    r = in_chroot(tree, LVM_ROOT)
    assert r.returncode == 0, r.stderr
    assert (tree / "etc/initramfs-tools/modules").read_text() == "# modules\nlvm2\n"
    cfg = tree / "etc/default/grub.d/60-lvm-root.cfg"
    assert cfg.read_text() == "GRUB_DEVICE=/dev/mapper/vg-lv_root\n"
    assert calls(tree, "update-initramfs") == ["-u -k all"]
    assert calls(tree, "grub-mkconfig") == ["-o /boot/grub/grub.cfg"]
    # a second run adds lvm2 once
    assert in_chroot(tree, LVM_ROOT).returncode == 0
    assert (tree / "etc/initramfs-tools/modules").read_text() == "# modules\nlvm2\n"


@pytest.mark.parametrize("source", ["/dev/loop0p1", "/dev/mapper/loop0p1"])
def test_lvm_leaves_a_root_that_is_not_on_lvm(tree: Path, source: str) -> None:
    lvm_tree(tree, source)
    r = in_chroot(tree, LVM_ROOT)
    assert r.returncode == 0, r.stderr
    assert calls(tree, "update-initramfs") == [] and not (tree / "etc/default/grub.d").exists()


def test_lvm_root_without_initramfs_tools_is_one_line(tree: Path) -> None:
    lvm_tree(tree, "/dev/mapper/vg-lv_root")
    one_line_error(in_chroot(tree, LVM_ROOT), "lvm:", "initramfs-tools")


def test_lvm_root_without_its_fsck_is_one_line(tree: Path) -> None:
    lvm_tree(tree, "/dev/mapper/vg-lv_root")
    (tree / "stand-ins/fsck.ext4").unlink()
    stand_in(tree, "findmnt", 'echo "/dev/mapper/vg-lv_root nosuchfs"')
    (tree / "etc/initramfs-tools").mkdir(parents=True)
    one_line_error(in_chroot(tree, LVM_ROOT), "fsck.nosuchfs")


@pytest.mark.parametrize(
    ("env", "ok"),
    [({"DISTRO_NAME": "ubuntu", "DIB_RELEASE": "noble"}, True),
     ({"DISTRO_NAME": "ubuntu", "DIB_RELEASE": "trusty"}, False),
     ({"DISTRO_NAME": "centos", "DIB_RELEASE": "9"}, False)],
)  # fmt: skip
def test_lvm_distribution_check(env: dict[str, str], ok: bool) -> None:
    r = on_host(LVM_CHECK, **env)
    if ok:
        assert r.returncode == 0, r.stderr
    else:
        one_line_error(
            r, "lvm:", env["DIB_RELEASE"] if env["DISTRO_NAME"] == "ubuntu" else "centos"
        )


# ---------------------------------------------------------------- selinux-fixfiles-restore

FIXFILES = ELEMENTS / "selinux-fixfiles-restore/cleanup.d/99-selinux-fixfiles-restore"
CONTEXTS = "etc/selinux/targeted/contexts/files/file_contexts"


def host_hook_over_tree(tree: Path, hook: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """A host-side hook with TARGET_ROOT=tree, the tree's /usr overlaid as in in_chroot."""
    u, w = upper(tree), tree.parent / "work"
    setup = (
        f"mount -t overlay overlay -o lowerdir=/usr,upperdir={u},workdir={w} {tree}/usr && "
        f'mount --bind /dev/null {tree}/dev/null && exec "$@"'
    )
    argv = ["env", "-i", f"PATH={os.environ['PATH']}", f"TARGET_ROOT={tree}",
            *(f"{k}={v}" for k, v in env.items()), "bash", str(hook)]  # fmt: skip
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", setup, "sh", *argv],
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip


def image_setfiles(tree: Path) -> None:
    """The image's setfiles: a stand-in in its /usr/sbin that records its arguments."""
    write(upper(tree) / "sbin/setfiles", '#!/bin/bash\necho "$*" >> /tmp/setfiles.calls\n', 0o755)


def test_fixfiles_labels_each_mounted_filesystem(tree: Path) -> None:
    write(tree / CONTEXTS, "/.* system_u:object_r:default_t:s0\n")
    image_setfiles(tree)
    r = host_hook_over_tree(
        tree, FIXFILES, DIB_MOUNTPOINTS="/|/boot|/boot/efi|/var|/tmp/in_target.d"
    )
    assert r.returncode == 0, r.stderr
    c = f"-F -x /{CONTEXTS}"
    assert calls(tree, "setfiles") == [f"{c} /", f"{c} /boot", f"{c} /var"]


def test_fixfiles_on_fedora_adds_m(tree: Path) -> None:
    write(tree / CONTEXTS, "\n")
    image_setfiles(tree)
    r = host_hook_over_tree(tree, FIXFILES, DISTRO_NAME="fedora", DIB_RELEASE="40")
    assert r.returncode == 0, r.stderr
    assert calls(tree, "setfiles") == [f"-F -m -x /{CONTEXTS} /"]


def test_fixfiles_without_a_policy_does_nothing(tree: Path) -> None:
    image_setfiles(tree)
    r = host_hook_over_tree(tree, FIXFILES)
    assert r.returncode == 0 and "nothing to relabel" in r.stdout
    assert calls(tree, "setfiles") == []


def test_fixfiles_without_setfiles_is_one_line(tmp_path: Path) -> None:
    write(tmp_path / CONTEXTS, "\n")
    one_line_error(on_host(FIXFILES, TARGET_ROOT=str(tmp_path)), "setfiles", "policycoreutils")


# ---------------------------------------------------------------- iso

ISO_COPY = ELEMENTS / "iso/post-install.d/01-copy-bootloaders"
ISO_BUILD = ELEMENTS / "iso/cleanup.d/100-build-iso"


def iso_tools() -> None:
    missing = [t for t in ("xorriso", "mkfs.vfat", "mcopy") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")


def iso_extract(iso: Path, path: str, dest: Path) -> Path:
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract", path, str(dest)],
                   check=True, capture_output=True)  # fmt: skip
    return dest


def test_iso_gathers_the_image_boot_loaders(tree: Path) -> None:
    for path in ("/usr/lib/ISOLINUX/isolinux.bin", "/usr/lib/syslinux/modules/bios/ldlinux.c32",
                 "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed",
                 "/usr/lib/shim/shimx64.efi.signed"):  # fmt: skip
        write(upper(tree) / path.removeprefix("/usr/"), f"binary {path}\n")
    r = in_chroot(tree, ISO_COPY, DISTRO_NAME="debian")
    assert r.returncode == 0, r.stderr
    got = sorted(p.name for p in (tree / "tmp/bootloader_files").iterdir())
    assert got == ["bootx64.efi", "grubx64.efi", "isolinux.bin", "ldlinux.c32"]


def test_iso_without_isolinux_is_one_line(tree: Path) -> None:
    one_line_error(in_chroot(tree, ISO_COPY, DISTRO_NAME="debian"), "iso:", "isolinux.bin")


def iso_inputs(tmp_path: Path, efi: bool = True) -> Path:
    root = tmp_path / "root"
    loaders = root / "tmp/bootloader_files"
    write(loaders / "isolinux.bin", "\0" * 4096)
    if efi:
        write(loaders / "grubx64.efi", "signed grub\n")
        write(loaders / "bootx64.efi", "signed shim\n")
    return root


def test_iso_from_a_ramdisk_boots_bios_and_uefi(tmp_path: Path) -> None:
    iso_tools()
    root = iso_inputs(tmp_path)
    name = tmp_path / "out/deploy"
    write(Path(f"{name}.kernel"), "kernel\n")
    write(Path(f"{name}.initramfs"), "initramfs\n")
    r = on_host(ISO_BUILD, TARGET_ROOT=str(root), IMAGE_NAME=str(name), TMP_BUILD_DIR=str(tmp_path),
                IMAGE_ELEMENT="base ramdisk iso debian-minimal", EFI_BOOT_DIR="EFI/debian",
                DIB_DEPLOY_ISO_KERNEL_CMDLINE_ARGS="console=ttyS0")  # fmt: skip
    assert r.returncode == 0, r.stderr
    iso = Path(f"{name}.iso")
    report = subprocess.run(["xorriso", "-indev", str(iso), "-report_el_torito", "plain"],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "BIOS" in report and "UEFI" in report, report
    cfg = iso_extract(iso, "/isolinux/isolinux.cfg", tmp_path / "isolinux.cfg").read_text()
    assert "APPEND initrd=/initrd boot_method=vmedia console=ttyS0 --" in cfg
    assert iso_extract(iso, "/vmlinuz", tmp_path / "k").read_text() == "kernel\n"
    assert (
        "search --set=root --label VMEDIA_BOOT_ISO"
        in iso_extract(iso, "/EFI/debian/grub.cfg", tmp_path / "grub.cfg").read_text()
    )
    esp = iso_extract(iso, "/isolinux/efiboot.img", tmp_path / "efiboot.img")
    mtools_env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    listing = subprocess.run(["mdir", "-b", "-i", str(esp), "::/EFI/BOOT"], capture_output=True,
                             text=True, check=True, env=mtools_env)  # fmt: skip
    names = {Path(p).name.upper() for p in listing.stdout.split()}
    assert {"BOOTX64.EFI", "GRUBX64.EFI", "GRUB.CFG"} <= names, listing.stdout
    assert not (root / "tmp/bootloader_files").exists()


def test_iso_from_baremetal_is_bios_only_without_grub(tmp_path: Path) -> None:
    iso_tools()
    root = iso_inputs(tmp_path, efi=False)
    name = tmp_path / "img"
    write(Path(f"{name}.vmlinuz"), "kernel\n")
    write(Path(f"{name}.initrd"), "initrd\n")
    r = on_host(ISO_BUILD, TARGET_ROOT=str(root), IMAGE_NAME=str(name), TMP_BUILD_DIR=str(tmp_path),
                IMAGE_ELEMENT="base vm baremetal iso", DIB_ROOT_LABEL="img-rootfs")  # fmt: skip
    assert r.returncode == 0, r.stderr
    iso = Path(f"{name}-boot.iso")
    cfg = iso_extract(iso, "/isolinux/isolinux.cfg", tmp_path / "isolinux.cfg").read_text()
    assert "APPEND initrd=/initrd root=LABEL=img-rootfs --" in cfg
    report = subprocess.run(["xorriso", "-indev", str(iso), "-report_el_torito", "plain"],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "UEFI" not in report


@pytest.mark.parametrize(
    ("elements", "words"),
    [("base vm", ["nothing to put on the ISO"]), ("base ramdisk", ["kernel", "missing"])],
)
def test_iso_bad_input_is_one_line(tmp_path: Path, elements: str, words: list[str]) -> None:
    root = iso_inputs(tmp_path)
    r = on_host(ISO_BUILD, TARGET_ROOT=str(root), IMAGE_NAME=str(tmp_path / "x"),
                IMAGE_ELEMENT=elements)  # fmt: skip
    one_line_error(r, "iso:", *words)


# ---------------------------------------------------------------- elrepo

ELREPO = ELEMENTS / "elrepo/pre-install.d/01-elrepo"


def test_elrepo_installs_its_release_package(tree: Path) -> None:
    stand_in(tree, "dnf")
    stand_in(tree, "rpm", "exit 1")
    r = in_chroot(tree, ELREPO, DISTRO_NAME="rocky", DIB_ELREPO_KERNEL="1")
    assert r.returncode == 0, r.stderr
    assert calls(tree, "dnf") == [
        "install -y elrepo-release.noarch",
        "install -y dnf-plugins-core",
        "config-manager --set-enabled elrepo-kernel",
    ]


@pytest.mark.parametrize(
    ("env", "word"),
    [({"DISTRO_NAME": "fedora"}, "DISTRO_NAME=fedora"),
     ({"DISTRO_NAME": "centos", "DIB_ELREPO_KERNEL": "yes"}, "DIB_ELREPO_KERNEL=yes")],
)  # fmt: skip
def test_elrepo_bad_input_is_one_line(tree: Path, env: dict[str, str], word: str) -> None:
    stand_in(tree, "dnf")
    one_line_error(in_chroot(tree, ELREPO, **env), "elrepo:", word)
    assert calls(tree, "dnf") == []


# ---------------------------------------------------------------- replace-partition-redhat

RP_REDHAT_ENV = ELEMENTS / "replace-partition-redhat/environment.d/09-replace-partition-redhat.bash"


@pytest.mark.parametrize(("distro", "efi"), [("rhel", "EFI/redhat"), ("rocky", "EFI/rocky")])
def test_replace_partition_redhat_sets_the_family_values(distro: str, efi: str) -> None:
    script = f'set -eu; source {RP_REDHAT_ENV}; echo "$DIB_RELEASE $EFI_BOOT_DIR ' \
        '$DIB_BLOCK_DEVICE $DIB_INIT_SYSTEM"'  # fmt: skip
    r = subprocess.run(["bash", "-c", script], env={"PATH": "/usr/bin:/bin", "DISTRO_NAME": distro},
                       capture_output=True, text=True, check=False)  # fmt: skip
    assert r.stdout.split() == ["9", efi, "efi", "systemd"], r.stderr


def test_replace_partition_redhat_needs_distro_name() -> None:
    script = f"set -eu; source {RP_REDHAT_ENV}; echo reached"
    r = subprocess.run(["bash", "-c", script], env={"PATH": "/usr/bin:/bin"},
                       capture_output=True, text=True, check=False)  # fmt: skip
    assert r.returncode != 0 and "reached" not in r.stdout
    assert r.stderr.strip().startswith("replace-partition-redhat: set DISTRO_NAME")


# ---------------------------------------------------------------- mellanox

MELLANOX = ELEMENTS / "mellanox/install.d/65-mellanox"


def test_mellanox_loads_its_drivers_at_boot_and_on_hotplug(tree: Path) -> None:
    r = in_chroot(tree, MELLANOX)
    assert r.returncode == 0, r.stderr
    mods = [ln for ln in (tree / "etc/modules-load.d/mellanox.conf").read_text().splitlines()
            if not ln.startswith("#")]  # fmt: skip
    assert mods == ["mlx4_en", "mlx4_ib", "ib_ipoib", "mlx5_ib", "ib_umad", "ib_uverbs"]
    rules = (tree / "etc/udev/rules.d/81-mellanox.rules").read_text()
    assert 'SUBSYSTEM=="net", RUN+="/sbin/modprobe mlx5_ib"' in rules
    assert rules.count("RUN+=") == 6


def test_mellanox_debian_packages_exist_in_the_archive() -> None:
    import json

    probe = subprocess.run(["apt-cache", "policy", "bash"], capture_output=True, text=True)
    if probe.returncode != 0 or "Candidate: (none)" in probe.stdout or not probe.stdout:
        pytest.skip("this host's apt has no package lists (apt-cache policy bash)")
    pkg_map = json.loads((ELEMENTS / "mellanox/pkg-map").read_text())
    from dibpy.elements.model import load_yaml_or_json

    wanted = load_yaml_or_json(ELEMENTS / "mellanox/package-installs.yaml")
    debian, default = pkg_map["family"]["debian"], pkg_map["default"]
    names = {debian.get(n, default.get(n, n)) for n in wanted} - {""}
    missing = []
    for name in sorted(names):
        out = subprocess.run(["apt-cache", "policy", name], capture_output=True, text=True).stdout
        if "Candidate:" not in out or "Candidate: (none)" in out:
            missing.append(name)
    assert not missing, missing
    assert len(names) >= 15


# ---------------------------------------------------------------- rhel, rhel-common

REGISTER = ELEMENTS / "rhel-common/pre-install.d/00-rhel-registration"
UNREGISTER = ELEMENTS / "rhel-common/finalise.d/60-unregister"
BLS = ELEMENTS / "rhel/post-install.d/03-reset-bls-entries"


def test_rhel_portal_registration_with_an_account(tree: Path) -> None:
    stand_in(tree, "subscription-manager")
    r = in_chroot(tree, REGISTER, REG_METHOD="portal", REG_USER="me", REG_PASSWORD="s3cret",
                  DIB_RELEASE="9", REG_POOL_ID="pool1", REG_MACHINE_NAME="builder")  # fmt: skip
    assert r.returncode == 0, r.stderr
    arch = os.uname().machine
    assert calls(tree, "subscription-manager") == [
        "register --username=me --password=s3cret --name=builder",
        "attach --pool=pool1",
        "repos --disable=*",
        f"repos --enable=rhel-9-for-{arch}-appstream-rpms --enable=rhel-9-for-{arch}-baseos-rpms",
    ]
    assert "s3cret" not in r.stdout + r.stderr and "--password=***" in r.stdout
    r = in_chroot(tree, UNREGISTER, REG_METHOD="portal")
    assert r.returncode == 0 and calls(tree, "subscription-manager")[-1] == "unregister"


def test_rhel_satellite_registration_with_a_key(tree: Path) -> None:
    stand_in(tree, "subscription-manager")
    stand_in(tree, "rpm")
    r = in_chroot(tree, REGISTER, REG_METHOD="satellite", REG_SAT_URL="https://sat.example/",
                  REG_ACTIVATION_KEY="k3y", REG_ORG="acme", REG_REPOS="repo-a,repo-b",
                  DIB_RELEASE="8", REG_AUTO_ATTACH="1")  # fmt: skip
    assert r.returncode == 0, r.stderr
    arch = os.uname().machine
    assert calls(tree, "rpm") == [
        "-Uvh https://sat.example/pub/katello-ca-consumer-latest.noarch.rpm"
    ]
    assert calls(tree, "subscription-manager") == [
        "register --auto-attach --activationkey=k3y --org=acme",
        "repos --disable=*",
        f"repos --enable=repo-a --enable=repo-b --enable=satellite-client-6-for-rhel-8-{arch}-rpms",
        f"repos --disable=satellite-client-6-for-rhel-8-{arch}-rpms",
    ]
    assert "k3y" not in r.stdout + r.stderr


@pytest.mark.parametrize(
    ("env", "words"),
    [({"REG_METHOD": "rhn"}, ["REG_METHOD=rhn"]),
     ({"REG_METHOD": "portal", "REG_USER": "me"}, ["REG_USER and REG_PASSWORD"]),
     ({"REG_METHOD": "portal", "REG_ACTIVATION_KEY": "k"}, ["REG_ORG"]),
     ({"REG_METHOD": "satellite", "REG_ACTIVATION_KEY": "k", "REG_ORG": "o"}, ["REG_SAT_URL"])],
)  # fmt: skip
def test_rhel_registration_bad_input_is_one_line(
    tree: Path, env: dict[str, str], words: list[str]
) -> None:
    stand_in(tree, "subscription-manager")
    one_line_error(in_chroot(tree, REGISTER, **env), "rhel-common:", *words)
    assert calls(tree, "subscription-manager") == []


def test_rhel_no_registration_and_kept_registration(tree: Path) -> None:
    stand_in(tree, "subscription-manager")
    assert in_chroot(tree, REGISTER).returncode == 0
    r = in_chroot(tree, UNREGISTER, REG_METHOD="portal", REG_HALT_UNREGISTER="1")
    assert r.returncode == 0 and calls(tree, "subscription-manager") == []


def test_rhel_boot_entries_follow_the_machine_id(tree: Path) -> None:
    write(tree / "etc/machine-id", "0123456789abcdef0123456789abcdef\n")
    entries = tree / "boot/loader/entries"
    write(entries / "ffffffffffffffffffffffffffffffff-5.14.0-427.el9.x86_64.conf", "title x\n")
    r = in_chroot(tree, BLS)
    assert r.returncode == 0, r.stderr
    assert [p.name for p in entries.iterdir()] == [
        "0123456789abcdef0123456789abcdef-5.14.0-427.el9.x86_64.conf"
    ]


def test_rhel_without_an_image_is_one_line(tmp_path: Path) -> None:
    hook = ELEMENTS / "rhel/root.d/10-rhel-cloud-image"
    one_line_error(on_host(hook, TMP_HOOKS_PATH=str(tmp_path)), "rhel:", "DIB_LOCAL_IMAGE")


# ---------------------------------------------------------------- proliant-tools

PROLIANT = ELEMENTS / "proliant-tools/install.d/65-proliant-tools-install"


def test_proliant_tools_ssacli_and_proliantutils_in_the_agent_venv(tree: Path) -> None:
    stand_in(tree, "curl", 'out=""; while [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done; '
             'echo rpm > "$out"')  # fmt: skip
    stand_in(tree, "alien")
    pip = '#!/bin/bash\necho "$*" >> /tmp/venv-pip.calls\n'
    write(tree / "opt/ironic-python-agent/bin/pip", pip, 0o755)
    r = in_chroot(
        tree, PROLIANT, DISTRO_NAME="debian", DIB_SSACLI_URL="https://hpe.example/ssacli.rpm"
    )
    assert r.returncode == 0, r.stderr
    assert calls(tree, "curl")[0].endswith("https://hpe.example/ssacli.rpm")
    assert calls(tree, "alien")[0].startswith("-i /tmp/ssacli.")
    assert calls(tree, "venv-pip") == ["install proliantutils"]
    assert not list((tree / "tmp").glob("ssacli.*"))


def test_proliant_tools_without_the_url_is_one_line(tree: Path) -> None:
    stand_in(tree, "curl")
    one_line_error(in_chroot(tree, PROLIANT, DISTRO_NAME="debian"), "DIB_SSACLI_URL")
    assert calls(tree, "curl") == []


# ---------------------------------------------------------------- ilo

ILO_UNPACK = ELEMENTS / "ilo/extra-data.d/50-ilo-firmware"
ILO_FLASH = ELEMENTS / "ilo/ilo-tools/dib-ilo-firmware"
ILO_INSTALL = ELEMENTS / "ilo/post-install.d/60-ilo-firmware"

# an iLO installer: --unpack=DIR leaves a flash tool there that exits with $FLASH_RC
INSTALLER = """#!/bin/bash
set -eu
dir=${1#--unpack=}
printf '#!/bin/bash\\necho "flashed $*" > "$3"\\nexit %s\\n' "RC" > "$dir/flash_ilo4"
chmod 755 "$dir/flash_ilo4"
"""


def test_ilo_firmware_unpacked_then_flashed_at_boot(tree: Path, tmp_path: Path) -> None:
    fw = tmp_path / "fw"
    for name, rc in (("ilo4_250.scexe", "0"), ("ilo4_old.scexe", "2"), ("other.exe", "4")):
        write(fw / name, INSTALLER.replace("RC", rc), 0o644)
    write(fw / "README.txt", "not an installer\n")
    r = on_host(ILO_UNPACK, DIB_ILO_FIRMWARE_PATH=str(fw), TMP_MOUNT_PATH=str(tree))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tree / "ilo").iterdir()) == [
        "ilo4_250.scexe", "ilo4_old.scexe", "other.exe"]  # fmt: skip
    r = in_chroot(tree, ILO_FLASH)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "firmware applied" in out and "already up to date" in out and "not applicable" in out
    assert "flashed --silent --log" in out
    # a tool that fails fails the unit
    (tree / "ilo/other.exe/flash_ilo4").write_text("#!/bin/bash\nexit 7\n")
    r = in_chroot(tree, ILO_FLASH)
    assert r.returncode == 1 and "failed with status 7" in r.stderr


def test_ilo_installs_its_flash_tool_and_enables_its_unit(tree: Path) -> None:
    shutil.copytree(ELEMENTS / "ilo/ilo-tools", tree / "tmp/in_target.d/ilo-tools")
    (tree / "etc/systemd/system").mkdir(parents=True)
    r = in_chroot(tree, ILO_INSTALL)
    assert r.returncode == 0, r.stderr
    tool = upper(tree) / "local/sbin/dib-ilo-firmware"  # /usr is an overlay: its upper
    assert os.access(tool, os.X_OK) and tool.read_bytes() == ILO_FLASH.read_bytes()
    unit = tree / "etc/systemd/system/ilo-firmware.service"
    assert "ConditionDirectoryNotEmpty=/ilo" in unit.read_text()
    wants = tree / "etc/systemd/system/multi-user.target.wants/ilo-firmware.service"
    assert wants.is_symlink()


def test_ilo_without_firmware_path(tmp_path: Path) -> None:
    r = on_host(ILO_UNPACK, TMP_MOUNT_PATH=str(tmp_path))
    assert r.returncode == 0 and not (tmp_path / "ilo").exists()
    r = on_host(ILO_UNPACK, TMP_MOUNT_PATH=str(tmp_path), DIB_ILO_FIRMWARE_PATH="/nonexistent")
    one_line_error(r, "ilo:", "/nonexistent")


# ---------------------------------------------------------------- hpdsa

HPDSA_CHECK = ELEMENTS / "hpdsa/root.d/10-hpdsa-check-distro"


@pytest.mark.parametrize(
    ("env", "words"),
    [({"DISTRO_NAME": "ubuntu", "DIB_RELEASE": "noble"}, ["trusty only", "DIB_RELEASE=noble"]),
     ({"DISTRO_NAME": "debian", "DIB_RELEASE": "trusty"}, ["DISTRO_NAME=debian"]),
     ({"DISTRO_NAME": "ubuntu", "DIB_RELEASE": "trusty"}, ["DIB_HPDSA_REPO"])],
)  # fmt: skip
def test_hpdsa_checks_are_one_line(env: dict[str, str], words: list[str]) -> None:
    one_line_error(on_host(HPDSA_CHECK, **env), "hpdsa:", *words)


def test_hpdsa_replaces_ahci(tree: Path) -> None:
    stand_in(tree, "update-initramfs")
    for hook in ("95-hpdsa", "98-hpdsa-post-dkms", "95-hpdsa"):
        assert in_chroot(tree, ELEMENTS / "hpdsa/post-install.d" / hook).returncode == 0
    assert (tree / "etc/modprobe.d/install-hpdsa.conf").read_text() == "blacklist ahci\n"
    assert (tree / "etc/modules").read_text() == "hpdsa\n"
    assert calls(tree, "update-initramfs") == ["-u"]
    env = {"DISTRO_NAME": "ubuntu", "DIB_RELEASE": "trusty", "DIB_HPDSA_REPO": "http://h.example/r",
           "DIB_HPDSA_KEY_URL": "http://k.example/k"}  # fmt: skip
    assert on_host(HPDSA_CHECK, **env).returncode == 0
