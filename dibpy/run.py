"""The one place that runs external commands.

Every external program goes through :func:`run`.  It logs the command line, pins
``LC_ALL=C``, closes stdin, kills the child's whole process group if we are
interrupted, and turns a failure into a :class:`CommandError` that names the
command, its exit status and the tail of its output.

Tests fake programs at this seam with :func:`set_runner`, or with a fake binary on PATH.
"""

from __future__ import annotations

import collections
import contextlib
import os
import shlex
import signal
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sh

from dibpy.errors import CommandError, ConfigError, Interrupted
from dibpy.log import LOG

TAIL_LINES = 20


@dataclass(frozen=True)
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


LineCallback = Callable[[str], None]


def _base_env(env: Mapping[str, str] | None, inherit: bool) -> dict[str, str]:
    out: dict[str, str] = dict(os.environ) if inherit else {}
    if env:
        out.update(env)
    out["LC_ALL"] = "C"
    out.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    return out


def _real_run(
    argv: list[str],
    *,
    env: dict[str, str],
    cwd: str | None,
    check: bool,
    input: str | bytes | None,
    on_line: LineCallback | None,
    stderr_to_stdout: bool,
    hint: str | None,
    timeout: float | None = None,
) -> Result:
    out_lines: list[str] = []
    err_tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    out_tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)

    def _out(line: str) -> None:
        line = line.rstrip("\n")
        out_tail.append(line)
        if on_line is not None:
            on_line(line)
        else:
            out_lines.append(line)

    err_lines: list[str] = []

    def _err(line: str) -> None:
        line = line.rstrip("\n")
        err_tail.append(line)
        err_lines.append(line)
        if on_line is not None and stderr_to_stdout:
            on_line(line)

    try:
        cmd = sh.Command(argv[0])
    except sh.CommandNotFound:
        if "/" in argv[0] and os.path.isfile(argv[0]):
            raise ConfigError(
                f"cannot run {argv[0]}: it is not executable", hint=f"chmod +x {argv[0]}"
            ) from None
        raise ConfigError(
            f"required program not found: {argv[0]}",
            hint="install it (see the README's list of host packages)",
        ) from None
    kwargs: dict[str, Any] = {
        "_env": env,
        "_out": _out,
        "_bg": True,
        "_bg_exc": False,
        "_new_session": True,
        "_decode_errors": "replace",
        # every status is ours to judge, a signal's (negative) too
        "_ok_code": list(range(-64, 256)),
    }
    # stdin is always closed: an empty input closes the pipe at once
    kwargs["_in"] = input if input is not None else ""
    if stderr_to_stdout:
        kwargs["_err_to_out"] = True
    else:
        kwargs["_err"] = _err
    if cwd:
        kwargs["_cwd"] = cwd
    try:
        # a signal arriving while sh starts the child would raise before we hold its pid,
        # and the child would be left running: it waits until the child is ours to kill
        with _interrupts_deferred():
            proc = cmd(*argv[1:], **kwargs)
    except sh.ForkException as e:
        # the child failed between fork and exec (a missing cwd, say): sh's text ends with
        # the child's exception
        why = next((ln.strip() for ln in reversed(str(e).splitlines()) if ln.strip()), "")
        raise CommandError(argv, -1, status=f"could not start ({why})", hint=hint) from None
    try:
        _raise_deferred()
        proc.wait(timeout=timeout)
    except sh.TimeoutException:
        _kill_group(proc.pid)
        with contextlib.suppress(Exception):
            proc.wait()
        tail = "\n".join(err_tail if err_tail else out_tail)
        raise CommandError(
            argv, -int(signal.SIGKILL), tail, hint, status=f"timed out after {timeout:g} s"
        ) from None
    except BaseException:
        _kill_group(proc.pid)
        with contextlib.suppress(Exception):
            proc.wait()
        raise
    rc = proc.exit_code
    stdout = "\n".join(out_lines)
    if out_lines:
        stdout += "\n"
    stderr = "\n".join(err_lines)
    if check and rc != 0:
        tail = "\n".join(err_tail if err_tail else out_tail)
        raise CommandError(argv, rc, tail, hint)
    return Result(argv, rc, stdout, stderr)


def _kill_group(pid: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            return
        if sig == signal.SIGTERM:
            # give the group a moment to exit before the hard kill
            import time

            for _ in range(20):
                try:
                    os.killpg(pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.05)


Runner = Callable[..., Result]
_runner: Runner = _real_run


def set_runner(fn: Runner | None) -> Runner:
    """Replace the runner (tests only); returns the previous one.  None restores."""
    global _runner
    prev = _runner
    _runner = fn if fn is not None else _real_run
    return prev


@contextlib.contextmanager
def fake_runner(fn: Runner) -> Iterator[None]:
    prev = set_runner(fn)
    try:
        yield
    finally:
        set_runner(prev)


def run(
    argv: Sequence[str | Path],
    *,
    env: Mapping[str, str] | None = None,
    inherit_env: bool = True,
    cwd: str | Path | None = None,
    check: bool = True,
    input: str | bytes | None = None,
    on_line: LineCallback | None = None,
    stderr_to_stdout: bool = False,
    quiet: bool = False,
    hint: str | None = None,
    timeout: float | None = None,
) -> Result:
    """Run ``argv`` and return its result; raise CommandError on failure if ``check``.

    A failure is a CommandError whatever the way the child went: a non-zero exit, a
    signal (negative ``returncode``), ``timeout`` seconds passed (its whole process group
    is killed) or it could not start; a program that is not there is a ConfigError.

    ``on_line`` receives each output line as it arrives (stdout, and stderr too when
    ``stderr_to_stdout``); otherwise output is collected into the Result.
    """
    args = [str(a) for a in argv]
    if not quiet:
        LOG.debug("+ %s", shlex.join(args))
    return _runner(
        args,
        env=_base_env(env, inherit_env),
        cwd=str(cwd) if cwd else None,
        check=check,
        input=input,
        on_line=on_line,
        stderr_to_stdout=stderr_to_stdout,
        hint=hint,
        **({"timeout": timeout} if timeout is not None else {}),
    )


def output(argv: Sequence[str | Path], **kw: object) -> str:
    """Run and return stdout, stripped."""
    return run(argv, **kw).stdout.strip()  # type: ignore[arg-type]


def which(name: str) -> str | None:
    import shutil

    return shutil.which(
        name,
        path=os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin",
    )


_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
#: >0 while the main thread starts a child (see _interrupts_deferred)
_deferring = 0
#: a signal that arrived meanwhile, raised as soon as the child is ours
_deferred: list[int] = []


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold the Interrupted of install_signal_handlers() (main thread only: the only one
    Python runs signal handlers in) until :func:`_raise_deferred`."""
    global _deferring
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1


def _raise_deferred() -> None:
    if _deferred and not _deferring and threading.current_thread() is threading.main_thread():
        signum = _deferred.pop()
        _deferred.clear()
        raise Interrupted(f"interrupted by signal {signal.Signals(signum).name}")


def install_signal_handlers() -> None:
    """Turn SIGTERM, SIGHUP and SIGINT into an Interrupted exception so ExitStacks unwind.

    Only the first signal interrupts: a second one (a repeated Ctrl-C, a supervisor
    sending SIGTERM again) while the build cleans up is logged and ignored, because
    interrupting the cleanup is what would leave mounts and loop devices behind.
    """

    def _cleaning(signum: int, _frame: object) -> None:
        LOG.warning(
            "%s received while cleaning up: finishing the cleanup first",
            signal.Signals(signum).name,
        )

    def _handler(signum: int, _frame: object) -> None:
        for sig in _SIGNALS:
            signal.signal(sig, _cleaning)
        if _deferring:
            _deferred.append(signum)
            return
        raise Interrupted(f"interrupted by signal {signal.Signals(signum).name}")

    for sig in _SIGNALS:
        signal.signal(sig, _handler)


@contextlib.contextmanager
def signal_handlers() -> Iterator[None]:
    """install_signal_handlers() for the duration of a command; the caller's handlers
    (Python's KeyboardInterrupt for SIGINT, a test runner's) come back afterwards."""
    previous = {sig: signal.getsignal(sig) for sig in _SIGNALS}
    install_signal_handlers()
    try:
        yield
    finally:
        _deferred.clear()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def left_running(build_dir: Path) -> dict[int, str]:
    """The processes (pid -> command) that this build's hooks started and left running:
    every hook sees ``TMP_BUILD_DIR`` set to its build directory, and what it starts
    inherits it, however it detached (a new session, a double fork)."""
    needle = b"\0TMP_BUILD_DIR=" + os.fsencode(build_dir) + b"\0"
    me = os.getpid()
    found: dict[int, str] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == me:
            continue
        try:
            env = b"\0" + (d / "environ").read_bytes()
            if needle in env:
                found[int(d.name)] = (d / "comm").read_text().strip()
        except OSError:
            continue  # gone meanwhile, or a zombie (its environment is empty)
    return found


def reap_left_running(build_dir: Path, grace: float) -> None:
    """Wait up to ``grace`` seconds for what this build's hooks left running (a cache
    written in the background, say) to finish, then stop the rest (TERM, then KILL):
    nothing a build started outlives it."""
    import time

    def named(procs: dict[int, str]) -> str:
        return ", ".join(f"{c} ({p})" for p, c in sorted(procs.items()))

    left = left_running(build_dir)
    if left and grace > 0:
        LOG.info("waiting up to %g s for what the hooks left running: %s", grace, named(left))
        deadline = time.monotonic() + grace
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = left_running(build_dir)
    if not left:
        return
    LOG.warning("stopping what the hooks left running: %s", named(left))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        for _ in range(40):
            time.sleep(0.05)
            left = left_running(build_dir)
            if not left:
                return
