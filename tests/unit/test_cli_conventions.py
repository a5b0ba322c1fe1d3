"""Every command follows the same conventions: --version, --help naming the program the
user ran with examples, -q/-v on builds, secrets never on a command line, one line for a
missing host program."""

from __future__ import annotations

import configparser
import importlib
import logging
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from dibpy.cli.main import COMMANDS
from tests.conftest import REPO


def _console_scripts() -> list[tuple[str, str]]:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    out = []
    for line in cfg["options.entry_points"]["console_scripts"].strip().splitlines():
        name, _, target = line.partition("=")
        out.append((name.strip(), target.strip()))
    return out


def _all_commands() -> list[tuple[str, Callable[..., int]]]:
    """(program name, its main) for every console script and every ``dibpy`` subcommand."""
    found: list[tuple[str, Callable[..., int]]] = []
    for name, target in _console_scripts():
        module, _, func = target.partition(":")
        found.append((name, getattr(importlib.import_module(module), func)))
    for cmd, (module, func, _) in COMMANDS.items():
        fn = getattr(importlib.import_module(module), func)
        found.append((f"dibpy {cmd}", lambda argv, fn=fn, cmd=cmd: fn(argv, prog=f"dibpy {cmd}")))
    return found


ALL = _all_commands()
IDS = [name for name, _ in ALL]


def _run(fn: Callable[..., int], argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as e:
        fn(argv)
    assert e.value.code in (0, None)
    return capsys.readouterr().out


@pytest.mark.parametrize(("prog", "fn"), ALL, ids=IDS)
def test_version_works(
    prog: str, fn: Callable[..., int], capsys: pytest.CaptureFixture[str]
) -> None:
    from dibpy import DIB_COMPAT_VERSION, __version__

    if prog == "dibpy":
        assert fn(["--version"]) == 0
        out = capsys.readouterr().out
    else:
        out = _run(fn, ["--version"], capsys)
    if prog in ("disk-image-create", "ramdisk-image-create", "dibpy build", "dibpy ramdisk"):
        # diskimage-builder's bare version, which scripts compare
        assert out.strip() == DIB_COMPAT_VERSION
    else:
        assert __version__ in out


@pytest.mark.parametrize(("prog", "fn"), ALL, ids=IDS)
def test_help_names_the_program_and_has_examples(
    prog: str, fn: Callable[..., int], capsys: pytest.CaptureFixture[str]
) -> None:
    if prog == "dibpy":
        assert fn(["--help"]) == 0
        out = capsys.readouterr().out
    else:
        out = _run(fn, ["--help"], capsys)
    assert out.startswith(f"usage: {prog} ")
    assert "examples:" in out
    examples = out.split("examples:", 1)[1]
    # every example runs the program it documents
    assert f"{prog} " in examples
    if prog in ("dibpy build", "dibpy ramdisk"):
        assert "disk-image-create" not in out, f"{prog} --help calls itself disk-image-create"


def test_build_help_lists_output_types_architectures_and_defaults(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from dibpy import outputs
    from dibpy.cli.disk_image_create import main
    from dibpy.config import SETTINGS, arch_aliases

    out = _run(main, ["--help"], capsys)
    types = out.split("\noutput types", 1)[1].split("\n\n", 1)[0]
    for name in outputs.BUILTINS:
        assert name in types
    arches = out.split("\narchitectures", 1)[1].split("\n\n", 1)[0]
    for arch in arch_aliases():
        assert arch in arches
    env = out.split("\nenvironment", 1)[1]
    for s in SETTINGS:
        if s.env:
            assert s.env in env
    assert "DIB_MIN_TMPFS (--min-tmpfs)  [default: 2]" in env


def test_quiet_and_verbose_map_to_console_levels() -> None:
    from dibpy.cli.disk_image_create import console_level

    assert console_level(0, 0, {}, False) == logging.INFO
    assert console_level(1, 0, {}, False) == logging.WARNING
    assert console_level(2, 0, {}, False) == logging.ERROR
    assert console_level(0, 1, {}, False) == logging.DEBUG
    assert console_level(0, 0, {"DIB_QUIET": "1"}, False) == logging.WARNING
    # a log file alone quiets the console; DIB_QUIET=0 keeps it talking, -v wins over all
    assert console_level(0, 0, {}, True) == logging.WARNING
    assert console_level(0, 0, {"DIB_QUIET": "0"}, True) == logging.INFO
    assert console_level(0, 1, {"DIB_QUIET": "1"}, True) == logging.DEBUG


def test_q_and_v_are_build_options(capsys: pytest.CaptureFixture[str]) -> None:
    from dibpy.cli.disk_image_create import build_parser

    args = build_parser().parse_args(["-qq", "debian"])
    assert args.quiet == 2
    args = build_parser("dibpy build").parse_args(["-v", "debian"])
    assert args.verbose == 1


def test_a_missing_host_program_names_it_and_its_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from dibpy.build import plan
    from dibpy.config import build_config
    from dibpy.errors import DibpyError

    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda t, *a, **k: None if t == "qemu-img" else real(t))
    cfg = build_config(
        {"image_name": str(tmp_path / "img")},
        ["debian-minimal", "vm"],
        {"ELEMENTS_PATH": "", "TMP_DIR": str(tmp_path)},
    )
    with pytest.raises(DibpyError) as e:
        plan(cfg)
    text = str(e.value)
    assert "required host program missing: qemu-img (Debian package qemu-utils)" in text


# --- secrets -----------------------------------------------------------------------

DEVUSER = REPO / "elements" / "devuser"


def test_dev_user_password_file_is_staged_for_root_only_and_never_traced(
    tmp_path: Path,
) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret-value\nignored\n")
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    r = subprocess.run(
        ["bash", str(DEVUSER / "extra-data.d" / "50-devuser-keys")],
        env={
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "TMP_HOOKS_PATH": str(hooks),
            "DIB_DEV_USER_PASSWORD_FILE": str(secret),
            "DIB_DEBUG_TRACE": "1",
        },
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    staged = hooks / "devuser" / "password"
    assert staged.read_text() == "s3cret-value\n"
    assert staged.stat().st_mode & 0o077 == 0
    assert "s3cret-value" not in r.stdout + r.stderr


def test_dev_user_password_file_that_is_missing_is_one_line(tmp_path: Path) -> None:
    r = subprocess.run(
        ["bash", str(DEVUSER / "extra-data.d" / "50-devuser-keys")],
        env={
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "TMP_HOOKS_PATH": str(tmp_path),
            "DIB_DEV_USER_PASSWORD_FILE": str(tmp_path / "nope"),
        },
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        f"devuser: DIB_DEV_USER_PASSWORD_FILE={tmp_path / 'nope'} is not a readable file"
    ]


def test_boot_test_help_says_where_a_password_may_come_from(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from dibpy.cli.boot_test import main

    out = _run(main, ["--help"], capsys)
    assert "--password-file" in out and "DIBPY_BOOT_PASSWORD" in out


def test_output_types_name_installed_plugins_without_loading_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.metadata

    from dibpy.cli import output_types

    broken = importlib.metadata.EntryPoint(
        name="fancy", value="no_such_module:Nope", group="dibpy.output"
    )
    monkeypatch.setattr(
        importlib.metadata,
        "entry_points",
        lambda group: [broken] if group == "dibpy.output" else [],
    )
    assert "fancy" in output_types() and "qcow2" in output_types()
    # the man pages list dibpy's own only
    monkeypatch.setenv("DIBPY_STATIC_DOCS", "1")
    assert "fancy" not in output_types()


def test_element_info_params_never_shows_a_password(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dibpy.cli.element_info import main

    monkeypatch.setenv("DIB_DEV_USER_PASSWORD", "hunter2-secret")
    monkeypatch.setenv("ELEMENTS_PATH", "")
    for extra in ([], ["--json"]):
        assert main(["--params", *extra, "debian-minimal", "vm", "devuser"]) == 0
        out = capsys.readouterr().out
        assert "DIB_DEV_USER_PASSWORD" in out and "(set, hidden)" in out
        assert "hunter2-secret" not in out
