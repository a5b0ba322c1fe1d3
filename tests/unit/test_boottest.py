"""boot-test against a fake qemu-system-x86_64 on PATH (tests/fixtures/boot/fake-qemu).

The fake prints boot noise and a getty prompt, runs a login and a real /bin/sh, so these
tests exercise the console watcher, the login and marker logic and the process
clean-up for real; only the guest is pretend.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dibpy import boottest
from dibpy.boottest import BootTest, BootTestError, ConsoleText, detect_accel, kvm_usable
from dibpy.cli import boot_test as cli
from dibpy.errors import ConfigError
from tests.conftest import process_alive

REPO = Path(__file__).resolve().parents[2]
FAKE = REPO / "tests/fixtures/boot/fake-qemu"


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fake QEMU first on PATH; yields its state directory (pid, argv.json)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "qemu-system-x86_64").symlink_to(FAKE)
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_QEMU_STATE", str(state))
    monkeypatch.setenv("FAKE_QEMU_MODE", "ok")
    yield state
    pid_file = state / "pid"
    if pid_file.exists():
        assert not process_alive(int(pid_file.read_text())), "the fake QEMU was left running"


@pytest.fixture
def image(tmp_path: Path) -> Path:
    img = tmp_path / "disk.raw"
    img.write_bytes(b"\0" * 1024 * 1024)
    return img


def argv_of(state: Path) -> list[str]:
    return list(json.loads((state / "argv.json").read_text()))


def test_prompt_found_and_console_logged(fake: Path, image: Path, tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    before = image.read_bytes()
    res = BootTest(image, fmt="raw", timeout=20, console_log=log, accel="tcg").run()
    assert 0 < res.seconds_to_prompt < 20
    assert res.accel == "tcg"
    assert res.command_output is None
    assert "fakehost login:" in res.console
    # escapes and carriage returns are gone, the text is all there
    assert "\x1b" not in res.console and "\r" not in res.console
    assert "[  OK  ] Started getty@ttyS0.service." in res.console
    assert "progress 10%\nprogress 100%\n" in res.console
    assert log.read_text() == res.console
    assert res.console_log == log
    assert image.read_bytes() == before
    argv = argv_of(fake)
    drive = argv[argv.index("-drive") + 1]
    assert "snapshot=on" in drive and "format=raw" in drive
    assert "virtio-blk-pci,drive=disk0,bootindex=0" in argv
    assert "-no-reboot" in argv


def test_login_and_command_output(fake: Path, image: Path) -> None:
    res = BootTest(
        image, fmt="raw", timeout=20, login=("tester", "secret"), command="echo hello; echo world"
    ).run()
    assert res.command_output == "hello\nworld"
    # a temporary console log is removed after a pass
    assert res.console_log is None


def test_command_with_quotes_and_status_zero(fake: Path, image: Path) -> None:
    res = BootTest(
        image,
        fmt="raw",
        login=("tester", "secret"),
        command="printf '%s|' \"a b\" c; test 1 -eq 1",
        timeout=20,
    ).run()
    assert res.command_output == "a b|c|"


def test_command_failure_reports_status(fake: Path, image: Path, tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    with pytest.raises(BootTestError) as exc:
        BootTest(
            image,
            fmt="raw",
            login=("tester", "secret"),
            command="echo oops; exit 3",
            timeout=20,
            console_log=log,
        ).run()
    assert "exited with status 3" in exc.value.summary
    assert "oops" in exc.value.console_tail
    assert str(log) in str(exc.value)


def test_wrong_password_fails_fast(fake: Path, image: Path) -> None:
    start = time.monotonic()
    with pytest.raises(BootTestError) as exc:
        BootTest(image, fmt="raw", login=("tester", "nope"), command="id", command_timeout=30).run()
    assert time.monotonic() - start < 15
    assert "logging in as 'tester' failed" in exc.value.summary
    assert "Login incorrect" in exc.value.console_tail
    # a failed boot keeps even a temporary console log, and says where it is
    assert exc.value.console_log is not None and exc.value.console_log.exists()
    assert str(exc.value.console_log) in str(exc.value)
    exc.value.console_log.unlink()


def test_prompt_with_messages_printed_over_it(
    fake: Path, image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_QEMU_MODE", "late")
    res = BootTest(image, fmt="raw", login=("tester", "secret"), command="echo ok").run()
    assert res.command_output == "ok"


def test_login_retries_when_typed_input_is_flushed(
    fake: Path, image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_QEMU_MODE", "flush")
    bt = BootTest(image, fmt="raw", login=("tester", "secret"), command="echo after-flush")
    bt.probe_interval = 1.0
    assert bt.run().command_output == "after-flush"


def test_timeout_kills_qemu(fake: Path, image: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_QEMU_MODE", "silent")
    start = time.monotonic()
    with pytest.raises(BootTestError) as exc:
        BootTest(image, fmt="raw", timeout=1.5).run()
    assert 1.5 <= time.monotonic() - start < 10
    assert "no login prompt within 1.5 s" in exc.value.summary
    assert "Linux version 6.1.0-fake" in exc.value.console_tail
    assert not process_alive(int((fake / "pid").read_text()))
    assert exc.value.console_log is not None
    exc.value.console_log.unlink()


def test_sigterm_ignored_then_sigkill(
    fake: Path, image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_QEMU_MODE", "stubborn")
    bt = BootTest(image, fmt="raw", timeout=1)
    bt.kill_grace = 0.5
    with pytest.raises(BootTestError):
        bt.run()
    assert not process_alive(int((fake / "pid").read_text()))


def test_kernel_panic_fails_fast(fake: Path, image: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_QEMU_MODE", "panic")
    start = time.monotonic()
    with pytest.raises(BootTestError) as exc:
        BootTest(image, fmt="raw", timeout=60).run()
    assert time.monotonic() - start < 10
    assert "panicked: Kernel panic - not syncing: VFS" in exc.value.summary


def test_qemu_exiting_reports_its_stderr(
    fake: Path, image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_QEMU_MODE", "die")
    with pytest.raises(BootTestError) as exc:
        BootTest(image, fmt="raw", timeout=60).run()
    assert "QEMU exited (status 1)" in exc.value.summary
    assert "Could not open 'x'" in exc.value.summary


def test_keyboard_interrupt_kills_qemu(
    fake: Path, image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_QEMU_MODE", "silent")
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            BootTest(image, fmt="raw", timeout=30).run()
    finally:
        timer.cancel()
    assert not process_alive(int((fake / "pid").read_text()))


def _child_script(image: Path) -> str:
    return textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from dibpy.boottest import BootTest
        from dibpy.errors import Interrupted
        try:
            BootTest({str(image)!r}, fmt="raw", timeout=60).run()
        except Interrupted as e:
            print("interrupted:", e.message)
            sys.exit(7)
        """
    )


def _start_child(fake: Path, image: Path) -> tuple[subprocess.Popen[str], int]:
    child = subprocess.Popen(
        [sys.executable, "-c", _child_script(image)], stdout=subprocess.PIPE, text=True
    )
    pid_file = fake / "pid"
    for _ in range(100):
        if pid_file.exists() and pid_file.read_text():
            break
        time.sleep(0.1)
    else:
        child.kill()
        pytest.fail("the fake QEMU never started")
    return child, int(pid_file.read_text())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_our_death_kills_qemu(
    fake: Path, image: Path, monkeypatch: pytest.MonkeyPatch, sig: signal.Signals
) -> None:
    if sig == signal.SIGKILL and shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed: no parent-death signal")
    monkeypatch.setenv("FAKE_QEMU_MODE", "silent")
    child, qemu_pid = _start_child(fake, image)
    time.sleep(0.3)
    child.send_signal(sig)
    out, _ = child.communicate(timeout=20)
    if sig == signal.SIGTERM:
        assert child.returncode == 7
        assert "interrupted by signal SIGTERM" in out
    for _ in range(50):
        if not process_alive(qemu_pid):
            break
        time.sleep(0.1)
    assert not process_alive(qemu_pid)


def test_format_detected_with_qemu_img(fake: Path, tmp_path: Path) -> None:
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img is not installed")
    img = tmp_path / "disk.img"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(img), "16M"], check=True)
    BootTest(img, timeout=20).run()
    argv = argv_of(fake)
    assert any("format=qcow2" in a for a in argv)


def test_uefi_uses_a_copy_of_the_vars(
    fake: Path, image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fw = tmp_path / "ovmf"
    fw.mkdir()
    (fw / "OVMF_CODE_4M.fd").write_bytes(b"code")
    (fw / "OVMF_VARS_4M.fd").write_bytes(b"vars")
    monkeypatch.setattr(boottest, "OVMF_DIRS", (tmp_path / "nowhere", fw))
    BootTest(image, fmt="raw", uefi=True, disk_interface="ide", timeout=20).run()
    argv = argv_of(fake)
    pflash = [argv[i + 1] for i, a in enumerate(argv) if a == "-drive" and "pflash" in argv[i + 1]]
    assert len(pflash) == 2
    assert f"file={fw / 'OVMF_CODE_4M.fd'}" in pflash[0] and "readonly=on" in pflash[0]
    assert str(fw) not in pflash[1] and "OVMF_VARS.fd" in pflash[1]
    assert "ide-hd,drive=disk0,bootindex=0" in argv
    assert argv[argv.index("-machine") + 1].startswith("q35,")


def test_uefi_without_ovmf(image: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(boottest, "OVMF_DIRS", (tmp_path,))
    with pytest.raises(ConfigError, match="OVMF"):
        boottest.find_ovmf(boottest.OVMF_DIRS)


def test_kernel_mode_arguments(fake: Path, tmp_path: Path) -> None:
    k, i = tmp_path / "vmlinuz", tmp_path / "initrd"
    k.write_bytes(b"k")
    i.write_bytes(b"i")
    BootTest(kernel=k, initrd=i, append="console=ttyS0 quiet", timeout=20).run()
    argv = argv_of(fake)
    assert argv[argv.index("-kernel") + 1] == str(k)
    assert argv[argv.index("-initrd") + 1] == str(i)
    assert argv[argv.index("-append") + 1] == "console=ttyS0 quiet"
    assert not any("disk0" in a for a in argv)


def test_ready_pattern_instead_of_the_login_prompt(fake: Path, image: Path) -> None:
    # the fake guest prints its getty line; waiting for an earlier line passes sooner
    res = BootTest(image, fmt="raw", timeout=20, ready=r"progress 100%").run()
    assert "progress 100%" in res.console
    with pytest.raises(BootTestError, match="ready pattern 'never printed'"):
        BootTest(image, fmt="raw", timeout=3, ready="never printed").run()


def test_ready_pattern_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        BootTest(tmp_path / "missing.qcow2", ready="(", login=("u", "p")).run()
    assert "replaces the login prompt" in str(exc.value)
    assert "is not a regular expression" in str(exc.value)


def test_bad_settings_reported_together(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        BootTest(
            tmp_path / "missing.qcow2",
            initrd=tmp_path / "initrd",
            command="id",
            disk_interface="scsi",
        ).run()
    msg = str(exc.value)
    assert "image not found" in msg
    assert "needs a kernel" in msg
    assert "needs a login" in msg
    assert "unknown disk interface 'scsi'" in msg


# -- console text ---------------------------------------------------------------------


def test_console_text_split_escapes_and_crlf() -> None:
    c = ConsoleText()
    chunks = [b"a\x1b[0;3", b"2mgreen\x1b[0m\r", b"\nnext\r", b"over\r\n\xc3", b"\xa9\x07\n"]
    assert "".join(c.feed(x) for x in chunks) == "agreen\nnext\nover\n\u00e9\n"


def test_console_text_osc_and_charset_escapes() -> None:
    c = ConsoleText()
    assert c.feed(b"\x1b]0;title\x07\x1b(Bplain\x1b[?25l\x1b[Hx\n") == "plainx\n"


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("Debian GNU/Linux 12 host ttyS0\n\nhost login: ", True),
        ("host login: [  12.3] cloud-init: hi\n", True),
        ("(none) login: ", True),
        ("login: ", True),
        ("[  OK  ] Started systemd-logind.service - User Login Management.\n", False),
        ("Starting login service: blah\n", False),
        ("Last login: Mon Jan  1 00:00:00 2024 on ttyS0\n", False),
    ],
)
def test_login_prompt_pattern(text: str, found: bool) -> None:
    assert bool(boottest.LOGIN_PROMPT.search(text)) is found


# -- acceleration ---------------------------------------------------------------------


def test_kvm_pvm_module_means_tcg(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/kvm").write_text("")
    (tmp_path / "sys/module/kvm_pvm").mkdir(parents=True)
    ok, why = kvm_usable(tmp_path)
    assert not ok and "kvm_pvm" in why
    accel, reason = detect_accel(None, tmp_path)
    assert accel == "tcg" and "kvm_pvm" in reason


def test_kvm_pvm_in_proc_modules_means_tcg(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/kvm").write_text("")
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/modules").write_text(
        "kvm_pvm 12345 0 - Live 0x0\nkvm 1000 1 kvm_pvm, Live 0x0\n"
    )
    assert kvm_usable(tmp_path)[0] is False


def test_no_dev_kvm_means_tcg(tmp_path: Path) -> None:
    ok, why = kvm_usable(tmp_path)
    assert not ok and "does not exist" in why
    assert detect_accel(None, tmp_path)[0] == "tcg"


def test_unopenable_dev_kvm_means_tcg(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/kvm").mkdir()  # a directory cannot be opened read-write
    ok, why = kvm_usable(tmp_path)
    assert not ok and "cannot be opened" in why


def test_usable_kvm_is_used(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/kvm").write_text("")
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/modules").write_text("kvm_intel 1 0 - Live 0x0\nkvm 1 1 kvm_intel\n")
    assert kvm_usable(tmp_path) == (True, "/dev/kvm is usable")
    assert detect_accel(None, tmp_path) == ("kvm", "/dev/kvm is usable")


def test_requested_accel_wins(tmp_path: Path) -> None:
    assert detect_accel("tcg", tmp_path) == ("tcg", "requested")
    assert detect_accel("kvm", tmp_path)[0] == "kvm"
    with pytest.raises(ConfigError, match="unknown accelerator"):
        detect_accel("hax", tmp_path)


# -- the command line -----------------------------------------------------------------


def test_cli_pass(
    fake: Path, image: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rc = cli.main(
        [str(image), "--format", "raw", "--user", "tester", "--password", "secret"]
        + ["--command", "echo from-guest", "--timeout", "20", "--accel", "tcg"]
    )
    out, err = capsys.readouterr()
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].startswith("login prompt after ") and lines[0].endswith(" s (tcg)")
    assert lines[1] == "from-guest"
    log = image.with_name("disk.raw.console.log")
    assert f"console log: {log}" in err
    assert "fakehost login:" in log.read_text()


def test_cli_password_from_a_file_or_the_environment(
    fake: Path, image: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the fake guest takes "secret" only (test_wrong_password_fails_fast)
    pw = image.parent / "pw"
    pw.write_text("secret\n")
    common = [str(image), "--format", "raw", "--user", "tester", "--timeout", "20"]
    common += ["--accel", "tcg", "--command", "echo from-guest"]
    assert cli.main([*common, "--password-file", str(pw)]) == 0
    assert "from-guest" in capsys.readouterr().out
    monkeypatch.setenv("DIBPY_BOOT_PASSWORD", "secret")
    assert cli.main(common) == 0
    out, err = capsys.readouterr()
    assert "from-guest" in out and "process list" not in err
    # on the command line it still works, with a warning (logging onto this test's stderr)
    from dibpy.log import setup_logging

    setup_logging()
    assert cli.main([*common, "--password", "secret"]) == 0
    assert "visible to every user in the process list" in capsys.readouterr().err
    assert cli.main([*common, "--password-file", str(image.parent / "none")]) == 2
    assert "--password-file" in capsys.readouterr().err


def test_cli_failure_is_one_line(
    fake: Path, image: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_QEMU_MODE", "silent")
    log = image.parent / "my.log"
    rc = cli.main(
        [str(image), "--format", "raw", "--timeout", "1", "--accel", "tcg"]
        + ["--console-log", str(log)]
    )
    _, err = capsys.readouterr()
    assert rc != 0
    error_lines = [line for line in err.splitlines() if "error:" in line]
    assert error_lines == [
        f"dibpy boot-test: error: no login prompt within 1 s (tcg) (console log: {log})"
    ]
    assert "Linux version 6.1.0-fake" in log.read_text()


def test_cli_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.main([]) == 2
    assert "nothing to boot" in capsys.readouterr().err
    assert cli.main(["x.img", "--user", "u"]) == 2
    assert "--user and a password go together" in capsys.readouterr().err
    assert cli.main([str(tmp_path / "nope.img")]) == 2
    assert "image not found" in capsys.readouterr().err


def test_timeline_gives_the_boot_milestones(fake: Path, image: Path) -> None:
    res = BootTest(image, fmt="raw", timeout=20, accel="tcg").run()
    marks = res.milestones()
    assert list(marks) == ["kernel", "init", "login prompt"]
    # the fake sleeps 0.3 s between the kernel's first line and the init system's
    assert 0 <= marks["kernel"] < marks["init"] - 0.25
    assert marks["init"] <= marks["login prompt"]
    assert any("Welcome to" in line for _, line in res.timeline)


def test_boot_test_after_a_build_needs_a_disk_image_output(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="qcow2 or raw"):
        boottest.boot_built_image([tmp_path / "x.vhd", tmp_path / "x.tar"], "amd64")


def test_login_policy_without_a_user_is_no_login() -> None:
    assert boottest.login_for(None, None, None, {"DIBPY_BOOT_PASSWORD": "pw"}) is None
    assert boottest.login_for("u", None, None, {"DIBPY_BOOT_PASSWORD": "pw"}) == ("u", "pw")


@pytest.mark.parametrize(
    ("interface", "devices"),
    [
        ("virtio", ["virtio-blk-pci,drive=disk0,bootindex=0"]),
        ("ide", ["ide-hd,drive=disk0,bootindex=0"]),
        ("sata", ["ahci,id=sata0", "ide-hd,drive=disk0,bus=sata0.0,bootindex=0"]),
        ("nvme", ["nvme,drive=disk0,serial=dibpy-disk0,bootindex=0"]),
    ],
)
def test_disk_interface_devices(
    fake: Path, image: Path, interface: str, devices: list[str]
) -> None:
    """Each interface attaches the one drive through its own controller (the e2e tests
    boot images on virtio, SATA and NVMe)."""
    BootTest(image, fmt="raw", disk_interface=interface, timeout=20).run()
    argv = argv_of(fake)
    attached = [
        argv[i + 1] for i, a in enumerate(argv) if a == "-device" and "net" not in argv[i + 1]
    ]
    assert attached == devices


def test_extra_drives_are_attached_read_only_after_the_image(
    fake: Path, image: Path, tmp_path: Path
) -> None:
    """A config drive (``extra_drives``, ``--drive``) goes on its own virtio disk after
    the image, raw and read-only; the NIC has the MAC a config drive can name."""
    iso, fat = tmp_path / "config,2.iso", tmp_path / "data.img"
    iso.write_bytes(b"iso")
    fat.write_bytes(b"fat")
    BootTest(image, fmt="raw", disk_interface="sata", extra_drives=[iso, fat], timeout=20).run()
    argv = argv_of(fake)
    drives = [argv[i + 1] for i, a in enumerate(argv) if a == "-drive"]
    devices = [argv[i + 1] for i, a in enumerate(argv) if a == "-device"]
    assert drives[0].startswith(f"file={image},format=raw,")
    # a comma in a path is doubled, as -drive file= wants
    assert drives[1:] == [
        f"file={tmp_path}/config,,2.iso,format=raw,if=none,id=extra1,readonly=on",
        f"file={fat},format=raw,if=none,id=extra2,readonly=on",
    ]
    assert devices[-2:] == ["virtio-blk-pci,drive=extra1", "virtio-blk-pci,drive=extra2"]
    assert not any("bootindex" in d for d in devices[-2:])
    assert f"virtio-net-pci,netdev=net0,mac={boottest.NIC_MAC},romfile=" in devices
    assert iso.read_bytes() == b"iso"


def test_cli_drive_option(fake: Path, image: Path, tmp_path: Path) -> None:
    drive = tmp_path / "config-drive.iso"
    drive.write_bytes(b"iso")
    common = [str(image), "--format", "raw", "--timeout", "20", "--accel", "tcg"]
    assert cli.main([*common, "--drive", str(drive), "--drive", str(drive)]) == 0
    argv = argv_of(fake)
    assert [a for a in argv if "id=extra" in a] == [
        f"file={drive},format=raw,if=none,id=extra{n},readonly=on" for n in (1, 2)
    ]


def test_a_missing_extra_drive_is_named(
    image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError, match="extra drive not found: .*nope.iso"):
        BootTest(image, extra_drives=[tmp_path / "nope.iso"]).run()
    assert cli.main([str(image), "--drive", str(tmp_path / "nope.iso")]) == 2
    assert "extra drive not found" in capsys.readouterr().err
