"""The files diskimage-builder gives hooks in ``$_LIB`` (dibpy/lib), sourced for real in
bash under ``set -eu -o pipefail`` with the small environment a hook gets, and the
``diskimage_builder`` Python stand-in run by diskimage-builder's own
package-installs-squash.  No root needed (the chroot, mount and sudo parts are in
tests/integration/test_dib_lib.py).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dibpy.elements.discovery import builtin_elements_dir
from tests.conftest import REPO, write
from tests.dibref import dib_elements, dib_release

LIB = REPO / "dibpy" / "lib"
RUN_PARTS = REPO / "elements" / "dib-run-parts" / "bin" / "dib-run-parts"
LIB_FILES = [
    "die",
    "common-defaults",
    "img-defaults",
    "ramdisk-defaults",
    "common-functions",
    "img-functions",
    "ramdisk-functions",
]
# what diskimage-builder's ramdisk element's 99-build-ramdisk sources, in its order
RAMDISK_ORDER = LIB_FILES[1:]


def hook_env(**extra: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": "/root", "LC_ALL": "C", "_LIB": str(LIB), **extra}


def sh(script: str, *sources: str, lib: Path = LIB, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in bash under set -eu -o pipefail after sourcing ``sources``."""
    head = "set -eu -o pipefail\n" + "".join(f'source "{lib}/{s}"\n' for s in sources)
    return subprocess.run(
        ["bash", "-c", head + script],
        env=hook_env(_LIB=str(lib), **env),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def ok(script: str, *sources: str, **env: str) -> str:
    r = sh(script, *sources, **env)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}{r.stderr}"
    return r.stdout


def host_arch() -> str:
    if Path("/etc/debian_version").exists() and shutil.which("dpkg"):
        return subprocess.run(
            ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
        ).stdout.strip()
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, "armhf" if m.startswith("armv") else m)


# --- every file sources cleanly, alone and together, twice -------------------------


@pytest.mark.parametrize("name", LIB_FILES)
def test_each_file_sources_under_strict_mode(name: str) -> None:
    assert ok(f'source "$_LIB/{name}"\necho sourced', name).endswith("sourced\n")


def test_the_ramdisk_elements_order_sources_cleanly() -> None:
    out = ok("declare -F | awk '{print $3}'", *RAMDISK_ORDER)
    for fn in ("die", "run_d", "mk_build_dir", "run_in_target", "create_ramdisk_base"):
        assert fn in out.split()


def dib_functions(name: str) -> set[str]:
    text = (dib_release() / "diskimage_builder" / "lib" / name).read_text()
    found = re.findall(r"^(?:function\s+([\w-]+)|([\w-]+)\s*\(\))", text, flags=re.M)
    return {a or b for a, b in found}


# disk-image-create's own steps: no element calls them, and dibpy does them in Python
DRIVER_ONLY = {
    "arg_to_elements",
    "_arg_defaults_hack",
    "block_device_create_config_file",
    "create_base",
    "finalise_base",
    "compress_and_save_image",
    "do_extra_package_install",
    "copy_elements_lib",
    "_get_chroot_processes",
}


@pytest.mark.parametrize("name", ["die", "common-functions", "img-functions", "ramdisk-functions"])
def test_every_function_diskimage_builder_defines_is_ours_too(name: str) -> None:
    want = dib_functions(name) - DRIVER_ONLY
    # what img-functions and ramdisk-functions see are loaded together, as the hooks do
    out = ok("declare -F | awk '{print $3}'", *RAMDISK_ORDER)
    assert want - set(out.split()) == set()


# --- defaults ------------------------------------------------------------------------

SHOW = 'for v in "$@"; do printf "%s=%s\\n" "$v" "${!v-<unset>}"; done'


def show(sources: list[str], names: list[str], **env: str) -> dict[str, str]:
    script = f"set -- {' '.join(names)}\n{SHOW}"
    out = ok(script, *sources, **env)
    return dict(line.split("=", 1) for line in out.splitlines())


def test_common_defaults_normalise_arch_and_set_dib_defaults() -> None:
    v = show(
        ["common-defaults"],
        ["ARCH", "_ARCH", "DIB_CHECKSUM", "DIB_NO_TMPFS", "DIB_MIN_TMPFS", "DIB_OFFLINE",
         "DIB_DEBUG_TRACE", "DIB_IMAGE_CACHE", "ELEMENTS_PATH", "PATH"],
    )  # fmt: skip
    assert v["ARCH"] == v["_ARCH"] == host_arch()
    assert (v["DIB_CHECKSUM"], v["DIB_NO_TMPFS"], v["DIB_MIN_TMPFS"]) == ("0", "0", "2")
    assert (v["DIB_OFFLINE"], v["DIB_DEBUG_TRACE"]) == ("", "0")
    assert v["DIB_IMAGE_CACHE"] == "/root/.cache/image-create"
    assert v["ELEMENTS_PATH"] == str(builtin_elements_dir())
    assert v["PATH"] == "/usr/bin:/bin:/sbin:/usr/sbin:/usr/local/sbin"


def test_common_defaults_keep_what_the_build_set() -> None:
    built_in = str(builtin_elements_dir())
    set_by_dibpy = {
        "ARCH": "arm64",
        "DIB_CHECKSUM": "sha256",
        "DIB_MIN_TMPFS": "5",
        "DIB_OFFLINE": "1",
        "DIB_DEBUG_TRACE": "2",
        "DIB_IMAGE_CACHE": "/cache",
        "ELEMENTS_PATH": f"/mine:{built_in}",
        "PATH": "/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin",
    }
    assert show(["common-defaults"], list(set_by_dibpy), **set_by_dibpy) == set_by_dibpy
    # a path without the built-in elements gets them last, as diskimage-builder's does
    v = show(["common-defaults"], ["ELEMENTS_PATH"], ELEMENTS_PATH="/mine")
    assert v["ELEMENTS_PATH"] == f"/mine:{built_in}"
    # the same directory under another spelling (through a symlink) counts as there
    real = str(builtin_elements_dir().resolve())
    v = show(["common-defaults"], ["ELEMENTS_PATH"], ELEMENTS_PATH=f"/mine:{real}")
    assert v["ELEMENTS_PATH"] == f"/mine:{real}"


def test_img_defaults() -> None:
    names = ["FS_TYPE", "DIB_ROOT_FSTYPE", "DIB_ROOT_LABEL", "IMAGE_TYPE", "IMAGE_NAME", "ARCH"]
    v = show(["img-defaults"], names)
    assert v == {
        "FS_TYPE": "ext4",
        "DIB_ROOT_FSTYPE": "ext4",
        "DIB_ROOT_LABEL": "cloudimg-rootfs",
        "IMAGE_TYPE": "qcow2",
        "IMAGE_NAME": "image",
        "ARCH": host_arch(),
    }
    assert show(["img-defaults"], ["DIB_ROOT_LABEL"], FS_TYPE="xfs")["DIB_ROOT_LABEL"] == (
        "img-rootfs"
    )
    kept = {"FS_TYPE": "xfs", "DIB_ROOT_LABEL": "mine", "IMAGE_NAME": "/out/x"}
    assert show(["img-defaults"], list(kept), **kept) == kept


def test_ramdisk_defaults() -> None:
    names = ["DIB_NO_TMPFS", "DIB_MIN_TMPFS", "RAMDISK_ELEMENT", "MODULE_ROOT", "LIB_UDEV_ROOT"]
    assert show(["ramdisk-defaults"], names) == {
        "DIB_NO_TMPFS": "1",
        "DIB_MIN_TMPFS": "1",
        "RAMDISK_ELEMENT": "ramdisk",
        "MODULE_ROOT": "",
        "LIB_UDEV_ROOT": "",
    }
    v = show(
        ["ramdisk-defaults"],
        ["DIB_NO_TMPFS", "DIB_MIN_TMPFS", "MODULE_ROOT", "LIB_UDEV_ROOT"],
        DIB_NO_TMPFS="0",
        DIB_MIN_TMPFS="2",
        DIB_MODULE_ROOT="/m",
        DIB_LIB_UDEV_ROOT="/u",
    )
    assert v == {
        "DIB_NO_TMPFS": "0",
        "DIB_MIN_TMPFS": "2",
        "MODULE_ROOT": "/m",
        "LIB_UDEV_ROOT": "/u",
    }


# --- common-functions ------------------------------------------------------------------


def test_die_prints_and_exits_non_zero() -> None:
    r = sh("die something broke; echo not reached", "common-functions")
    assert r.returncode != 0
    assert "something broke" in r.stderr and "not reached" not in r.stdout


def test_tmpfs_check() -> None:
    assert sh("tmpfs_check", "common-functions", DIB_NO_TMPFS="1").returncode == 1
    assert (
        sh("tmpfs_check", "common-functions", DIB_NO_TMPFS="0", DIB_MIN_TMPFS="0").returncode == 0
    )
    r = sh("tmpfs_check", "common-functions", DIB_NO_TMPFS="0", DIB_MIN_TMPFS="100000")
    assert r.returncode == 1 and "Not enough RAM" in r.stdout
    r = sh("tmpfs_check 0", "common-functions", DIB_NO_TMPFS="0", DIB_MIN_TMPFS="100000")
    assert r.returncode == 1 and r.stdout == ""


def test_mk_build_dir_makes_and_its_trap_removes_the_dirs(tmp_path: Path) -> None:
    out = ok(
        "mk_build_dir\n"
        'printf "dirs=%s\\n" "$TMP_BUILD_DIR" "$TMP_IMAGE_DIR"\n'
        'printf "dirs=%s\\n" "$TMP_HOOKS_PATH" "$OUT_IMAGE_PATH"\n'
        'test -d "$TMP_BUILD_DIR" && test -d "$TMP_IMAGE_DIR"\n',
        "common-defaults",
        "common-functions",
        "img-functions",
        TMP_DIR=str(tmp_path),
        DIB_NO_TMPFS="1",
    )
    build, image, hooks, out_image = (ln[5:] for ln in out.splitlines() if ln.startswith("dirs="))
    assert Path(build).parent == tmp_path and Path(build).name.startswith("dib_build.")
    assert Path(image).name.startswith("dib_image.")
    assert hooks == f"{build}/hooks" and out_image == f"{image}/image.raw"
    assert list(tmp_path.iterdir()) == [], "trap_cleanup left the build dirs"


def test_finish_image_renames_the_old_one_and_writes_checksums(tmp_path: Path) -> None:
    (tmp_path / "new.raw").write_text("new\n")
    (tmp_path / "image.qcow2").write_text("old\n")
    (tmp_path / "image.qcow2.md5").write_text("oldsum\n")
    ok(
        f'cd "{tmp_path}"; save_image image.qcow2',
        "common-functions",
        OUT_IMAGE_PATH=str(tmp_path / "new.raw"),
        DIB_CHECKSUM="1",
    )
    names = sorted(p.name for p in tmp_path.iterdir())
    old = [n for n in names if re.fullmatch(r"image-\d{4}\.\d\d\.\d\d-\d\d\.\d\d\.\d\d\.qcow2", n)]
    assert len(old) == 1 and (tmp_path / old[0]).read_text() == "old\n"
    assert (tmp_path / (old[0] + ".md5")).read_text() == "oldsum\n"
    assert (tmp_path / "image.qcow2").read_text() == "new\n"
    digest = hashlib.sha256(b"new\n").hexdigest()
    assert (tmp_path / "image.qcow2.sha256").read_text().split()[0] == digest
    assert (tmp_path / "image.qcow2.md5").read_text().split()[0] == hashlib.md5(
        b"new\n"
    ).hexdigest()


def test_run_d_eval_run_d_and_check_break(tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    write(
        hooks / "block-device.d/10-say",
        "#!/bin/bash\necho hello\necho IMAGE_BLOCK_DEVICE=/dev/loop9\n",
        0o755,
    )
    write(hooks / "environment.d/10-x.bash", "export FROM_ENV_D=yes\n")
    out = ok(
        'eval_run_d block-device "IMAGE_BLOCK_DEVICE="\necho "got $IMAGE_BLOCK_DEVICE"\n'
        "run_d no-such-phase\n",
        "common-functions",
        TMP_HOOKS_PATH=str(hooks),
        DIB_RUN_PARTS=str(RUN_PARTS),
        **{"break": "before-block-device", "break_cmd": "echo BREAK-SHELL"},
    )
    assert "hello" in out and out.rstrip().endswith("got /dev/loop9")
    assert "BREAK-SHELL" in out
    # a failing hook fails run_d
    write(hooks / "install.d/10-fail", "#!/bin/bash\nexit 3\n", 0o755)
    r = sh(
        "run_d install", "common-functions", TMP_HOOKS_PATH=str(hooks), DIB_RUN_PARTS=str(RUN_PARTS)
    )
    assert r.returncode != 0


def test_generate_hooks_merges_elements_and_refuses_duplicates(tmp_path: Path) -> None:
    a, b = tmp_path / "els/a", tmp_path / "els/b"
    write(a / "install.d/10-a", "#!/bin/bash\n", 0o755)
    write(a / "element-deps", "b\n")
    write(a / "tests/skip-me", "x\n")
    write(b / "install.d/20-b", "#!/bin/bash\n", 0o755)
    write(b / "init-scripts/systemd/b.service", "[Unit]\n")
    func = (
        "get_image_element_array() { local l; while IFS= read -r l; do "
        '[ -n "$l" ] || continue; printf "[%s]=%s " "${l%%: *}" "${l#*: }"; '
        'done <<< "$IMAGE_ELEMENT_YAML"; echo; }\n'
    )
    hooks = tmp_path / "hooks"
    ok(
        func + "generate_hooks",
        "common-functions",
        TMP_HOOKS_PATH=str(hooks),
        IMAGE_ELEMENT_YAML=f"a: {a}\nb: {b}\nmissing: {tmp_path}/nope\n",
    )
    got = sorted(p.relative_to(hooks).as_posix() for p in hooks.rglob("*") if p.is_file())
    assert got == [
        "element-deps",
        "init-scripts/systemd/b.service",
        "install.d/10-a",
        "install.d/20-b",
    ]
    write(b / "install.d/10-a", "#!/bin/bash\n", 0o755)
    r = sh(
        func + "generate_hooks",
        "common-functions",
        TMP_HOOKS_PATH=str(tmp_path / "hooks2"),
        IMAGE_ELEMENT_YAML=f"a: {a}\nb: {b}\n",
    )
    assert r.returncode != 0 and "duplicated hook" in r.stderr


def test_unmount_dir_of_a_non_directory_is_harmless(tmp_path: Path) -> None:
    out = ok(
        f'unmount_dir "{tmp_path}/nope"; unmount_dir "{tmp_path}"; echo done', "common-functions"
    )
    assert "is not a directory" in out and out.endswith("done\n")


# --- img-functions: select_boot_kernel_initrd -------------------------------------------


def boot_tree(root: Path, files: list[str], release: str = "debian_version") -> Path:
    for f in files:
        write(root / "boot" / f, "x\n")
    write(root / "etc" / release, "x\n")
    return root


SELECT = 'select_boot_kernel_initrd "$1"; echo "$BOOTDIR $KERNEL $RAMDISK"'


def select(root: Path, lib: Path = LIB, **env: str) -> str:
    r = sh(f"set -- {root}\n{SELECT}", "img-functions", lib=lib, **env)
    assert r.returncode == 0, r.stderr
    return r.stdout.split("\n")[-2]


def test_select_boot_kernel_initrd_per_distribution(tmp_path: Path) -> None:
    deb = boot_tree(
        tmp_path / "deb",
        ["vmlinuz-6.1.0-9-amd64", "vmlinuz-6.1.0-10-amd64", "initrd.img-6.1.0-9-amd64",
         "initrd.img-6.1.0-10-amd64"],
    )  # fmt: skip
    assert select(deb) == f"{deb}/boot vmlinuz-6.1.0-10-amd64 initrd.img-6.1.0-10-amd64"
    rh = boot_tree(
        tmp_path / "rh",
        ["vmlinuz-5.14.0-1.el9.x86_64", "vmlinuz-5.14.0-1.el9.x86_64+debug",
         "vmlinuz-0-rescue-abc", "initramfs-5.14.0-1.el9.x86_64.img",
         "initramfs-0-rescue-abc.img", "initramfs-5.14.0-1.el9.x86_64+debug.img"],
        "redhat-release",
    )  # fmt: skip
    assert select(rh).split()[1:] == [
        "vmlinuz-5.14.0-1.el9.x86_64",
        "initramfs-5.14.0-1.el9.x86_64.img",
    ]
    suse = boot_tree(
        tmp_path / "suse", ["vmlinuz-6.4.0-1-default", "initrd-6.4.0-1-default"], "SuSE-release"
    )
    assert select(suse).split()[1:] == ["vmlinuz-6.4.0-1-default", "initrd-6.4.0-1-default"]
    picked = select(
        deb,
        DIB_BAREMETAL_KERNEL_PATTERN="vmlinuz-*-9-*",
        DIB_BAREMETAL_INITRD_PATTERN="initrd.img-*-9-*",
    )
    assert picked.split()[1:] == ["vmlinuz-6.1.0-9-amd64", "initrd.img-6.1.0-9-amd64"]
    r = sh(f"set -- {tmp_path / 'suse'}/nothing\n{SELECT}", "img-functions")
    assert r.returncode != 0 and "no kernel" in r.stderr


def test_img_functions_copied_alone_still_selects(tmp_path: Path) -> None:
    # diskimage-builder's select-boot-kernel-initrd copies only img-functions into the chroot
    alone = tmp_path / "lib-diskimage-builder"
    alone.mkdir()
    shutil.copy(LIB / "img-functions", alone)
    deb = boot_tree(tmp_path / "deb", ["vmlinuz-6.1.0-9-amd64", "initrd.img-6.1.0-9-amd64"])
    assert select(deb, lib=alone).split()[1:] == [
        "vmlinuz-6.1.0-9-amd64",
        "initrd.img-6.1.0-9-amd64",
    ]
    r = sh(f"set -- {tmp_path}/none\n{SELECT}", "img-functions", lib=alone)
    assert r.returncode != 0 and "no kernel" in r.stderr


# --- ramdisk-functions ------------------------------------------------------------------


def test_ramdisk_functions_build_a_busybox_initramfs(tmp_path: Path) -> None:
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed")
    tree = tmp_path / "ramdisk"
    (tree / "bin").mkdir(parents=True)
    (tree / "lib").mkdir()
    init = tmp_path / "init"
    init.write_text("#!/bin/sh\necho start\n")
    Path(f"{init}-end").write_text("echo end\n")
    out = ok(
        'echo "full=$(cd /usr && fullpath tmp/x) $(fullpath /abs)"\n'
        'cp "$BUSYBOX" "$TMP_MOUNT_PATH/bin/busybox"\n'
        "populate_busybox >/dev/null\n"
        'copy_required_libs "$(type -p bash)"\n'
        "populate_init\n"
        "finalise_image\n",
        *RAMDISK_ORDER,
        TMP_MOUNT_PATH=str(tree),
        BUSYBOX=busybox,
        INIT=str(init),
        TMP_IMAGE_PATH=str(tmp_path / "ramdisk.gz"),
    )
    assert "full=/usr/tmp/x /abs" in out
    assert os.readlink(tree / "bin" / "sh") == "busybox"
    ldd = subprocess.run(["ldd", shutil.which("bash") or "bash"], capture_output=True, text=True)
    if ldd.returncode == 0 and "=>" in ldd.stdout:
        libc = next(line.split()[0] for line in ldd.stdout.splitlines() if "libc.so" in line)
        assert (tree / "lib" / libc).exists() or (tree / "lib" / libc).is_symlink()
    assert (tree / "init").read_text() == "#!/bin/sh\necho start\necho end\n"
    listing = subprocess.run(
        ["cpio", "-it"], input=gzip.decompress((tmp_path / "ramdisk.gz").read_bytes()),
        capture_output=True, check=True,
    ).stdout.decode().split()  # fmt: skip
    assert {"init", "bin/busybox", "bin/sh"} <= set(listing)


# --- the diskimage_builder Python stand-in ---------------------------------------------


def test_dib_package_installs_squash_runs_on_our_diskimage_builder(tmp_path: Path) -> None:
    squash = dib_elements() / "package-installs" / "bin" / "package-installs-squash"
    els = tmp_path / "elements"
    write(
        els / "one/package-installs.yaml",
        "curl:\nvim:\n  phase: pre-install.d\nold:\n  uninstall: true\n",
    )
    write(
        els / "two/package-installs.json", json.dumps({"jq": None, "arm-only": {"arch": "arm64"}})
    )
    out = tmp_path / "squashed.json"
    r = subprocess.run(
        [sys.executable, str(squash), "--elements", "one two", "--path", str(els), str(out)],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(LIB / "python"), "ARCH": "amd64",
             "DIB_DEBUG_TRACE": "1"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    squashed = json.loads(out.read_text())
    # (diskimage-builder's squash writes an empty list for a kind a phase has none of)
    squashed = {ph: {k: v for k, v in kinds.items() if v} for ph, kinds in squashed.items()}
    assert squashed == {
        "install.d": {"install": [["curl", "one"], ["jq", "two"]], "uninstall": [["old", "one"]]},
        "pre-install.d": {"install": [["vim", "one"]]},
    }
    # our logging format, at DEBUG because DIB_DEBUG_TRACE=1
    assert re.search(r"^INFO __main__ \[-\] Squashing install file: ", r.stderr, re.M), r.stderr
    assert re.search(r"^DEBUG __main__ \[-\] element_dirs -> .* main .*:\d+$", r.stderr, re.M)


def test_our_diskimage_builder_is_the_one_imported() -> None:
    r = subprocess.run(
        [sys.executable, "-c",
         "import diskimage_builder.logging_config as m, diskimage_builder.paths as p;"
         "print(m.__file__); print(p.get_path('lib'))"],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(LIB / "python")},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert r.stdout.split() == [str(LIB / "python/diskimage_builder/logging_config.py"), str(LIB)]
