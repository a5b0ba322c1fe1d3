"""The root-only parts of what diskimage-builder gives hooks, run for real: run_in_target,
mount_proc_dev_sys and unmount_dir in a chroot of a tiny busybox tree, the sudo stand-in
(dibpy/lib/bin/sudo), and dib-init-system installing diskimage-builder's growroot
element's init-scripts the way its own dib-init-system does.

Skipped, with the probed reason, when chroot does not work or busybox is missing.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, chroot_works, mounts_under, write
from tests.dibref import dib_elements

LIB = REPO / "dibpy" / "lib"
SUDO = LIB / "bin" / "sudo"
OURS = REPO / "elements"


@pytest.fixture(autouse=True)
def _need_chroot() -> None:
    reason = chroot_works()
    if reason:
        pytest.skip(reason)


def copy_with_libs(binary: str, root: Path) -> None:
    """Copy a host binary and the shared libraries ldd names into the same paths in root."""
    path = Path(shutil.which(binary) or binary).resolve()
    files = [path]
    ldd = subprocess.run(["ldd", str(path)], capture_output=True, text=True)
    for line in ldd.stdout.splitlines():
        for word in line.split():
            if word.startswith("/"):
                files.append(Path(word))
    for f in files:
        dest = root / f.relative_to("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f.resolve(), dest)
    bin_ = root / "bin" / binary
    if not bin_.exists():
        bin_.symlink_to(path)


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Path]:
    """A busybox root with bash, unmounted again (whatever the test left) afterwards."""
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed")
    root = tmp_path / "root"
    for d in ("bin", "usr/bin", "etc", "tmp", "proc", "dev", "sys"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, root / "bin" / "busybox")
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True)
    for a in applets.stdout.split():
        if not (root / "bin" / a).exists():
            (root / "bin" / a).symlink_to("busybox")
    (root / "bin" / "bash").unlink(missing_ok=True)
    copy_with_libs("bash", root)
    write(root / "etc" / "marker", "inside the tree\n")
    yield root
    for m in sorted(mounts_under(root), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], check=False)


def bash(script: str, *sources: str, **env: str) -> subprocess.CompletedProcess[str]:
    head = "set -eu -o pipefail\n" + "".join(f'source "$_LIB/{s}"\n' for s in sources)
    return subprocess.run(
        ["bash", "-c", head + script],
        env={
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/home/builder",
            "_LIB": str(LIB),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


# --- img-functions / common-functions in a chroot ----------------------------------


def test_run_in_target_runs_in_the_chroot_as_root_with_a_clean_tmpdir(tree: Path) -> None:
    r = bash(
        "run_in_target 'cat /etc/marker; echo home=$HOME tmpdir=${TMPDIR:-none} id=$(id -u)'\n"
        'echo "after=$HOME"\n'
        "run_in_target echo two words\n",
        "img-functions",
        TMP_MOUNT_PATH=str(tree),
        TMPDIR="/host/only",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "inside the tree",
        "home=/root tmpdir=none id=0",
        "after=/home/builder",
        "two words",
    ]
    r = bash("run_in_target 'exit 7'", "img-functions", TMP_MOUNT_PATH=str(tree))
    assert r.returncode == 7


def test_mount_proc_dev_sys_then_unmount_dir_leaves_the_root_mounted(tree: Path) -> None:
    # the tree is itself a mount, as dibpy's build root can be: unmount_dir must keep it
    subprocess.run(["mount", "--bind", str(tree), str(tree)], check=True)
    r = bash(
        "mount_proc_dev_sys\n"
        "run_in_target 'test -r /proc/self/status && test -c /dev/null && test -d /sys/kernel'\n"
        'grep -c " $TMP_MOUNT_PATH/" /proc/mounts\n',
        "img-functions",
        TMP_MOUNT_PATH=str(tree),
    )
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.split()[-1]) >= 4
    mounts = Path("/proc/mounts").read_text().splitlines()
    sys_opts = next(ln.split()[3] for ln in mounts if ln.split()[1] == f"{tree}/sys")
    assert "ro" in sys_opts.split(",")
    managed = tree / "boot"
    managed.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "none", str(managed)], check=True)
    r = bash('unmount_dir "$TMP_MOUNT_PATH"', "common-functions", TMP_MOUNT_PATH=str(tree),
             DIB_MOUNTPOINTS="/|/boot")  # fmt: skip
    assert r.returncode == 0, r.stderr
    # what the block-device layer manages stays, as does the root itself
    assert mounts_under(tree) == {str(tree), str(managed)}


def test_run_d_in_target_runs_a_phase_inside(tree: Path, tmp_path: Path) -> None:
    (tree / "bin" / "find").unlink()
    copy_with_libs("find", tree)  # dib-run-parts uses GNU find's -printf
    hooks = tmp_path / "hooks"
    write(
        hooks / "install.d" / "10-mark", '#!/bin/bash\necho "$(cat /etc/marker) $0" > /ran\n', 0o755
    )
    r = bash(
        # with proc and dev mounted, as in a build
        'mount_proc_dev_sys\nrun_d_in_target install\nunmount_dir "$TMP_MOUNT_PATH"',
        "img-functions",
        TMP_MOUNT_PATH=str(tree),
        TMP_HOOKS_PATH=str(hooks),
        DIB_RUN_PARTS=str(OURS / "dib-run-parts" / "bin" / "dib-run-parts"),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tree / "ran").read_text() == "inside the tree /tmp/in_target.d/install.d/10-mark\n"
    assert mounts_under(tree) == set() and not (tree / "tmp" / "in_target.d").exists()


# --- the sudo stand-in ----------------------------------------------------------------


def sudo(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "HOME": "/home/builder", "SECRET": "s3"}
    return subprocess.run(
        [str(SUDO), *args], env={**base, **env}, capture_output=True, text=True, timeout=30
    )


def test_sudo_runs_the_command_as_root() -> None:
    r = sudo("id", "-u")
    assert (r.returncode, r.stdout) == (0, "0\n")
    assert sudo("sh", "-c", "exit 4").returncode == 4
    # sbin is searched, as with sudo's secure_path
    assert sudo("-n", "--", "losetup", "--version").returncode == 0


def test_sudo_environment_with_and_without_E() -> None:
    show = ["sh", "-c", 'echo "${SECRET:-unset} $HOME $USER $A"']
    assert sudo("-E", *show).stdout == "s3 /home/builder  \n"
    assert sudo("-EH", *show).stdout == "s3 /root  \n"
    assert sudo(*show).stdout == "unset /root root \n"
    assert sudo("--preserve-env=SECRET", *show).stdout == "s3 /root root \n"
    # VAR=value words before the command, with -u root and -n
    assert sudo("-n", "-u", "root", "A=1 2", *show).stdout == "unset /root root 1 2\n"
    assert sudo("-E", "-uroot", "A=x", *show).stdout == "s3 /home/builder  x\n"
    assert sudo("-s", "echo $0 via shell", SHELL="/bin/sh").stdout == "/bin/sh via shell\n"


def test_sudo_other_users() -> None:
    r = sudo("-u", "no-such-user-dibpy", "true")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no-such-user-dibpy" in r.stderr
    r = sudo("-u", "nobody", "id", "-un")
    if shutil.which("runuser", path="/usr/sbin:/sbin:/usr/bin:/bin"):
        assert (r.returncode, r.stdout) == (0, "nobody\n"), r.stderr
    else:
        assert r.returncode == 1 and "runs commands only as root" in r.stderr
    r = sudo("-x", "true")
    assert r.returncode == 1 and r.stderr == "sudo: invalid option -- 'x'\n"
    r = sudo("no-such-command-dibpy")
    assert r.returncode == 1 and "command not found" in r.stderr


# --- dib-init-system installs init-scripts (diskimage-builder's growroot) -----------------


def hook_tree(tree: Path) -> Path:
    """Our dib-init-system and diskimage-builder's growroot, merged as /tmp/in_target.d."""
    from dibpy.elements.model import Element
    from dibpy.hooks import merge_hooks

    growroot = dib_elements() / "growroot"
    dest = tree / "tmp" / "in_target.d"
    merge_hooks(
        [Element("dib-init-system", OURS / "dib-init-system"), Element("growroot", growroot)], dest
    )
    return dest


def in_chroot(tree: Path, hook: str, init: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["chroot", str(tree), "/bin/bash", f"/tmp/in_target.d/{hook}"],
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DIB_INIT_SYSTEM": init, "HOME": "/root"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def fake(tree: Path, name: str) -> Path:
    """A stand-in command in the tree that records its arguments."""
    log = tree / f"{name}.log"
    write(tree / "usr" / "bin" / name, f'#!/bin/sh\necho "$*" >> /{log.name}\n', 0o755)
    return log


def test_systemd_unit_lands_and_growroot_enables_it(tree: Path) -> None:
    hook_tree(tree)
    r = in_chroot(tree, "install.d/20-install-init-scripts", "systemd")
    assert r.returncode == 0, r.stderr
    unit = tree / "usr/lib/systemd/system/growroot.service"
    assert (
        unit.read_bytes()
        == (dib_elements() / "growroot/init-scripts/systemd/growroot.service").read_bytes()
    )
    systemctl = fake(tree, "systemctl")
    for hook in ("post-install.d/10-enable-init-scripts", "post-install.d/80-growroot"):
        r = in_chroot(tree, hook, "systemd")
        assert r.returncode == 0, f"{hook}: {r.stderr}"
    assert systemctl.read_text() == "enable growroot.service\n"


def test_openrc_script_lands_and_is_added_to_the_default_runlevel(tree: Path) -> None:
    hook_tree(tree)
    rc_update = fake(tree, "rc-update")
    for hook in ("install.d/20-install-init-scripts", "post-install.d/10-enable-init-scripts"):
        r = in_chroot(tree, hook, "openrc")
        assert r.returncode == 0, f"{hook}: {r.stderr}"
    script = tree / "etc/init.d/growroot"
    assert (
        script.read_bytes()
        == (dib_elements() / "growroot/init-scripts/openrc/growroot").read_bytes()
    )
    assert os.access(script, os.X_OK) == os.access(
        dib_elements() / "growroot/init-scripts/openrc/growroot", os.X_OK
    )
    assert rc_update.read_text() == "add growroot default\n"


def test_upstart_job_lands_and_an_unknown_init_system_fails(tree: Path) -> None:
    hook_tree(tree)
    assert in_chroot(tree, "install.d/20-install-init-scripts", "upstart").returncode == 0
    assert (tree / "etc/init/growroot.conf").is_file()
    r = in_chroot(tree, "install.d/20-install-init-scripts", "runit")
    # growroot ships no init-scripts/runit, so there is nothing to do
    assert r.returncode == 0
    (tree / "tmp/in_target.d/init-scripts/runit").mkdir()
    r = in_chroot(tree, "install.d/20-install-init-scripts", "runit")
    assert r.returncode == 1 and "not a known type" in r.stderr


# --- diskimage-builder's own ramdisk build, on our $_LIB ---------------------------------


@pytest.fixture
def host_overlay(tmp_path: Path) -> Iterator[Path]:
    """The host's / under a writable overlay: a root with every tool, changed harmlessly."""
    upper, work, merged = tmp_path / "upper", tmp_path / "work", tmp_path / "merged"
    for d in (upper, work, merged):
        d.mkdir()
    r = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o",
         f"lowerdir=/,upperdir={upper},workdir={work}", str(merged)],
        capture_output=True, text=True,
    )  # fmt: skip
    if r.returncode != 0:
        pytest.skip(f"cannot mount an overlay of /: {r.stderr.strip()}")
    try:
        yield merged
    finally:
        for m in sorted(mounts_under(merged), key=len, reverse=True):
            subprocess.run(["umount", "-l", m], check=False)


def test_dib_ramdisk_element_builds_its_initramfs_on_our_lib(host_overlay: Path) -> None:
    """diskimage-builder's ramdisk-base extra-data.d copies $_LIB into the chroot and its
    ramdisk post-install.d/99-build-ramdisk builds the busybox initramfs with it."""
    if shutil.which("busybox") is None or shutil.which("cpio") is None:
        pytest.skip("busybox or cpio is not installed")
    root = host_overlay
    dib = dib_elements()
    version = "9.9.9-dibpy"
    write(root / "boot" / f"vmlinuz-{version}", "kernel\n")
    write(root / f"lib/modules/{version}/kernel/fs/foo.ko", "module\n")
    write(root / f"lib/modules/{version}/kernel/drivers/video/xyzfb.ko", "framebuffer\n")
    write(root / "lib/udev/rules.d/80-drivers.rules", "# drivers\n")
    for tool in ("udevadm", "dhclient"):
        if not shutil.which(tool):
            write(root / "usr/local/bin" / tool, "#!/bin/sh\nexit 0\n", 0o755)
    write(root / "etc/dib_binary_deps", "dhclient ip\n")
    hooks = root / "tmp" / "in_target.d"
    if hooks.exists():
        shutil.rmtree(hooks)
    from dibpy.elements.model import Element
    from dibpy.hooks import merge_hooks

    merge_hooks(
        [Element("ramdisk", dib / "ramdisk"), Element("ramdisk-base", dib / "ramdisk-base")], hooks
    )
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
           "DIB_DEBUG_TRACE": "0", "DISTRO_NAME": "debian", "LC_ALL": "C"}  # fmt: skip
    # extra-data.d, on the host, with our $_LIB
    r = subprocess.run(
        ["bash", str(dib / "ramdisk-base/extra-data.d/01-inject-ramdisk-build-files")],
        env={**env, "_LIB": str(LIB), "TMP_MOUNT_PATH": str(root)},
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    # post-install.d runs with proc, dev and sys mounted, as in a build
    mounted = bash("mount_proc_dev_sys", "common-functions", TMP_MOUNT_PATH=str(root))
    assert mounted.returncode == 0, mounted.stderr
    r = subprocess.run(
        ["chroot", str(root), "/bin/bash", "/tmp/in_target.d/post-install.d/99-build-ramdisk"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert (root / "tmp/kernel").read_text() == "kernel\n"
    listing = subprocess.run(
        ["cpio", "-it"], input=gzip.decompress((root / "tmp/ramdisk").read_bytes()),
        capture_output=True, check=True,
    ).stdout.decode().split()  # fmt: skip
    want = {
        "init", "bin/busybox", "bin/bash", "bin/sh", "bin/ip", "bin/dhclient",
        f"lib/modules/{version}/kernel/fs/foo.ko", "lib/udev/rules.d/80-drivers.rules",
        "lib/udev/rules.d/60-persistent-storage.rules", "etc/modprobe.d/blacklist-dib-ramdisk.conf",
    }  # fmt: skip
    assert want <= set(listing), sorted(want - set(listing))
    assert not any(n.endswith("xyzfb.ko") for n in listing)
