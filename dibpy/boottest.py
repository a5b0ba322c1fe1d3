"""Boot an image (or a kernel and ramdisk) in QEMU and wait for a login prompt.

:class:`BootTest` starts ``qemu-system-x86_64`` with the guest's serial console on
QEMU's stdin/stdout, copies everything the guest prints to a console log as it
arrives, and passes when a getty login prompt appears within the timeout.  It can then
log in and run one command, returning its output and failing on a non-zero status.

Why this module uses :class:`subprocess.Popen` instead of :func:`dibpy.run.run`:
``run.run`` closes the child's stdin and hands output over line by line, but a boot
test has to *type* into the serial console while QEMU runs, and react to prompts that
end without a newline (``login: ``, ``Password: ``).  So this module is the one other
place that starts a process.  It keeps the same promises as ``run.py``: the command
line is logged, ``LC_ALL=C`` is pinned, QEMU runs in its own session (process group),
and the group is killed (SIGTERM, then SIGKILL) on every way out of :meth:`BootTest.run`
-- success, failure, timeout, exceptions, Ctrl-C, and SIGTERM to us (turned into
:class:`~dibpy.errors.Interrupted` while a boot test runs, if nobody else handles
SIGTERM).  When ``setpriv`` is available QEMU is also started with a parent-death
signal, so it dies even if we are SIGKILLed.

The image is attached with ``snapshot=on``: writes go to a temporary overlay and the
image file is never modified.

Ownership: :meth:`BootTest.run` owns the QEMU process, a temporary directory (OVMF
variables copy, QEMU's stderr) and the console log file handle; all are released before
it returns or raises.  A console log the caller did not ask for is written to a temp
file that is deleted on success and kept (and named in the error) on failure.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import json
import os
import re
import secrets
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Protocol

from dibpy import run as runmod
from dibpy.errors import ConfigError, DibpyError, Interrupted
from dibpy.log import LOG

QEMU = "qemu-system-x86_64"

#: how many console lines an error message shows
TAIL_LINES = 25

#: where Debian's ``ovmf`` package puts its firmware; (code, vars) pairs, best first
OVMF_DIRS = (Path("/usr/share/OVMF"), Path("/usr/share/edk2/ovmf"), Path("/usr/share/qemu"))
OVMF_PAIRS = (
    ("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"),
    ("OVMF_CODE.fd", "OVMF_VARS.fd"),
)

#: the guest NIC's MAC address, given explicitly (it is QEMU's default for the first NIC)
#: so that what a guest is told about its NIC (a config drive's network_data.json) can
#: name it
NIC_MAC = "52:54:00:12:34:56"

#: how the disk is attached: virtio-blk, the chipset's IDE, an AHCI (SATA) controller, NVMe
DISK_INTERFACES = ("virtio", "ide", "sata", "nvme")
ACCELS = ("kvm", "tcg")

# A getty prompt: "<hostname> login: " at the start of a line.  Text may follow on the
# same line (cloud-init and the kernel often print over the waiting prompt).
LOGIN_PROMPT = re.compile(r"(?m)^(?!Last login)(?:[^\s:]+ )?login: ?")
PASSWORD_PROMPT = re.compile(r"(?i)password: ?")
LOGIN_FAILED = re.compile(r"(?i)login incorrect|authentication failure|permission denied")
KERNEL_PANIC = re.compile(r"Kernel panic - not syncing[^\n]*")

# CSI sequences, OSC sequences (ended by BEL or ST), and two-byte escapes
_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: window titles
    r"|\x1b[()*+][0-~]"  # character set designation
    r"|\x1b[@-Z\\-_=>78]"  # the rest: two-byte escapes
)
# an escape sequence that may still be incomplete at the end of a chunk
_ANSI_PARTIAL = re.compile(r"\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*|[()*+])?$")


class BootTestError(DibpyError):
    """The guest did not reach a login prompt, or logging in or the command failed."""

    def __init__(
        self, message: str, console_tail: str, console_log: Path | None, hint: str | None = None
    ) -> None:
        self.console_tail = console_tail
        self.console_log = console_log
        full = message
        if console_tail:
            full += "\n  last console lines:\n" + "\n".join(
                "  | " + line for line in console_tail.splitlines()
            )
        if console_log is not None:
            full += f"\n  console log: {console_log}"
        super().__init__(full, hint)
        self.summary = message


@dataclass(frozen=True)
class BootResult:
    """What a passed boot test saw."""

    seconds_to_prompt: float
    console: str
    command_output: str | None
    accel: str
    accel_reason: str = ""
    console_log: Path | None = None
    argv: list[str] = field(default_factory=list)
    #: (seconds since QEMU started, line) for every console line, as it arrived
    timeline: list[tuple[float, str]] = field(default_factory=list)

    def milestones(self) -> dict[str, float]:
        """When the boot reached each stage: the kernel's first line, the init system's
        first line, the login prompt (what a boot-time breakdown is made of)."""
        marks: dict[str, float] = {}
        for seconds, line in self.timeline:
            for name, pat in MILESTONES:
                if name not in marks and pat.search(line):
                    marks[name] = seconds
        marks["login prompt"] = self.seconds_to_prompt
        return marks


# -- acceleration ---------------------------------------------------------------------


def kvm_usable(root: Path = Path("/")) -> tuple[bool, str]:
    """Can KVM really run a stock guest kernel here?  Returns (usable, reason).

    ``root`` is where ``sys``, ``proc`` and ``dev`` are looked up (tests pass a fake).
    A ``/dev/kvm`` provided by the nested PVM hypervisor (module ``kvm_pvm``) exists and
    opens, but hangs stock kernels, so it counts as unusable.
    """
    if (root / "sys/module/kvm_pvm").exists():
        return False, "/dev/kvm is the PVM nested hypervisor (kvm_pvm), which hangs stock kernels"
    with contextlib.suppress(OSError):
        modules = (root / "proc/modules").read_text()
        if any(line.split(" ", 1)[0] == "kvm_pvm" for line in modules.splitlines()):
            return (
                False,
                "/dev/kvm is the PVM nested hypervisor (kvm_pvm), which hangs stock kernels",
            )
    dev = root / "dev/kvm"
    if not dev.exists():
        return False, "/dev/kvm does not exist"
    try:
        fd = os.open(dev, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return False, f"/dev/kvm cannot be opened: {e.strerror}"
    os.close(fd)
    return True, "/dev/kvm is usable"


def detect_accel(requested: str | None = None, root: Path = Path("/")) -> tuple[str, str]:
    """Pick ``"kvm"`` or ``"tcg"``; returns (accel, reason)."""
    if requested is not None:
        if requested not in ACCELS:
            raise ConfigError(
                f"unknown accelerator {requested!r}", hint=f"use one of: {', '.join(ACCELS)}"
            )
        if requested == "kvm":
            ok, why = kvm_usable(root)
            if not ok:
                LOG.warning("using KVM as asked, although %s", why)
        return requested, "requested"
    ok, why = kvm_usable(root)
    if ok:
        return "kvm", why
    return "tcg", f"{why}: using TCG (software emulation, slow)"


# -- firmware and image ---------------------------------------------------------------


def find_ovmf(dirs: Sequence[Path] | None = None) -> tuple[Path, Path]:
    """The OVMF firmware code and variable-store template."""
    dirs = OVMF_DIRS if dirs is None else dirs
    for d in dirs:
        for code, vars_ in OVMF_PAIRS:
            if (d / code).is_file() and (d / vars_).is_file():
                return d / code, d / vars_
    raise ConfigError(
        "UEFI boot needs OVMF firmware, which was not found in " + ", ".join(str(d) for d in dirs),
        hint="install the 'ovmf' package",
    )


def detect_format(image: Path) -> str:
    """The image's format as ``qemu-img info`` sees it."""
    res = runmod.run(
        ["qemu-img", "info", "--output=json", str(image)],
        hint="is this a disk image qemu-img can read?",
    )
    try:
        fmt = json.loads(res.stdout)["format"]
    except (ValueError, KeyError, TypeError):
        raise DibpyError(f"cannot tell the format of {image} from qemu-img info") from None
    return str(fmt)


# -- console text ---------------------------------------------------------------------


class ConsoleText:
    """Turns raw serial bytes into matchable text: UTF-8, no ANSI escapes, no ``\\r``."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._cr = False

    def feed(self, data: bytes, final: bool = False) -> str:
        text = self._pending + self._decoder.decode(data, final)
        self._pending = ""
        if not final:
            m = _ANSI_PARTIAL.search(text)
            if m:
                self._pending = text[m.start() :]
                text = text[: m.start()]
        text = _ANSI.sub("", text)
        text = text.replace("\x1b", "")
        # "\r\n" is a line end; a lone "\r" (a line drawn over) becomes one too.  A "\r"
        # at the end of a chunk may be the first half of "\r\n".
        if self._cr and text.startswith("\n"):
            text = text[1:]
        self._cr = text.endswith("\r")
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        # other control characters (bell, NUL, backspace) only get in the way
        return "".join(c for c in text if c in "\n\t" or c >= " ")


# -- the boot test --------------------------------------------------------------------


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While a boot test runs, SIGTERM/SIGHUP unwind us (and so kill QEMU)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[signal.Signals, signal._HANDLER] = {}

    def _handler(signum: int, _frame: FrameType | None) -> None:
        raise Interrupted(f"interrupted by signal {signal.Signals(signum).name}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is signal.SIG_DFL:
            previous[sig] = signal.signal(sig, _handler)
    try:
        yield
    finally:
        for restore, old in previous.items():
            signal.signal(restore, old if old is not None else signal.SIG_DFL)


def kill_process_group(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM QEMU's process group, then SIGKILL it if it has not gone; reap it."""
    if proc.poll() is not None:
        # the leader is gone, but make sure nothing it started lingers
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        LOG.debug("QEMU (pid %d) ignored SIGTERM; killing it", proc.pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


MILESTONES = [
    ("kernel", re.compile(r"Linux version \d")),
    ("init", re.compile(r"Welcome to |systemd\[1\]: |Run /init|Run /sbin/init")),
]


class _Session:
    """One running QEMU: reads its console, types into it, finds patterns."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path, echo: bool) -> None:
        assert proc.stdout is not None and proc.stdin is not None
        self.proc = proc
        self.text = ""
        self.pos = 0
        self.eof = False
        self._out = proc.stdout.fileno()
        self._in = proc.stdin.fileno()
        os.set_blocking(self._out, False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._out, selectors.EVENT_READ)
        self._conv = ConsoleText()
        self._log = open(log, "w", encoding="utf-8", errors="replace")  # noqa: SIM115
        self._echo = echo
        self._started = time.monotonic()
        self._partial = ""
        self.timeline: list[tuple[float, str]] = []

    def close(self) -> None:
        self._sel.close()
        self._log.close()

    def _add(self, data: bytes, final: bool = False) -> None:
        text = self._conv.feed(data, final)
        if text:
            self.text += text
            now = time.monotonic() - self._started
            *done, self._partial = (self._partial + text).split("\n")
            self.timeline += [(now, line) for line in done]
            self._log.write(text)
            self._log.flush()
            if self._echo:
                sys.stderr.write(text)
                sys.stderr.flush()

    def pump(self, timeout: float) -> None:
        """Read what QEMU printed, waiting up to ``timeout`` seconds for something."""
        if self.eof:
            time.sleep(min(timeout, 0.1))
            return
        for _key, _ in self._sel.select(max(timeout, 0)):
            while True:
                try:
                    data = os.read(self._out, 65536)
                except BlockingIOError:
                    break
                if not data:
                    self.eof = True
                    self._add(b"", final=True)
                    self._sel.unregister(self._out)
                    return
                self._add(data)

    def send(self, text: str) -> None:
        data = text.encode()
        while data:
            try:
                n = os.write(self._in, data)
            except BrokenPipeError:
                return
            data = data[n:]

    def expect(
        self, patterns: Mapping[str, re.Pattern[str]], deadline: float
    ) -> tuple[str, re.Match[str]] | None:
        """The first pattern to match new console text before ``deadline``, or None.

        Returns ("eof", ...) never: QEMU exiting is reported as None with ``self.eof``.
        """
        while True:
            best: tuple[str, re.Match[str]] | None = None
            for name, pat in patterns.items():
                m = pat.search(self.text, self.pos)
                if m and (best is None or m.start() < best[1].start()):
                    best = (name, m)
            if best is not None:
                self.pos = best[1].end()
                return best
            now = time.monotonic()
            if now >= deadline or (self.eof and self.proc.poll() is not None):
                return None
            self.pump(min(deadline - now, 0.25))

    def tail(self, lines: int = TAIL_LINES) -> str:
        return "\n".join(self.text.rstrip("\n").splitlines()[-lines:])


class BootTest:
    """One boot of an image, or of a kernel and ramdisk, under QEMU.

    ``login`` is (user, password) to log in after the prompt; ``command`` is then run
    in the guest's shell (a POSIX shell is assumed) and must exit 0.  ``timeout`` is
    the time allowed to reach the login prompt; logging in and the command get
    ``command_timeout`` more.

    ``ready`` (a regular expression) is what to wait for instead of the login prompt,
    for a guest that has none (a dracut ramdisk's init, an installer); it cannot be
    combined with ``login``.

    ``extra_drives`` are files attached after the image, each read-only as a raw
    virtio disk (``/dev/vdb``, ``/dev/vdc``, ... when the image is on virtio): a config
    drive, a data disk.  The guest cannot write to them, so they are never modified.
    """

    #: seconds between "are you a shell yet?" probes after typing the password
    probe_interval = 3.0
    #: seconds QEMU gets to exit after SIGTERM before SIGKILL
    kill_grace = 5.0

    def __init__(
        self,
        image: Path | str | None = None,
        *,
        fmt: str | None = None,
        uefi: bool = False,
        kernel: Path | str | None = None,
        initrd: Path | str | None = None,
        append: str | None = None,
        memory_mb: int = 1024,
        cpus: int = 2,
        timeout: float = 300,
        command_timeout: float = 120,
        login: tuple[str, str] | None = None,
        command: str | None = None,
        console_log: Path | str | None = None,
        accel: str | None = None,
        disk_interface: str = "virtio",
        echo_console: bool = False,
        extra_args: Sequence[str] = (),
        ready: str | None = None,
        extra_drives: Sequence[Path | str] = (),
    ) -> None:
        self.image = Path(image) if image is not None else None
        self.fmt = fmt
        self.uefi = uefi
        self.kernel = Path(kernel) if kernel is not None else None
        self.initrd = Path(initrd) if initrd is not None else None
        self.append = append
        self.memory_mb = memory_mb
        self.cpus = cpus
        self.timeout = timeout
        self.command_timeout = command_timeout
        self.login = login
        self.command = command
        self.console_log = Path(console_log) if console_log is not None else None
        self.accel = accel
        self.disk_interface = disk_interface
        self.echo_console = echo_console
        self.extra_args = list(extra_args)
        self.ready = ready
        self.extra_drives = [Path(d) for d in extra_drives]

    # -- validation and command line --------------------------------------------------

    def validate(self) -> None:
        """Report every problem with the settings at once, before QEMU starts."""
        problems: list[str] = []
        if self.image is None and self.kernel is None:
            problems.append("nothing to boot: give an image, or a kernel (and initrd)")
        for what, p in (("image", self.image), ("kernel", self.kernel), ("initrd", self.initrd)):
            if p is not None and not p.is_file():
                problems.append(f"{what} not found: {p}")
        for drive in self.extra_drives:
            if not drive.is_file():
                problems.append(f"extra drive not found: {drive}")
        if self.kernel is None and (self.initrd is not None or self.append is not None):
            problems.append("an initrd or kernel command line needs a kernel (--kernel)")
        if self.command is not None and self.login is None:
            problems.append("running a command needs a login (user and password)")
        if self.disk_interface not in DISK_INTERFACES:
            problems.append(
                f"unknown disk interface {self.disk_interface!r}"
                f" (use one of: {', '.join(DISK_INTERFACES)})"
            )
        if self.accel is not None and self.accel not in ACCELS:
            problems.append(f"unknown accelerator {self.accel!r} (use one of: kvm, tcg)")
        if self.memory_mb < 64:
            problems.append(f"memory {self.memory_mb} MB is too small")
        if self.timeout <= 0:
            problems.append(f"timeout must be positive, not {self.timeout}")
        if self.ready is not None:
            if self.login is not None:
                problems.append("a ready pattern replaces the login prompt: give no login")
            try:
                re.compile(self.ready)
            except re.error as e:
                problems.append(
                    f"the ready pattern {self.ready!r} is not a regular expression: {e}"
                )
        if self.command is not None and "\n" in self.command:
            problems.append("the command must be a single line")
        if problems:
            from dibpy.errors import MultiError

            raise MultiError(problems, hint="see 'dibpy boot-test --help'")
        if shutil.which(QEMU) is None:
            raise ConfigError(f"{QEMU} not found", hint="install the 'qemu-system-x86' package")

    def qemu_argv(self, accel: str, tmpdir: Path) -> list[str]:
        """The QEMU command line (``tmpdir`` receives the writable OVMF variables)."""
        argv = [
            QEMU,
            "-machine",
            f"{'q35' if self.uefi else 'pc'},accel={accel}",
            "-cpu",
            "host" if accel == "kvm" else "max",
            "-m",
            str(self.memory_mb),
            "-smp",
            str(self.cpus),
            "-display",
            "none",
            "-vga",
            "std",
            "-monitor",
            "none",
            "-parallel",
            "none",
            "-chardev",
            "stdio,id=console,signal=off",
            "-serial",
            "chardev:console",
            "-no-reboot",
            "-netdev",
            "user,id=net0",
            # no option ROM: we never want a network boot attempt
            "-device",
            f"virtio-net-pci,netdev=net0,mac={NIC_MAC},romfile=",
        ]
        if self.uefi:
            code, vars_template = find_ovmf()
            vars_copy = tmpdir / "OVMF_VARS.fd"
            shutil.copyfile(vars_template, vars_copy)
            argv += [
                "-drive",
                f"if=pflash,format=raw,unit=0,readonly=on,file={_drive_path(code)}",
                "-drive",
                f"if=pflash,format=raw,unit=1,file={_drive_path(vars_copy)}",
            ]
        if self.image is not None:
            fmt = self.fmt or detect_format(self.image)
            argv += [
                "-drive",
                f"file={_drive_path(self.image)},format={fmt},if=none,id=disk0,snapshot=on",
            ]
            # with -kernel, QEMU's own kernel loader holds boot index 0
            boot = "" if self.kernel is not None else ",bootindex=0"
            if self.disk_interface == "virtio":
                argv += ["-device", f"virtio-blk-pci,drive=disk0{boot}"]
            elif self.disk_interface == "sata":
                argv += ["-device", "ahci,id=sata0"]
                argv += ["-device", f"ide-hd,drive=disk0,bus=sata0.0{boot}"]
            elif self.disk_interface == "nvme":
                argv += ["-device", f"nvme,drive=disk0,serial=dibpy-disk0{boot}"]
            else:
                argv += ["-device", f"ide-hd,drive=disk0{boot}"]
        for n, drive in enumerate(self.extra_drives, start=1):
            # raw: a config drive is an ISO 9660 or FAT image, and naming the format
            # keeps QEMU from guessing it; read-only: the file is never written
            argv += [
                "-drive",
                f"file={_drive_path(drive)},format=raw,if=none,id=extra{n},readonly=on",
                "-device",
                f"virtio-blk-pci,drive=extra{n}",
            ]
        if self.kernel is not None:
            argv += ["-kernel", str(self.kernel)]
            if self.initrd is not None:
                argv += ["-initrd", str(self.initrd)]
            if self.append is not None:
                argv += ["-append", self.append]
        argv += self.extra_args
        return argv

    # -- running ----------------------------------------------------------------------

    def run(self) -> BootResult:
        """Boot, wait for the login prompt, optionally log in and run the command."""
        self.validate()
        accel, accel_reason = detect_accel(self.accel)
        LOG.info("boot test: accelerator %s (%s)", accel, accel_reason)
        with contextlib.ExitStack() as stack:
            tmpdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dibpy-boot-")))
            argv = self.qemu_argv(accel, tmpdir)
            log_path, log_is_temp = self._console_log_path()
            # a failed boot keeps its console log, even a temporary one
            result = self._boot(argv, accel, accel_reason, log_path, tmpdir, stack)
            if log_is_temp:
                with contextlib.suppress(OSError):
                    log_path.unlink()
                return dataclasses.replace(result, console_log=None)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _console_log_path(self) -> tuple[Path, bool]:
        if self.console_log is not None:
            try:
                self.console_log.parent.mkdir(parents=True, exist_ok=True)
                self.console_log.touch()
            except OSError as e:
                raise ConfigError(
                    f"cannot write the console log {self.console_log}: {e.strerror}"
                ) from None
            return self.console_log, False
        fd, name = tempfile.mkstemp(prefix="dibpy-console-", suffix=".log")
        os.close(fd)
        return Path(name), True

    def _boot(
        self,
        argv: list[str],
        accel: str,
        accel_reason: str,
        log_path: Path,
        tmpdir: Path,
        stack: contextlib.ExitStack,
    ) -> BootResult:
        stderr_path = tmpdir / "qemu.stderr"
        full_argv = list(argv)
        setpriv = shutil.which("setpriv")
        if setpriv:
            # QEMU dies with us even if we are SIGKILLed and cannot clean up
            full_argv = [setpriv, "--pdeathsig", "KILL", "--", *argv]
        LOG.debug("+ %s", shlex.join(argv))
        env = dict(os.environ, LC_ALL="C")
        stack.enter_context(_sigterm_raises())
        with open(stderr_path, "wb") as err:
            proc = subprocess.Popen(
                full_argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
                start_new_session=True,
            )
        # registered before anything else can fail: QEMU is killed on every way out
        stack.callback(kill_process_group, proc, self.kill_grace)
        started = time.monotonic()
        session = _Session(proc, log_path, self.echo_console)
        stack.callback(session.close)

        def fail(message: str, hint: str | None = None) -> BootTestError:
            # drain what is already there so the tail is as fresh as possible
            session.pump(0)
            qemu_err = ""
            with contextlib.suppress(OSError):
                qemu_err = stderr_path.read_text(errors="replace").strip()
            if qemu_err and proc.poll() is not None:
                message += ": " + qemu_err.splitlines()[-1]
            return BootTestError(message, session.tail(), log_path, hint)

        deadline = started + self.timeout
        goal = re.compile(self.ready) if self.ready is not None else LOGIN_PROMPT
        what = f"the ready pattern {self.ready!r}" if self.ready is not None else "a login prompt"
        found = session.expect({"prompt": goal, "panic": KERNEL_PANIC}, deadline)
        if found is None:
            if session.eof or proc.poll() is not None:
                raise fail(f"QEMU exited (status {proc.wait()}) before {what} appeared")
            raise fail(
                f"no {what.removeprefix('a ')} within {self.timeout:g} s ({accel})",
                hint="raise --timeout (TCG is slow), and check that the image has a getty "
                "on the serial console (console=ttyS0)"
                if self.ready is None
                else "raise --timeout (TCG is slow), and check the console log",
            )
        if found[0] == "panic":
            session.expect({"end": re.compile(r"end Kernel panic[^\n]*")}, time.monotonic() + 2)
            raise fail(f"the guest kernel panicked: {found[1].group(0)}")
        seconds = time.monotonic() - started
        LOG.info("%s after %.1f s (%s)", what.removeprefix("a "), seconds, accel)

        output: str | None = None
        if self.login is not None:
            cmd_deadline = time.monotonic() + self.command_timeout
            self._log_in(session, cmd_deadline, fail)
            if self.command is not None:
                output = self._run_command(session, self.command, cmd_deadline, fail)
        session.pump(0)
        return BootResult(
            seconds,
            session.text,
            output,
            accel,
            accel_reason,
            log_path,
            list(argv),
            session.timeline,
        )

    def _log_in(self, session: _Session, deadline: float, fail: _Fail) -> None:
        assert self.login is not None
        user, password = self.login
        session.send(user + "\r")
        found = session.expect({"password": PASSWORD_PROMPT, "failed": LOGIN_FAILED}, deadline)
        if found is None or found[0] != "password":
            raise fail(f"no password prompt after typing the user name {user!r}")
        session.send(password + "\r")
        # The shell's prompt is unknown, so ask the shell to say something only a shell
        # can: the typed line (echoed by the tty) shows "$((6*7))", the shell prints 42.
        # Repeat it, as login may flush what was typed before the shell started.
        nonce = secrets.token_hex(4)
        ready = re.compile(rf"DIBPY_READY_42_{nonce}")
        probe = f"echo DIBPY_READY_$((6*7))_{nonce}\r"
        while True:
            session.send(probe)
            found = session.expect(
                {"ready": ready, "failed": LOGIN_FAILED, "prompt": LOGIN_PROMPT},
                min(deadline, time.monotonic() + self.probe_interval),
            )
            if found is not None and found[0] == "ready":
                return
            if found is not None:
                raise fail(f"logging in as {user!r} failed", hint="check the user and password")
            if time.monotonic() >= deadline:
                raise fail(f"no shell after logging in as {user!r}")
            if session.eof:
                raise fail("QEMU exited while logging in")

    def _run_command(self, session: _Session, command: str, deadline: float, fail: _Fail) -> str:
        nonce = secrets.token_hex(4)
        begin = f"DIBPY_BEGIN_42_{nonce}"
        end = f"DIBPY_END_42_{nonce}"
        session.send(
            f"echo DIBPY_BEGIN_$((6*7))_{nonce}; ( {command} ); "
            f"echo DIBPY_END_$((6*7))_{nonce}=$?\r"
        )
        pat = re.compile(rf"{begin}\n(.*?){end}=(\d+)", re.DOTALL)
        found = session.expect({"done": pat}, deadline)
        if found is None:
            raise fail(f"the command {command!r} did not finish in time")
        out = found[1].group(1)
        if out.endswith("\n"):
            out = out[:-1]
        status = int(found[1].group(2))
        if status != 0:
            raise fail(f"the command {command!r} exited with status {status}")
        return out


class _Fail(Protocol):
    """The error factory _boot hands its helpers."""

    def __call__(self, message: str, hint: str | None = None) -> BootTestError: ...


def _drive_path(p: Path) -> str:
    """A path as a -drive file= value: commas are doubled."""
    return str(p).replace(",", ",,")


def default_console_log(target: Path) -> Path:
    """``TARGET.console.log`` beside the target, or a temp file if that dir is read-only."""
    beside = target.with_name(target.name + ".console.log")
    if os.access(target.parent, os.W_OK):
        return beside
    fd, name = tempfile.mkstemp(prefix=f"{target.name}.", suffix=".console.log")
    os.close(fd)
    return Path(name)


#: where ``dibpy boot-test`` reads a password from when none is given
PASSWORD_VARIABLE = "DIBPY_BOOT_PASSWORD"


def login_for(
    user: str | None,
    password: str | None,
    password_file: str | None,
    environ: Mapping[str, str],
) -> tuple[str, str] | None:
    """The (user, password) to log in with, from ``--password``, ``--password-file`` or
    DIBPY_BOOT_PASSWORD (in that order of preference against ps(1)); None for no login."""
    if password is not None and password_file is not None:
        raise ConfigError("--password and --password-file: give one")
    if password_file is not None:
        try:
            lines = Path(password_file).read_text().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"--password-file {password_file}: cannot read it: {e}") from None
        if not lines or not lines[0]:
            raise ConfigError(f"--password-file {password_file}: its first line is empty")
        password = lines[0]
    elif password is not None:
        LOG.warning(
            "--password is visible to every user in the process list; use --password-file or %s",
            PASSWORD_VARIABLE,
        )
    elif user is not None and environ.get(PASSWORD_VARIABLE):
        password = environ[PASSWORD_VARIABLE]
    if (user is None) != (password is None):
        raise ConfigError(
            "--user and a password go together",
            hint=f"--password-file FILE, {PASSWORD_VARIABLE}, or --password",
        )
    return (user, password) if user is not None and password is not None else None


def boot_built_image(outputs: Sequence[Path], arch: str) -> tuple[Path, BootResult]:
    """disk-image-create's ``--boot-test``: boot the build's first qcow2 or raw output to
    its login prompt; its console log is the image's name with ``.console.log`` for its
    suffix."""
    image = next((o for o in outputs if o.suffix in (".qcow2", ".raw")), None)
    if image is None:
        raise ConfigError("--boot-test needs a qcow2 or raw output", hint="add -t qcow2")
    # SeaBIOS boots every amd64 layout we build (the EFI layouts carry a BIOS boot
    # partition too); OVMF for architectures without a BIOS
    uefi = arch != "amd64"
    return image, BootTest(
        image=image, uefi=uefi, console_log=image.with_suffix(".console.log")
    ).run()
