"""The element contract: the variables and functions a diskimage-builder hook relies on,
checked on dibpy.hookenv without a build (the functions hooks call are run in real bash)."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from dibpy import hookenv
from dibpy.config import BuildConfig, build_config
from dibpy.elements.model import Element

BUILD = Path("/tmp/dib-build.X")
TARGET = BUILD / "built"
HOST = hookenv.HostFacts(python_exec="/opt/py/bin/python3")

#: what diskimage-builder's own hooks read (its developer docs and lib/disk-image-create)
CONTRACT = (
    "TMP_MOUNT_PATH",
    "TARGET_ROOT",
    "TMP_HOOKS_PATH",
    "TMP_BUILD_DIR",
    "TMP_IMAGE_DIR",
    "TMP_IMAGE_PATH",
    "IMAGE_NAME",
    "IMAGE_ELEMENT",
    "IMAGE_ELEMENT_YAML",
    "ELEMENTS_PATH",
    "ARCH",
    "DIB_IMAGE_CACHE",
    "DIB_OFFLINE",
    "DIB_DEBUG_TRACE",
    "DIB_LOCKFILES",
    "DIB_PYTHON_EXEC",
    "DIB_DEFAULT_INSTALLTYPE",
    "DIB_ROOT_LABEL",
    "DIB_ROOT_FSTYPE",
    "DIB_ENV",
    "DIB_ARGS",
    "_LIB",
    "BASH_FUNC_die%%",
    "BASH_FUNC_get_image_element_array%%",
)


def cfg(env: dict[str, str] | None = None, **cli: object) -> BuildConfig:
    return build_config(cli, ["base", "vm"], env or {}, argv=["-o", "my image", "vm"])


def elements() -> list[Element]:
    return [Element("base", Path("/els/base")), Element("vm", Path("/more els/vm"))]


def env_of(
    c: BuildConfig | None = None, *, in_chroot: bool = False, host: hookenv.HostFacts = HOST, **kw
) -> dict[str, str]:
    return hookenv.hook_env(
        c or cfg({"PATH": "/usr/bin:/bin", "HOME": "/home/me"}),
        elements(),
        elements_path="/els:/more els",
        build_dir=BUILD,
        target=TARGET,
        in_chroot=in_chroot,
        host=host,
        **kw,
    )


def bash(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {**env, "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("in_chroot", [False, True])
def test_every_contract_variable_is_set_on_the_host_and_in_the_chroot(in_chroot: bool) -> None:
    env = env_of(in_chroot=in_chroot)
    assert [v for v in CONTRACT if v not in env] == []


def test_paths_name_the_target_and_the_build_dir() -> None:
    env = env_of()
    assert env["TARGET_ROOT"] == env["TMP_MOUNT_PATH"] == str(TARGET)
    assert env["TMP_HOOKS_PATH"] == str(BUILD / "hooks")
    assert env["TMP_BUILD_DIR"] == str(BUILD)
    assert env["TMP_IMAGE_DIR"] == str(BUILD / "image")
    assert env["ELEMENTS_PATH"] == "/els:/more els"
    assert env["DIB_PYTHON_EXEC"] == "/opt/py/bin/python3"


def test_lib_is_diskimage_builders_lib_with_the_files_hooks_source() -> None:
    lib = Path(env_of()["_LIB"])
    for name in ("die", "common-functions", "img-functions", "common-defaults"):
        assert (lib / name).is_file(), name


def test_image_element_lists_the_resolved_elements_in_order() -> None:
    env = env_of()
    assert env["IMAGE_ELEMENT"] == "base vm"
    assert env["IMAGE_ELEMENT_YAML"] == "base: /els/base\nvm: /more els/vm"


def test_get_image_element_array_is_exported_to_bash_hooks() -> None:
    r = bash(
        'eval declare -A a=($(get_image_element_array)); echo "${a[base]}|${a[vm]}|${#a[@]}"',
        env_of(),
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == "/els/base|/more els/vm|2\n"


def test_die_is_exported_to_bash_hooks() -> None:
    r = bash("die something broke; echo not reached", env_of())
    assert r.returncode == 1
    assert r.stdout == ""
    assert "ERROR: something broke" in r.stderr


def test_element_info_env_script_evals_to_the_same_variables() -> None:
    script = hookenv.element_info_script(
        ["base", "vm"], {"base": "/els/base", "vm": "/more els/vm"}
    )
    r = bash(
        script + "eval declare -A a=($(get_image_element_array)); "
        'printf "%s\\n" "$IMAGE_ELEMENT" "${a[vm]}"; echo "$IMAGE_ELEMENT_YAML"',
        {},
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "base vm",
        "/more els/vm",
        "base: /els/base",
        "vm: /more els/vm",
    ]


def test_dib_env_is_evalable_and_keeps_no_password() -> None:
    c = cfg({"DIB_RELEASE": "noble", "DIB_DEV_USER_PASSWORD": "s3cret", "DIB_X": "a b'c"})
    env = env_of(c)
    assert "s3cret" not in env["DIB_ENV"]
    r = bash(env["DIB_ENV"] + '\necho "$DIB_RELEASE|$DIB_X"', {})
    assert r.stdout == "noble|a b'c\n"


def test_dib_args_are_the_command_line_quoted() -> None:
    assert shlex.split(env_of()["DIB_ARGS"]) == ["-o", "my image", "vm"]


def test_settings_are_passed_as_diskimage_builder_names_them() -> None:
    c = cfg({"DIB_RELEASE": "bookworm", "DIB_OFFLINE": "1"}, fs_type="xfs", debug_trace=2)
    env = env_of(c)
    assert env["DIB_RELEASE"] == "bookworm"
    assert env["DIB_OFFLINE"] == "1"
    assert env["DIB_ROOT_FSTYPE"] == env["FS_TYPE"] == "xfs"
    assert env["DIB_ROOT_LABEL"] == "img-rootfs"
    assert env["DIB_DEBUG_TRACE"] == "2"
    assert env["DIB_DEFAULT_INSTALLTYPE"] == "source"
    assert env["ARCH"] == env["DIB_ARCH"]
    assert env["DIB_LOCKFILES"] == str(Path("~/.cache/dib/lockfiles").expanduser())
    assert env_of(cfg({"DIB_LOCKFILES": "/run/locks"}))["DIB_LOCKFILES"] == "/run/locks"


def test_interpreter_variables_are_dropped_and_clear_env_keeps_four() -> None:
    caller = {"PATH": "/usr/bin", "HOME": "/h", "TERM": "t", "USER": "u", "FOO": "1",
              "TMPDIR": "/x", "VIRTUAL_ENV": "/v", "PYTHONHOME": "/p"}  # fmt: skip
    kept = env_of(cfg(caller))
    assert kept["FOO"] == "1"
    assert not {"TMPDIR", "VIRTUAL_ENV", "PYTHONHOME"} & kept.keys()
    assert hookenv.base_env(caller, clear_env=True) == {
        "PATH": "/usr/bin", "HOME": "/h", "TERM": "t", "USER": "u"}  # fmt: skip


def test_a_chroot_hook_gets_the_chroot_path_roots_home_and_no_host_tmp_dir() -> None:
    host = hookenv.HostFacts(chroot_additions={"SSL_CERT_FILE": "/tmp/ca.pem"})
    env = env_of(cfg({"PATH": "/opt/bin", "HOME": "/home/me", "TMP_DIR": "/tmp"}),
                 in_chroot=True, host=host)  # fmt: skip
    assert env["PATH"] == hookenv.CHROOT_PATH
    assert env["HOME"] == "/root"
    assert "TMP_DIR" not in env
    assert env["SSL_CERT_FILE"] == "/tmp/ca.pem"
    assert "PYTHONPATH" not in env


def test_a_host_hook_finds_the_elements_bin_tools_sudo_and_our_python_modules() -> None:
    env = env_of(cfg({"PATH": "/opt/bin"}))
    parts = env["PATH"].split(":")
    assert parts[0] == "/opt/bin"
    assert "/usr/sbin" in parts
    assert parts[-1] == str(BUILD / "hooks" / "bin")
    assert env["PYTHONPATH"] == str(hookenv.LIB_DIR / "python")
    root_no_sudo = hookenv.HostFacts(needs_sudo=lambda path: True, has_diskimage_builder=True)
    env = env_of(cfg({"PATH": "/opt/bin"}), host=root_no_sudo)
    assert env["PATH"].split(":")[-1] == str(hookenv.LIB_DIR / "bin")
    assert (hookenv.LIB_DIR / "bin" / "sudo").is_file()
    assert "PYTHONPATH" not in env


def test_block_device_variables_override_the_builds() -> None:
    c = cfg()
    values = {"image-block-device": "/dev/loop7", "root-label": "root", "mount-points": "/ /boot"}
    extra = hookenv.block_device_env(c, values.get, "/b/image.raw")
    assert extra["DIB_ROOT_FSTYPE"] == "ext4"  # not in the device: the config's
    assert extra["DIB_BOOT_LABEL"] == ""
    env = env_of(c, extra=extra)
    assert env["IMAGE_BLOCK_DEVICE"] == "/dev/loop7"
    assert env["DIB_ROOT_LABEL"] == "root"
    assert env["DIB_MOUNTPOINTS"] == "/ /boot"
    assert env["TMP_IMAGE_PATH"] == "/b/image.raw"
    for name in ("IMAGE_BLOCK_DEVICES", "DIB_BOOT_LABEL"):
        assert name in env


def test_the_archive_state_read_at_plan_time_reaches_every_hook() -> None:
    state = [
        ("http://127.0.0.1:1/debian", "trixie", "ab" * 32),
        ("http://s", "trixie-security", "unknown"),
    ]
    for in_chroot in (False, True):
        env = env_of(in_chroot=in_chroot, archive_state=state)
        lines = env["DIB_ARCHIVE_STATE"].splitlines()
        assert lines == [
            f"http://127.0.0.1:1/debian trixie {'ab' * 32}",
            "http://s trixie-security unknown",
        ]
    # nothing read (not apt-based, tree cache off): absent, so the element fetches itself
    assert "DIB_ARCHIVE_STATE" not in env_of()
